"""The command line, end to end, and every bad input: one line on stderr, non-zero exit, no traceback."""

import hashlib
import pickle
import shutil

import numpy as np
import onnx
import pytest
import torch
from conftest import call, expect_error
from gankit.checkpoint import save_checkpoint
from gankit_runtime import Generator
from gankit_runtime.evaluation.evaluate import DEFAULT_CLASSIFIER
from helpers import CONFIGS, trainer
from onnx import TensorProto, helper
from PIL import Image

import cli


def test_train_export_generate_on_an_image_folder(capsys, image_folder, tmp_path):
    """The chain in this process (test_faults and CI's README commands run `cli.py` as a program)."""
    run = tmp_path / "run"
    args = ["--data", image_folder, "--image-size", 16, "--width", 4, "--batch-size", 8, "--steps", 4]
    rc, out = call(capsys, "train", *args, "--epochs", 3, "--threads", 1, "--out", run)
    assert rc == 0, out.err
    assert "step 4" in out.err and (run / "checkpoint.pt").is_file()
    saved = torch.load(run / "checkpoint.pt", weights_only=True)["train_config"]
    assert saved["lr_g"] == saved["lr_d"] == 1e-3  # the measured default of a DCGAN below 64x64
    rc, out = call(capsys, "export", run, "--out", tmp_path / "g.onnx")
    assert rc == 0 and "parity batch  64" in out.err, out.err
    # the images it trained on are recorded, and carried into the model (check-augmentation refuses them as tests)
    files = sorted(p for p in image_folder.rglob("*") if p.is_file())  # PNGs and JPEGs
    want = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in files)
    assert (run / "training-images.sha256").read_text().split() == want
    record = Generator(tmp_path / "g.onnx").info.metadata["training_images_sha256_16"]
    assert record.split(",") == sorted({h[:16] for h in want}) and len(want) > 1
    rc, out = call(
        capsys, "generate", tmp_path / "g.onnx", "--seeds", "0-4,10", "--out", tmp_path / "imgs",
        "--grid", tmp_path / "grid.png", "--batch-size", 4,
    )  # fmt: skip
    assert rc == 0, out.err
    names = sorted(p.name for p in (tmp_path / "imgs").glob("*.png"))
    assert names == [f"{s:06d}.png" for s in (0, 1, 2, 3, 4, 10)]
    assert Image.open(tmp_path / "imgs" / "000010.png").size == (16, 16)
    assert Image.open(tmp_path / "imgs" / "000010.png").mode == "RGB"
    rc, out = call(
        capsys, "generate", tmp_path / "g.onnx", "--seeds", "0-4,10", "--format", "npz", "--out", tmp_path / "d.npz"
    )
    assert rc == 0, out.err
    with np.load(tmp_path / "d.npz") as f:
        assert f["images"].shape == (6, 16, 16, 3)
        np.testing.assert_array_equal(f["images"][5], np.asarray(Image.open(tmp_path / "imgs" / "000010.png")))
    rc, out = call(capsys, "info", tmp_path / "g.onnx")
    assert rc == 0 and "float32 [N, 3, 16, 16]" in out.out and "training_steps: 4" in out.out


# ---------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A real checkpoint and its export, for the cases that need one."""
    d = tmp_path_factory.mktemp("good")
    save_checkpoint(trainer(CONFIGS["dcgan28"], steps=1).state_dict(), d / "checkpoint.pt")
    assert cli.main(["export", str(d), "--out", str(d / "g.onnx")]) == 0
    return d


def test_unknown_model_and_data(capsys, tmp_path):
    expect_error(capsys, ["train", "--model", "stylegan", "--out", tmp_path / "r"], "stylegan")
    expect_error(capsys, ["train", "--data", "cifar11", "--out", tmp_path / "r"], "unknown data")
    expect_error(capsys, ["train", "--g-loss", "hinge", "--out", tmp_path / "r"], "hinge")
    expect_error(capsys, ["train", "--channels", "2", "--out", tmp_path / "r"], "channels")
    expect_error(capsys, ["train", "--image-size", "48", "--out", tmp_path / "r"], "48")
    expect_error(capsys, ["train", "--d-steps", "0", "--out", tmp_path / "r"], "d-steps")
    assert not (tmp_path / "r").exists()


