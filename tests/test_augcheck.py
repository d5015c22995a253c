"""gankit split and check-augmentation on small made-up data: test images the generator never saw, the rebalancing
controls, the decision rule on made-up gains, and one-line refusals. The real measurement is bench/longtail.py."""

import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, call, expect_error
from gankit.augcheck import MAX_COPY_SHARE, MIN_TEST_PER_CLASS, decide, interval
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


def readme_recipe(replace: dict) -> list[list[str]]:
    """The README's rare-class recipe, command by command, with words (and paths starting with a key) replaced."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- rare-class-recipe -->\s*```bash\n(.*?)```", text, re.S).group(1)
    commands = [shlex.split(line.split("  #")[0])[1:] for line in block.splitlines() if line.startswith("gankit ")]

    def new(word: str) -> str:
        for old in sorted(replace, key=len, reverse=True):  # ~/my-digits-split before ~/my-digits
            if word == old or word.startswith(old + "/"):
                return replace[old] + word[len(old) :]
        return word

    return [[new(w) for w in c] for c in commands]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """The README's recipe as printed, on made-up images (a few training steps): split first, train on the rest,
    export, generate. Returns (folder, the split's manifest, the model); the check is each test's."""
    import cli

    d = tmp_path_factory.mktemp("recipe")
    user_folder(d / "mine", n=60)
    paths = {"~/my-digits-split": str(d / "split"), "~/my-digits": str(d / "mine"), "runs/tail": str(d / "run"),
             "data/synth": str(d / "synth"), "2000": "2", "1000": "20", "5,7": "cat,dog"}  # fmt: skip
    commands = readme_recipe(paths)
    assert [c[0] for c in commands] == ["split", "train", "export", "generate", "check-augmentation"]
    for command in commands[:4]:
        assert cli.main([*command, *(["--threads", "1"] if command[0] == "train" else [])]) == 0, command
    manifest = json.loads((d / "split" / "gankit-split.json").read_text())
    return d, manifest, d / "run" / "generator.onnx", commands[4]


def strict_json(text: str):
    def no_constant(name):
        raise AssertionError(f"{name} in the JSON")

    return json.loads(text, parse_constant=no_constant)


def test_split_holds_out_each_class_by_content_and_links_the_files(recipe):
    d, manifest, _, _ = recipe
    assert len(manifest["test"]) == 24 and len(manifest["train"]) == 96  # 20% of each class's 60
    assert not set(manifest["test"].values()) & set(manifest["train"].values())
    for side in ("train", "test"):
        for rel in manifest[side]:
            assert (d / "split" / side / rel).stat().st_ino == (d / "mine" / rel).stat().st_ino  # a hard link


def test_the_recipe_checks_on_images_the_generator_never_saw(capsys, recipe, tmp_path):
    d, manifest, model, check = recipe
    trained_on = set((d / "run" / "training-images.sha256").read_text().split())
    assert trained_on == set(manifest["train"].values()) and not trained_on & set(manifest["test"].values())
    rc, out = call(capsys, *check, "--steps", 3, "--out", tmp_path / "r.json")  # the README's check, as printed
    assert rc == 0, out.err
    split = d / "split"
    args = ["check-augmentation", "--real", split / "train", "--generated", d / "synth", "--steps", 3]
    rc, out = call(capsys, *args, "--test", split / "test", "--model", model, "--out", tmp_path / "r.json")
    assert rc == 0, out.err
    assert "run 3/3: generated only" in out.err  # progress, in the default three runs
    lines = out.out.splitlines()
    assert lines[0].split()[0] == "recall" and lines[1].startswith("cat *") and lines[2].startswith("dog *")
    assert "not among the generator's training images" in out.out
    r = strict_json((tmp_path / "r.json").read_text())
    assert r["classes"] == ["cat", "dog"] == r["covered"] and r["control"] in ("oversampled", "weighted")
    assert set(r["balanced_accuracy"]) == {"real", "oversampled", "weighted", "real + generated", "generated only"}
    assert r["fewest_test_images_in_a_class"] == 12 and r["test_copy_share"] == 0
    assert r["verdict"].split(":")[0] in ("helps", "no measurable effect", "hurts")
    rc, out = call(capsys, *args, "--test", split / "test", "--model", model, "--out", tmp_path / "r.json")
    assert rc == 0, out.err  # a rerun replaces its own figures
    # Held out of --real instead: those are the generator's training images, and --model's record says so
    expect_error(capsys, [*args, "--model", model], "images the generator trained on", "gankit split")
    rc, out = call(capsys, *args)
    assert rc == 0 and "if the generator trained on --real, it saw them" in out.out


def test_a_generated_set_that_holds_the_test_images_gets_no_verdict(capsys, recipe, tmp_path):
    d, _, _, _ = recipe
    leaky = tmp_path / "leaky"
    for cls in ("cat", "dog"):
        (leaky / cls).mkdir(parents=True)
        for f in sorted((d / "split" / "test" / cls).iterdir()):
            Image.open(f).save(leaky / cls / f.name)  # the same pixels, written again
    args = ["--real", d / "split" / "train", "--test", d / "split" / "test", "--generated", leaky, "--steps", 2]
    rc, out = call(capsys, "check-augmentation", *args)
    assert rc == 0, out.err
    assert "verdict: withheld: 100.0% of the test images have an exact or near copy" in out.out


def test_the_decision_rule_on_made_up_gains():
    rng = np.random.default_rng(0)
    runs = 3  # check-augmentation's default
    noise = [decide(rng.normal(0, 0.02, runs), "weighted", 50, 0.0) for _ in range(100)]
    assert sum(v.startswith("no measurable effect") for v in noise) >= 90
    effect = [decide(0.05 + rng.normal(0, 0.01, runs), "weighted", 50, 0.0) for _ in range(100)]
    assert sum(v.startswith("helps") for v in effect) >= 90
    assert decide(np.array([-0.05, -0.06, -0.04]), "weighted", 50, 0.0).startswith("hurts: rebalancing alone")
    assert decide(np.array([0.01, -0.01, 0.02]), "oversampled", 50, 0.0).endswith("weight your loss instead")
    assert decide(np.array([0.05, 0.06]), "weighted", 50, 0.0).startswith("unknown: 2 runs are too few")
    few = decide(np.array([0.05, 0.06, 0.05]), "weighted", MIN_TEST_PER_CLASS - 1, 0.0)
    assert few.startswith("unknown: too few held-out images")
    assert decide(np.array([0.05, 0.06, 0.05]), "weighted", 50, 2 * MAX_COPY_SHARE).startswith("withheld")
    mean, low, high = interval(np.array([1.0, 2.0, 3.0]))  # t(0.975, 2) = 4.303, sd 1: half-width 4.303 / sqrt(3)
    assert mean == 2.0 and abs(high - 2.0 - 2.4843) < 1e-4 and abs(low + high - 4.0) < 1e-12


def test_one_reader_with_training_s_rules(capsys, recipe, tmp_path, monkeypatch):
    """Class folders read as train --data reads them: a class one folder deeper, resized from another size, with
    macOS's ._ files skipped; an empty class, or a decompression bomb, is one line, never a traceback."""
    d, _, _, _ = recipe
    real = user_folder(tmp_path / "real", size=20)  # resized to the generated 16x16
    (real / "cat" / "deeper").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(real / "cat" / "deeper" / "x.png")
    (real / "dog" / "._000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    args = ["check-augmentation", "--real", real, "--test", d / "split" / "test", "--generated", d / "synth"]
    rc, out = call(capsys, *args, "--steps", 2)
    assert rc == 0, out.err
    (real / "bird").mkdir()
    expect_error(capsys, args, "class folder", "bird", "holds no readable image")
    (real / "bird").rmdir()
    import PIL.Image

    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)  # every image is now a bomb (over 2 x 100 pixels)
    expect_error(capsys, [*args, "--image-size", 16, "--channels", 1], "none is an image Pillow can read")


def test_bad_input_is_one_line(capsys, recipe, tmp_path):
    d, _, model, _ = recipe
    synth, train, test = d / "synth", d / "split" / "train", d / "split" / "test"
    other = user_folder(tmp_path / "other", classes=("cow", "pig"))
    expect_error(capsys, ["check-augmentation", "--real", other, "--generated", synth], "classes the real images lack")
    expect_error(capsys, ["check-augmentation", "--real", train, "--generated", train], "same folder")
    expect_error(capsys, ["check-augmentation", "--real", train, "--generated", synth, "--test", train], "same folder")
    expect_error(
        capsys, ["check-augmentation", "--real", d / "mine", "--test", test, "--generated", synth], "also real"
    )
    expect_error(capsys, ["check-augmentation", "--real", train, "--generated", synth, "--runs", 2], "--runs")
    for share in ("0", "1", "nan"):  # refused before a folder is read: --real does not exist
        args = ["check-augmentation", "--real", tmp_path / "none", "--generated", synth, "--real-share", share]
        expect_error(capsys, args, "--real-share must lie strictly between 0 and 1")
    notes = tmp_path / "notes.json"
    notes.write_text("{}")
    args = ["check-augmentation", "--real", train, "--test", test, "--generated", synth, "--out", notes]
    expect_error(capsys, args, "--force")
    other_model = tiny_generator(tmp_path / "other.onnx", classes=["dog", "cat"], seed=1)
    expect_error(capsys, [*args[:-2], "--model", other_model], "made by another model")
    expect_error(capsys, ["split", d / "mine", "--out", d / "split"], "not an empty folder")
    expect_error(capsys, ["split", d / "mine", "--out", d / "mine" / "inside"], "overlap")


def test_a_killed_split_is_cleared_by_the_next(capsys, recipe, tmp_path):
    from gankit_runtime.files import _HOST
    from test_refusals import dead_pid

    d, _, _, _ = recipe
    left = tmp_path / f".split.x1.gankit-split.{_HOST}.{dead_pid()}"  # what a killed split left beside its --out
    (left / "train").mkdir(parents=True)
    running = tmp_path / f".split.x2.gankit-split.{_HOST}.{os.getpid()}"  # a split still running
    running.mkdir()
    assert call(capsys, "split", d / "mine", "--out", tmp_path / "split")[0] == 0
    assert not left.exists() and running.is_dir() and (tmp_path / "split" / "gankit-split.json").is_file()


def test_a_weight_per_image_is_the_weight_per_class_it_repeats():
    """bench/longtail.py's (h) weighs images one by one; it is (c)'s class-weighted loss when each image's weight is
    its class's (torch normalises a batch's class weights by their sum: so must the per-image weights)."""
    import torch
    from gankit.classifier import fit
    from gankit_runtime import GankitError

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (160, 28, 28), dtype=np.uint8)
    y = np.r_[np.zeros(140, np.int64), np.ones(20, np.int64)]
    per_class = np.array([0.5, 4.0], np.float32)
    a = fit(x, y, 3, batch_size=32, class_weight=per_class, classes=2)
    b = fit(x, y, 3, batch_size=32, sample_weight=per_class[y], classes=2)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(p.float(), q.float(), atol=1e-6), name
    with pytest.raises(GankitError, match="one positive weight per image"):
        fit(x, y, 1, batch_size=32, sample_weight=per_class[y][:-1], classes=2)


