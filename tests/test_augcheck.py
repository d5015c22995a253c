"""gankit check-augmentation on small made-up data: reads gankit's imagefolder and a user's folder, says what it
found, and refuses bad input in one line. The real measurement is bench/longtail.py."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import call, expect_error
from PIL import Image
from tiny_models import tiny_generator


def user_folder(folder: Path, classes=("cat", "dog"), n: int = 12, size: int = 16, seed: int = 0) -> Path:
    """Grey images whose class shows in their brightness pattern (a classifier can learn it in a few steps)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            yy, xx = np.mgrid[0:size, 0:size]
            base = 128 + 100 * np.sin((xx if c % 2 else yy) / 2.0)
            img = np.clip(base + rng.normal(0, 20, (size, size)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / name / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """What `gankit generate` writes for a 2-class model whose class names sort against their indices."""
    d = tmp_path_factory.mktemp("gen")
    model = tiny_generator(d / "m.onnx", classes=["dog", "cat"])
    import cli

    assert cli.main(["generate", str(model), "--per-class", "10", "--out", str(d / "synth")]) == 0
    return d / "synth"


def test_it_reads_gankit_s_imagefolder_and_a_user_folder_and_gives_a_verdict(capsys, tmp_path, generated):
    assert sorted(p.name for p in generated.iterdir() if p.is_dir()) == ["0-dog", "1-cat"]  # names from metadata
    real = user_folder(tmp_path / "real")
    rc, out = call(
        capsys,
        "check-augmentation",
        "--real",
        real,
        "--generated",
        generated,
        "--runs",
        2,
        "--steps",
        3,
        "--out",
        tmp_path / "r.json",
    )
    assert rc == 0, out.err
    assert "run 2/2: generated only" in out.err  # progress
    lines = out.out.splitlines()
    assert lines[0].split()[0] == "recall" and lines[1].startswith("cat") and lines[2].startswith("dog")
    assert lines[-1].split(": ")[1] in ("helps", "no measurable effect", "hurts")
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["classes"] == ["cat", "dog"] and r["generated"] == 20 and r["real_held_out"] + r["real_train"] == 24
    assert r["held_out_per_class"] == [2, 2] and len(r["balanced_accuracy"]["real"]) == 2


def test_a_user_folder_as_the_generated_set_works_too(capsys, tmp_path):
    real, other = user_folder(tmp_path / "real"), user_folder(tmp_path / "more", classes=("dog",), seed=1)
    rc, out = call(capsys, "check-augmentation", "--real", real, "--generated", other, "--runs", 1, "--steps", 2)
    assert rc == 0, out.err
    assert "verdict: unknown: one run has no spread" in out.out


def test_bad_input_is_one_line(capsys, tmp_path, generated):
    real = user_folder(tmp_path / "real", classes=("cow", "pig"))
    expect_error(
        capsys, ["check-augmentation", "--real", real, "--generated", generated], "classes the real images lack"
    )
    few = user_folder(tmp_path / "few", classes=("cat", "dog"), n=1)
    expect_error(capsys, ["check-augmentation", "--real", few, "--generated", generated], "too few to hold any out")
    big = user_folder(tmp_path / "big", classes=("cat", "dog"), size=20)
    expect_error(capsys, ["check-augmentation", "--real", big, "--generated", generated], "[20, 20]")
    mixed = user_folder(tmp_path / "mixed")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mixed / "cat" / "small.png")
    expect_error(capsys, ["check-augmentation", "--real", mixed, "--generated", generated], "different sizes")
    expect_error(capsys, ["check-augmentation", "--real", tmp_path / "none", "--generated", generated], "not a folder")