def test_bad_image_folders(capsys, tmp_path):
    expect_error(capsys, ["train", "--data", tmp_path / "missing", "--out", tmp_path / "r"], "no such folder")
    (tmp_path / "empty").mkdir()
    expect_error(capsys, ["train", "--data", tmp_path / "empty", "--out", tmp_path / "r"], "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_text("text, not a PNG")
    expect_error(capsys, ["train", "--data", tmp_path / "junk", "--out", tmp_path / "r"], "none is an image")
    expect_error(capsys, ["train", "--data", tmp_path / "junk" / "a.png", "--out", tmp_path / "r"], "is a file")


def test_bad_checkpoints(capsys, tmp_path, good):
    expect_error(capsys, ["export", tmp_path / "nothing", "--out", tmp_path / "x.onnx"], "not found")
    blob = (good / "checkpoint.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    expect_error(capsys, ["export", tmp_path / "truncated.pt", "--out", tmp_path / "x.onnx"], "not a readable")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "foreign.pt")
    expect_error(capsys, ["export", tmp_path / "foreign.pt", "--out", tmp_path / "x.onnx"], "not a gankit checkpoint")
    with open(tmp_path / "code.pt", "wb") as f:  # a pickle that would run code when loaded
        pickle.dump(shutil.rmtree, f)
    expect_error(capsys, ["export", tmp_path / "code.pt", "--out", tmp_path / "x.onnx"], "may be unsafe")
    (tmp_path / "text.pt").write_text("hello")
    expect_error(capsys, ["export", tmp_path / "text.pt", "--out", tmp_path / "x.onnx"], "not a readable")
    assert not (tmp_path / "x.onnx").exists()


def test_resume_needs_a_run(capsys, tmp_path):
    expect_error(capsys, ["train", "--resume", "--out", tmp_path / "r"], "not found")


def test_bad_onnx_files(capsys, tmp_path):
    (tmp_path / "text.onnx").write_text("not a model")
    expect_error(capsys, ["generate", tmp_path / "text.onnx", "--out", tmp_path / "o"], "not a loadable ONNX")
    expect_error(capsys, ["generate", tmp_path / "missing.onnx", "--out", tmp_path / "o"], "not found")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 100])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 100])
    # IR version pinned: onnx's newest default is more than an older onnxruntime (-gpu) loads.
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
    )
    onnx.save(model, tmp_path / "classifier.onnx")
    expect_error(capsys, ["generate", tmp_path / "classifier.onnx", "--out", tmp_path / "o"], "not a generator")
    assert not (tmp_path / "o").exists()


def test_bad_outputs(capsys, tmp_path, good):
    (tmp_path / "file").write_text("x")
    expect_error(capsys, ["generate", good / "g.onnx", "--out", tmp_path / "file"], "not a folder")
    expect_error(capsys, ["generate", good / "g.onnx", "--out", tmp_path / "file" / "sub"], "cannot write")
    expect_error(capsys, ["generate", good / "g.onnx", "--format", "npz", "--out", tmp_path], "is a folder")
    expect_error(capsys, ["generate", good / "g.onnx", "--format", "npz", "--out", tmp_path / "d.zip"], ".npz")
    expect_error(capsys, ["export", good, "--out", tmp_path], "is a folder")
    expect_error(capsys, ["export", good, "--out", tmp_path / "file" / "g.onnx"], "not a folder")
    expect_error(capsys, ["train", "--data", tmp_path, "--out", tmp_path / "file"], "exists and is not a folder")


def test_bad_options(capsys, good, tmp_path):
    # every malformed seed list is refused by parse_seeds (tests/test_seeds.py); here: it reaches the user as one line
    expect_error(capsys, ["generate", good / "g.onnx", "--seeds", "9-3", "--out", tmp_path / "o"], "seeds")
    expect_error(capsys, ["generate", good / "g.onnx", "--batch-size", "0"], "batch-size")
    expect_error(capsys, ["generate", good / "g.onnx", "--colour", "red"], "colour")
    expect_error(capsys, ["generate", good / "g.onnx", "--device", "tpu", "--out", tmp_path / "o"], "bad device")
    expect_error(capsys, ["export", good, "--out", tmp_path / "g.onnx", "--atol", "0"], "atol")


