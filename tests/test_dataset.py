"""Labelled data sets from class-conditional generators: layouts, metadata, truncation, resume and shards."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import assert_one_line_error, call, make_image_folder
from gankit.data import load_image_folder
from gankit_runtime import GankitError, Generator, WriteResult, parse_shard, plan, write_folder, write_npz
from gankit_runtime.files import _HOST, remove_stale_temporaries
from PIL import Image
from tiny_models import tiny_generator

CLASSES = ["cat", "dog", "owl"]


@pytest.fixture(scope="module")
def cond(tmp_path_factory):
    """A narrow conditional 16x16 RGB DCGAN with three named classes (random weights: fast, and every
    (seed, class) still gives its own image)."""
    return tiny_generator(tmp_path_factory.mktemp("m") / "cond.onnx", channels=3, classes=CLASSES)


def files_of(folder):
    """{relative path: bytes} of every file under folder."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_plan_is_class_major_and_checks_classes(cond):
    g = Generator(cond)
    job = plan(g, [4, 9], [2, 0])
    assert job.seeds == (4, 9, 4, 9) and job.labels == (2, 2, 0, 0)
    assert plan(g, [1]).labels == (0, 1, 2)  # default: every class
    with pytest.raises(GankitError, match="twice"):
        plan(g, [1], [0, 0])
    assert g.class_index("owl") == 2 and g.class_index("1") == 1
    with pytest.raises(GankitError, match="unknown class 'emu'"):
        g.class_index("emu")


def test_an_int_class_is_an_index_even_where_a_class_is_named_by_digits(tmp_path):
    g = Generator(tiny_generator(tmp_path / "m.onnx", classes=["b", "a", "0"]))
    assert g.class_index(0) == 0 and g.class_index("0") == 2 and g.class_index(np.int64(2)) == 2
    with pytest.raises(GankitError, match="out of range"):
        g.class_index(3)