def test_real_plus_generated_moves_half_of_a_covered_class_s_weight_onto_its_generated_images():
    """The mix that check-augmentation judges: every class weighs the same (as the weighted control), and a class
    the generated set covers has half of its weight on its real images, half on its generated ones."""
    from gankit.augcheck import LabelledImages, _cases

    yr = np.r_[np.zeros(30, np.int64), np.ones(30, np.int64), np.full(4, 2)]  # class 2 is rare
    xr = np.zeros((len(yr), 8, 8), np.uint8)
    gen = LabelledImages(np.full((10, 8, 8), 255, np.uint8), np.full(10, 2), ["a", "b", "c"], [])
    cases = _cases(xr, yr, gen, 3, np.random.default_rng(0))
    x, y, w = cases["real + generated"]
    assert len(x) == len(y) == len(w) == 74 and (x[64:] == 255).all()
    assert np.allclose([w[y == c].sum() for c in range(3)], len(yr) / 3)  # each class weighs the same
    assert np.allclose(w[64:].sum(), w[60:64].sum())  # the rare class's weight: half real, half generated
    _, yw, ww = cases["weighted"]
    assert np.allclose(ww[yw == 2], 2 * w[60:64]) and np.allclose(ww[yw == 0], w[:30])


def test_real_share_sets_the_mix_a_run_trains_on(capsys, recipe, tmp_path, monkeypatch):
    """--real-share reaches the loss of "real + generated": with 0.75, each covered class has three quarters of its
    weight on its real images; the figures and the table say which share they measured."""
    from gankit import augcheck

    fitted, fit = [], augcheck.fit

    def recording_fit(x, y, *args, sample_weight=None, **kwargs):
        fitted.append((y, sample_weight))
        return fit(x, y, *args, sample_weight=sample_weight, **kwargs)

    monkeypatch.setattr(augcheck, "fit", recording_fit)
    d, _, _, _ = recipe
    args = ["--real", d / "split" / "train", "--test", d / "split" / "test", "--generated", d / "synth"]
    rc, out = call(
        capsys, "check-augmentation", *args, "--steps", 1, "--real-share", 0.75, "--out", tmp_path / "r.json"
    )
    assert rc == 0, out.err
    assert "real + generated: 75% of a covered class's weight on its real images" in out.out
    assert strict_json((tmp_path / "r.json").read_text())["real_share"] == 0.75
    real = len(fitted[0][0])  # the first case of a run: the real images as they are
    mixes = [(y, w) for y, w in fitted if w is not None and len(y) > real]  # real + generated, once a run
    assert len(mixes) == 3
    for y, w in mixes:
        for c in (0, 1):  # both classes are covered
            assert np.isclose(w[:real][y[:real] == c].sum() / w[y == c].sum(), 0.75)