def test_full_disk_is_one_line_and_leaves_only_whole_files(capsys, tmp_path, good, full_disk):
    full_disk(4)
    expect_error(
        capsys,
        ["generate", good / "g.onnx", "--seeds", "0-99", "--out", tmp_path / "o"],
        "No space left on device",
        f"cannot write {tmp_path / 'o' / '000004.png'}",
    )
    left = sorted(p.name for p in (tmp_path / "o").iterdir())  # the job file, then whole images only
    assert left == ["000000.png", "000001.png", "000002.png", "000003.png", "gankit-job.json"]
    expect_error(
        capsys,
        ["generate", good / "g.onnx", "--format", "npz", "--out", tmp_path / "d.npz"],
        "No space left on device",
        f"cannot write {tmp_path / 'd.npz'}",
    )
    assert not any(p.name.endswith(".npz") or p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_a_disk_full_before_the_job_record_names_it_and_leaves_no_folder(capsys, tmp_path, good, monkeypatch):
    import errno

    import gankit_runtime.files as files

    def full(path, data, durable):  # the run's first write: the job record's temporary (no file name in the error)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "_write_temporary", full)
    out = tmp_path / "o"
    expect_error(capsys, ["generate", good / "g.onnx", "--seeds", "0-3", "--out", out], f"cannot write {out}")
    assert not out.exists()


@pytest.mark.network  # MNIST on a cold cache
@pytest.mark.skipif(not DEFAULT_CLASSIFIER.is_file(), reason="no classifier")
def test_eval_an_export_and_a_run_folder(capsys, tmp_path, good, monkeypatch):
    import json

    rc, _ = call(capsys, "eval", good / "g.onnx", "--samples", 300, "--no-reference", "--out", tmp_path / "e.json")
    assert rc == 0
    result = json.loads((tmp_path / "e.json").read_text())
    g = result["generated"]
    assert sum(g["class_counts"]) == 300 and 0 <= g["precision"] <= 1 and g["fd"] > 0 and "real_train" not in result
    monkeypatch.chdir(tmp_path)  # default output of an .onnx: beside the model, never the working directory
    rc, _ = call(capsys, "eval", good / "g.onnx", "--samples", 300, "--no-reference")
    assert rc == 0 and (good / "g.eval.json").is_file() and [p.name for p in tmp_path.glob("*.json")] == ["e.json"]
    rc, _ = call(capsys, "eval", good, "--samples", 300, "--no-reference")  # a run folder: exported on the fly
    assert rc == 0 and (good / "eval.json").is_file()  # the run's own figures, in the run: no name shared
    rc, _ = call(capsys, "eval", good / "g.onnx", "--samples", 300, "--no-reference", "--truncation", 0.5)
    truncated = json.loads((good / "g.eval.json").read_text())  # a rerun replaces its own figures
    assert rc == 0 and truncated["truncation"] == 0.5 and truncated["generated"]["fd"] != g["fd"]
    (tmp_path / "notes.json").write_text("{}")  # ... but nothing else
    expect_error(capsys, ["eval", good / "g.onnx", "--out", tmp_path / "notes.json"], "--force")
    assert (tmp_path / "notes.json").read_text() == "{}"
    for target in (good / "g.onnx", good / "checkpoint.pt"):  # what it reads is never what it writes
        before = target.read_bytes()
        source = good if target.suffix == ".pt" else good / "g.onnx"
        expect_error(capsys, ["eval", source, "--out", target, "--force"], "choose another path")
        assert target.read_bytes() == before
    expect_error(capsys, ["eval", good / "g.onnx", "--data", "cifar10"], "cifar10", "fashion-mnist")
    expect_error(capsys, ["eval", good / "g.onnx", "--classifier", tmp_path / "none.onnx"], "not found")
    (tmp_path / "broken.onnx").write_text("not a classifier")
    expect_error(capsys, ["eval", good / "g.onnx", "--classifier", tmp_path / "broken.onnx"], "not a loadable")


def test_the_command_s_choices_and_defaults_are_the_training_config_s():
    """The CLI spells its choice lists and defaults itself (generate and info run without the training package):
    each must be gankit.config's, or a user would be offered a choice that training refuses, or get another default."""
    import typer
    from gankit import config
    from gankit_cli import frame

    choices = {
        frame.ModelKind: config.MODEL_KINDS,
        frame.GLoss: config.G_LOSSES,
        frame.Loss: config.LOSSES,
        frame.DCondition: config.D_CONDITIONS,
        frame.ModeLearning: config.MODE_LEARNING,
        frame.DNorm: config.D_NORMS,
        frame.Augment_: config.AUGMENT_MODES,
        frame.DataSet: config.BUILTIN_DATA,
    }
    for enum, values in choices.items():
        assert tuple(e.value for e in enum) == values, enum
    assert frame.MAX_SEED == config.MAX_SEED
    defaults = {**vars(config.ModelConfig()), **vars(config.TrainConfig())}
    params = {p.name: p for p in typer.main.get_command(cli.app).commands["train"].params}
    compared = 0
    for option, field in config.OPTION_FIELDS.items():
        default = params[option].default
        if default is None or field not in defaults:  # decided by the data set or the model (README, --help)
            continue
        default = default.value if hasattr(default, "value") else default
        assert default == defaults[field], option
        compared += 1
    assert compared >= 20