def test_imagefolder_layout_metadata_and_labels(cond, tmp_path):
    g = Generator(cond)
    job = plan(g, range(3, 8), [0, 2])
    result = write_folder(g, job, tmp_path / "ds", "imagefolder", batch_size=4, grid=tmp_path / "grid.png")
    assert (result.written, result.skipped) == (10, 0)
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["cat", "gankit-job.json", "metadata.jsonl", "owl"]
    for name, label in (("cat", 0), ("owl", 2)):  # each file holds the image of its seed in its folder's class
        want = g.generate(range(3, 8), labels=[label] * 5)
        for k, seed in enumerate(range(3, 8)):
            np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "ds" / name / f"{seed:06d}.png")), want[k])
    records = [json.loads(line) for line in (tmp_path / "ds" / "metadata.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in records] == [f"{c}/{s:06d}.png" for c in ("cat", "owl") for s in range(3, 8)]
    r = records[-1]
    assert (r["seed"], r["label"], r["class_name"], r["truncation"]) == (7, 2, "owl", 1.0)
    assert r["model_sha256"] == g.sha256 and len(r["model_sha256"]) == 64 and r["provider"] == "CPUExecutionProvider"
    # The same folder read back as a training set: classes from the sub-folders, labels right.
    data = load_image_folder(tmp_path / "ds", 16, 3)
    assert data.classes == ["cat", "owl"] and data.labels.tolist() == [0] * 5 + [1] * 5
    assert Image.open(tmp_path / "grid.png").size == (2 + 8 * 18, 2 + 2 * 18)  # one row per class


def test_npz_holds_images_labels_seeds_and_class_names(cond, tmp_path):
    g = Generator(cond)
    job = plan(g, [5, 1], [1, 2], truncation=0.5)
    write_npz(g, job, tmp_path / "d.npz", batch_size=3)
    with np.load(tmp_path / "d.npz") as f:
        assert f["labels"].tolist() == [1, 1, 2, 2] and f["seeds"].tolist() == [5, 1, 5, 1]
        assert f["classes"].tolist() == CLASSES and json.loads(str(f["metadata"]))["truncation"] == 0.5
        np.testing.assert_array_equal(f["images"][3], g.generate([1], labels=[2], truncation=0.5)[0])


def test_truncation_shrinks_latents_toward_the_mean(cond):
    g = Generator(cond)
    np.testing.assert_allclose(g.latents([3], truncation=0.5), 0.5 * g.latents([3]), rtol=1e-6)
    flat = g.generate(range(6), labels=[1] * 6, truncation=0.0)  # psi 0: every seed gives the class's mean image
    assert len({x.tobytes() for x in flat}) == 1
    assert not np.array_equal(flat[0], g.generate([0], labels=[2], truncation=0.0)[0])  # ... one per class
    with pytest.raises(GankitError, match="truncation"):
        g.generate([0], labels=[0], truncation=-1)


def test_shards_together_are_exactly_the_single_run(cond, tmp_path):
    g = Generator(cond)
    job = plan(g, range(0, 11), truncation=0.8)
    write_folder(g, job, tmp_path / "single", "imagefolder", batch_size=4)
    single = files_of(tmp_path / "single")
    assert len([k for k in single if k.endswith(".png")]) == 33
    union: dict[str, bytes] = {}
    for i in range(4):  # separate folders, as on separate machines, with another batch size
        write_folder(g, job.shard(i, 4), tmp_path / f"part{i}", "imagefolder", batch_size=3)
        part = files_of(tmp_path / f"part{i}")
        images = {k: v for k, v in part.items() if k.endswith(".png")}
        # a shard lists exactly its own images in the folder ("present means there"), no more
        records = part.pop(f"gankit-shard-{i}-of-4.jsonl")
        listed = [json.loads(line)["file_name"] for line in records.decode().splitlines()]
        assert sorted(listed) == sorted(images) and len(images) in (8, 9) and "metadata.jsonl" not in part
        assert not set(images) & set(union)  # disjoint
        union.update(images)
        assert part["gankit-job.json"] == single["gankit-job.json"]
    assert union == {k: v for k, v in single.items() if k.endswith(".png")}

    merged = tmp_path / "merged"  # copied together: the same command without --shard writes the whole metadata
    for i in range(4):  # (and the shards' own records files, done with, go)
        shutil.copytree(tmp_path / f"part{i}", merged, dirs_exist_ok=True)
    assert write_folder(g, job, merged, "imagefolder") == WriteResult(0, 33)
    assert files_of(merged) == single
    for i in range(3):  # ... and into one shared folder, shards in any order
        write_folder(g, job.shard((i + 1) % 3, 3), tmp_path / "shared", "imagefolder")
    assert write_folder(g, job, tmp_path / "shared", "imagefolder") == WriteResult(0, 33)
    assert files_of(tmp_path / "shared") == single
    assert write_folder(g, job.shard(1, 8), tmp_path / "shared", "imagefolder") == WriteResult(0, 4)
    assert files_of(tmp_path / "shared") == single  # a shard run after the whole job leaves no stray records file


def test_rerun_skips_what_is_there_and_clears_a_dead_writer_s_leftovers(cond, tmp_path):
    g = Generator(cond)
    job = plan(g, range(6), [1])
    write_folder(g, job.shard(0, 2), tmp_path / "ds", "imagefolder")  # as if cut off half way
    stale = tmp_path / "ds" / "dog" / f".000001.png.{_HOST}.999999999.1.tmp"  # a killed writer's half file
    stale.write_bytes(b"\x89PNG half")
    live = tmp_path / "ds" / "dog" / f".000003.png.{_HOST}.{os.getpid()}.1.tmp"  # this process: not touched
    live.write_bytes(b"in flight")
    before = files_of(tmp_path / "ds")
    result = write_folder(g, job, tmp_path / "ds", "imagefolder")
    assert (result.written, result.skipped) == (3, 3)
    assert not stale.exists() and live.exists()
    live.unlink()
    after = files_of(tmp_path / "ds")
    assert {k: after[k] for k in before if k.endswith(".png")} == {
        k: v for k, v in before.items() if k.endswith(".png")
    }
    assert sorted(k for k in after if k.endswith(".png")) == [f"dog/{s:06d}.png" for s in range(6)]
    assert remove_stale_temporaries(tmp_path / "ds" / "dog") == 0


def test_another_model_or_truncation_is_refused_in_a_used_folder(cond, small_uncond, tmp_path):
    g = Generator(cond)
    write_folder(g, plan(g, [0], [0]), tmp_path / "ds", "imagefolder")
    with pytest.raises(GankitError, match="another job .*truncation"):
        write_folder(g, plan(g, [0], [0], truncation=0.7), tmp_path / "ds", "imagefolder")
    u = Generator(small_uncond)
    with pytest.raises(GankitError, match="another job .*model_sha256"):
        write_folder(u, plan(u, [0]), tmp_path / "ds", "png")


@pytest.fixture(scope="module")
def small_uncond(tmp_path_factory):
    return tiny_generator(tmp_path_factory.mktemp("u") / "u.onnx", channels=3)


def test_layout_and_label_mistakes(cond, small_uncond, tmp_path):
    g, u = Generator(cond), Generator(small_uncond)
    with pytest.raises(GankitError, match="imagefolder layout sorts images by class"):
        write_folder(u, plan(u, [0]), tmp_path / "a", "imagefolder")
    with pytest.raises(GankitError, match="seeds would collide"):
        write_folder(g, plan(g, [0]), tmp_path / "b", "png")
    with pytest.raises(GankitError, match="unconditional"):
        plan(u, [0], [1])
    with pytest.raises(GankitError, match="give one label per image"):
        g.generate([0])
    with pytest.raises(GankitError, match=r"labels must lie in \[0, 2\]"):
        g.generate([0, 1], labels=[0, 3])
    with pytest.raises(GankitError, match="takes no labels"):
        u.generate([0], labels=[0])
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(GankitError, match="bad shard"):
            parse_shard(bad)
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").iterdir())


def test_cli_per_class_dataset_and_its_mistakes(cond, small_uncond, tmp_path, capsys):
    rc, out = call(capsys, "generate", cond, "--per-class", 4, "--classes", "owl,0", "--out", tmp_path / "ds")
    assert rc == 0 and "wrote 8 images" in out.out, out.err
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["cat", "gankit-job.json", "metadata.jsonl", "owl"]
    rc, out = call(capsys, "generate", cond, "--per-class", 4, "--classes", "owl,0", "--out", tmp_path / "ds")
    assert rc == 0 and "wrote 0 images" in out.out and "kept 8 already there" in out.out
    rc, out = call(
        capsys, "generate", cond, "--seeds", "7", "--class", "dog", "--format", "png", "--out", tmp_path / "flat"
    )
    assert rc == 0 and (tmp_path / "flat" / "000007.png").is_file(), out.err
    mistakes = [
        (["--per-class", 3, "--seeds", "0-2"], "not both"),
        (["--per-class", 3, "--class", "emu"], "unknown class 'emu'"),
        (["--per-class", 3, "--shard", "2/2"], "bad shard"),
        (["--per-class", 3, "--shard", "0/2", "--format", "npz"], "--shard needs a folder layout"),
        (["--per-class", 3, "--truncation", "-0.5"], "truncation"),
        (["--format", "png"], "seeds would collide"),
        (["--per-class", 3, "--png-level", 10], "--png-level"),
        (["--per-class", 3, "--png-level", 0, "--format", "npz"], "--png-level is for PNG folders"),
    ]
    for args, fragment in mistakes:
        rc, out = call(capsys, "generate", cond, *args, "--out", tmp_path / "bad")
        assert_one_line_error(out.err, rc, fragment)
    for args in (["--per-class", 3], ["--class", "1"], ["--format", "imagefolder"]):
        rc, out = call(capsys, "generate", small_uncond, *args, "--out", tmp_path / "bad2")
        assert_one_line_error(out.err, rc, "unconditional")


def test_png_level_trades_file_size_for_speed_not_pixels(cond, tmp_path, capsys):
    sizes, reference = {}, None
    for level in (0, 1, 9):
        rc, out = call(
            capsys, "generate", cond, "--per-class", 5, "--png-level", level, "--out", tmp_path / f"l{level}"
        )
        assert rc == 0, out.err
        files = sorted((tmp_path / f"l{level}").rglob("*.png"))
        assert len(files) == 15
        sizes[level] = sum(f.stat().st_size for f in files)
        pixels = [np.asarray(Image.open(f)) for f in files]
        if reference is not None:
            assert all(np.array_equal(a, b) for a, b in zip(pixels, reference))
        reference = pixels
    assert sizes[0] > 1.3 * sizes[1] >= 1.3 * sizes[9], sizes  # stored blocks are bigger; deflate shrinks


@pytest.mark.slow  # an end-to-end run in a subprocess
def test_train_conditional_on_class_folders_export_and_generate(capsys, tmp_path):
    """In this process (tests/test_cli.py runs the same chain as separate processes)."""
    folder = make_image_folder(tmp_path / "pets", n_per_class=8, classes=("cats", "dogs"))
    run = tmp_path / "run"
    tiny = ["--image-size", 16, "--width", 4, "--batch-size", 8, "--steps", 3, "--threads", 1]
    rc, out = call(capsys, "train", "--data", folder, "--conditional", *tiny, "--out", run)
    assert rc == 0, out.err
    assert "conditional dcgan (2 classes)" in out.err
    assert Image.open(run / "samples" / "step_0000003.png").size == (2 + 8 * 18, 2 + 2 * 18)  # a row per class
    rc, out = call(capsys, "export", run, "--out", tmp_path / "c.onnx")
    assert rc == 0 and "conditional dcgan (2 classes) 3x16x16" in out.err, out.err
    rc, out = call(capsys, "info", tmp_path / "c.onnx")
    assert "labels: int64 [N], class index: 0=cats, 1=dogs" in out.out
    rc, out = call(capsys, "generate", tmp_path / "c.onnx", "--per-class", 3, "--out", tmp_path / "synth")
    assert rc == 0, out.err
    assert sorted(p.relative_to(tmp_path / "synth").as_posix() for p in (tmp_path / "synth").rglob("*.png")) == [
        f"{c}/{s:06d}.png" for c in ("cats", "dogs") for s in range(3)
    ]
    # A folder without classes cannot train a conditional model: one clear line.
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in list((folder / "cats").iterdir())[:4]:
        (flat / p.name).write_bytes(p.read_bytes())
    rc, out = call(capsys, "train", "--data", flat, "--conditional", "--image-size", 16, "--out", tmp_path / "r2")
    assert_one_line_error(out.err, rc, "--conditional needs labelled data")


def test_a_class_folder_another_shard_makes_at_the_same_moment_is_shared(cond, tmp_path, monkeypatch):
    """Two shards into one folder race to make a class folder: the loser's mkdir fails with FileExistsError, and it
    writes into the winner's folder (which it then never removes as its own)."""
    from pathlib import Path

    g, out = Generator(cond), tmp_path / "shared"
    real_mkdir, raced = Path.mkdir, []

    def mkdir_after_the_other_shard(self, *args, **kwargs):
        if self.parent == out:  # a class folder: the other shard makes it first
            real_mkdir(self)
            raced.append(self.name)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir_after_the_other_shard)
    result = write_folder(g, plan(g, range(4)).shard(0, 2), out, "imagefolder")
    monkeypatch.undo()
    assert sorted(raced) == sorted(p.name for p in out.iterdir() if p.is_dir()) and len(raced) == 3
    assert result.written == 6 and len(list(out.glob("*/*.png"))) == 6
