"""Nothing lost, nothing false: outputs never destroy inputs, data sets never mislabel, links are never written
through, and every failure is one line. Each test is a user's repro that once exited 0 or gave a traceback."""

import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, call, expect_error, make_image_folder
from gankit.checkpoint import save_checkpoint
from gankit_runtime import GankitError, Generator, contract, plan
from helpers import CONFIGS, trainer
from tiny_models import shape_liar, tiny_generator

import cli


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "plain": tiny_generator(d / "plain.onnx"),
        "cond": tiny_generator(d / "cond.onnx", classes=["cat", "dog"]),
        "other": tiny_generator(d / "other.onnx", seed=1),
    }


@pytest.fixture
def run(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    save_checkpoint(trainer(CONFIGS["dcgan28"], steps=1).state_dict(), d / "checkpoint.pt")
    return d


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------ outputs that are inputs
def test_export_never_writes_over_its_checkpoint_nor_over_a_file_it_did_not_make(capsys, run, tmp_path):
    before = (run / "checkpoint.pt").read_bytes()
    for extra in ([], ["--force"]):
        expect_error(capsys, ["export", run, "--out", run / "checkpoint.pt", *extra], "checkpoint", "another path")
        assert (run / "checkpoint.pt").read_bytes() == before
    shipped = tmp_path / "shipped.onnx"
    shipped.write_bytes(b"a model somebody else made")
    expect_error(capsys, ["export", run, "--out", shipped], "--force")
    assert shipped.read_bytes() == b"a model somebody else made"
    assert call(capsys, "export", run)[0] == 0  # the run's own generator.onnx ...
    assert call(capsys, "export", run)[0] == 0  # ... is the run's to replace
    assert call(capsys, "export", run, "--out", shipped, "--force")[0] == 0


def test_the_hint_after_training_points_inside_the_run(capsys, tmp_path):
    make_image_folder(tmp_path / "pets", n_per_class=8)
    rc, out = call(
        capsys,
        "train",
        "--data",
        tmp_path / "pets",
        "--image-size",
        16,
        "--width",
        4,
        "--batch-size",
        8,
        "--steps",
        1,
        "--out",
        tmp_path / "r",
    )
    assert rc == 0 and f"export {tmp_path / 'r'}" in out.out and "exported/" not in out.out


def test_generate_never_writes_over_its_model_nor_its_own_files(capsys, models, tmp_path):
    model = models["plain"]
    before = model.read_bytes()
    expect_error(
        capsys, ["generate", model, "--seeds", "0-3", "--out", tmp_path / "o", "--grid", model, "--force"], "the model"
    )
    expect_error(capsys, ["generate", model, "--seeds", "0-3", "--out", model, "--format", "npz"], "the model")
    assert model.read_bytes() == before and not (tmp_path / "o").exists()
    npz = tmp_path / "d.npz"
    expect_error(capsys, ["generate", model, "--seeds", "0-3", "--out", npz, "--grid", npz], "the npz")
    assert not npz.exists()
    out = tmp_path / "o"
    assert call(capsys, "generate", model, "--seeds", "0-3", "--out", out)[0] == 0
    files = snapshot(out)
    for own in ("000000.png", "metadata.jsonl", "gankit-job.json", "sub/grid.png"):
        expect_error(
            capsys,
            ["generate", model, "--seeds", "0-3", "--out", out, "--grid", out / own, "--force"],
            "inside the output folder",
        )
    assert snapshot(out) == files


def test_npz_and_grid_replace_only_what_generate_wrote(capsys, models, tmp_path):
    model = models["plain"]
    notes, npz = tmp_path / "notes.png", tmp_path / "x.npz"
    notes.write_text("my notes")
    expect_error(capsys, ["generate", model, "--seeds", "0-3", "--out", npz, "--grid", notes], "--force")
    npz.write_text("my data")
    expect_error(capsys, ["generate", model, "--seeds", "0-3", "--out", npz], "--force")
    assert notes.read_text() == "my notes" and npz.read_text() == "my data"
    npz.unlink()
    for _ in range(2):  # an npz and a grid it wrote are replaced by a rerun
        assert call(capsys, "generate", model, "--seeds", "0-3", "--out", npz, "--grid", tmp_path / "g.png")[0] == 0
    with np.load(npz) as f:  # --out x.npz is an npz without --format
        assert f["images"].shape == (4, 16, 16, 1)


# ------------------------------------------------------------------------------ folders gankit did not claim
def test_a_folder_of_someone_else_s_labels_is_never_touched(capsys, models, tmp_path):
    out = tmp_path / "labelled"
    out.mkdir()
    (out / "metadata.jsonl").write_text('{"file_name": "a.png", "label": 3}\n')
    (out / "000005.png").write_text("not an image")
    os.symlink("/etc/hostname", out / "000001.png")
    before = snapshot(out)
    for model, layout in ((models["plain"], "png"), (models["cond"], "imagefolder")):
        args = ["generate", model, "--seeds", "0-9", "--format", layout, "--out", out]
        expect_error(capsys, args, "no gankit job claimed")
    assert snapshot(out) == before and sorted(os.listdir(out)) == ["000001.png", "000005.png", "metadata.jsonl"]


def test_a_rerun_with_another_class_into_a_flat_folder_is_refused(capsys, models, tmp_path):
    out = tmp_path / "o"
    args = ["generate", models["cond"], "--seeds", "0-4", "--format", "png", "--out", out]
    assert call(capsys, *args, "--class", "cat")[0] == 0
    before = snapshot(out)
    expect_error(capsys, [*args, "--class", "dog"], "classes ['cat'] there, ['dog'] here")
    assert snapshot(out) == before
    assert {json.loads(x)["class_name"] for x in (out / "metadata.jsonl").read_text().splitlines()} == {"cat"}


def test_links_inside_an_output_are_never_followed(capsys, models, tmp_path):
    out, outside = tmp_path / "o", tmp_path / "outside"
    outside.mkdir()
    args = ["generate", models["cond"], "--seeds", "0-2", "--out", out]
    assert call(capsys, *args)[0] == 0
    # a claimed folder: an image replaced by a link is made again in place; the link's target is untouched
    (outside / "target").write_text("keep me")
    (out / "cat" / "000001.png").unlink()
    os.symlink(outside / "target", out / "cat" / "000001.png")
    (out / "dog").rename(tmp_path / "dog-away")
    os.symlink(outside, out / "dog")  # a class folder that links outside --out
    expect_error(capsys, args, "is a link")
    assert sorted(os.listdir(outside)) == ["target"] and (outside / "target").read_text() == "keep me"
    (out / "dog").unlink()
    assert call(capsys, *args)[0] == 0
    assert not (out / "cat" / "000001.png").is_symlink() and (outside / "target").read_text() == "keep me"


def test_a_run_folder_s_links_are_refused(capsys, tmp_path):
    pets, outside = make_image_folder(tmp_path / "pets", n_per_class=8), tmp_path / "outside"
    outside.mkdir()
    train = ["train", "--data", pets, "--image-size", 16, "--width", 4, "--batch-size", 8, "--steps", 1]
    r = tmp_path / "r"
    r.mkdir()
    os.symlink(outside, r / "samples")
    expect_error(capsys, [*train, "--out", r], "is a link")
    (r / "samples").unlink()
    assert call(capsys, *train, "--out", r)[0] == 0
    (outside / "log").write_text("")
    (r / "metrics.jsonl").unlink()
    os.symlink(outside / "log", r / "metrics.jsonl")
    expect_error(capsys, ["train", "--out", r, "--resume", "--steps", 2], "is a link")
    assert (outside / "log").read_text() == "" and list(outside.iterdir()) == [outside / "log"]


def test_two_trainings_into_one_folder_cannot_run_at_once(capsys, tmp_path):
    pets = make_image_folder(tmp_path / "pets", n_per_class=8)
    r = tmp_path / "r"
    r.mkdir()
    with open(r / ".gankit-train.lock", "w") as held:  # as another training holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        expect_error(
            capsys,
            ["train", "--data", pets, "--image-size", 16, "--width", 4, "--batch-size", 8, "--steps", 1, "--out", r],
            "another training is running",
        )
    assert not (r / "checkpoint.pt").exists()


@pytest.mark.parametrize("late", [False, True], ids=["launcher-dies-after", "launcher-died-before"])
def test_a_rank_whose_launcher_dies_is_told_to_stop(tmp_path, late):
    """kill -9 of the launcher: each rank gets SIGTERM from the kernel (then checkpoints and stops), never trains on;
    also when the launcher died while the rank was still starting (late: before it asked for the signal)."""
    marker = tmp_path / "stopped"
    rank = (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (open({str(marker)!r}, 'w').close(), sys.exit(0)))\n"
        f"print('ready', flush=True)\ntime.sleep({1.0 if late else 0})\n"
        "from gankit_runtime.rank_guard import stop_with_launcher\n"
        "stop_with_launcher()\ntime.sleep(60)\n"
    )
    launcher = (
        "import os, subprocess, sys\n"
        "os.environ['GANKIT_LAUNCHER_PID'] = str(os.getpid())\n"
        f"p = subprocess.Popen([sys.executable, '-c', {rank!r}])\n"
        "print(p.pid, flush=True)\np.wait()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "ready"  # the rank (same stdout) has asked for the signal
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    with pytest.raises(ProcessLookupError):
        for _ in range(100):
            os.kill(child, 0)
            time.sleep(0.05)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_a_rank_of_a_torchrun_that_is_pid_1_keeps_running(tmp_path):
    """torchrun as a container's entrypoint is PID 1, so its ranks' parent is PID 1: that is not a dead launcher.
    A rank of it (TORCHELASTIC_RUN_ID set, no LAUNCHER_PID) runs the gankit command to its end."""
    launcher = (
        "import os, subprocess, sys\n"
        "assert os.getpid() == 1\n"
        "os.environ['TORCHELASTIC_RUN_ID'] = 'job'\n"
        "os.environ.pop('GANKIT_LAUNCHER_PID', None)\n"
        "sys.exit(subprocess.run([sys.executable, '-m', 'gankit_cli', '--version']).returncode)\n"
    )
    try:
        done = subprocess.run(
            ["unshare", "--pid", "--fork", sys.executable, "-c", launcher], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the rank did not finish")
    if "Operation not permitted" in done.stderr:
        pytest.skip("unshare --pid is not permitted here")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gankit ")


# ------------------------------------------------------------------------------ false statements
def test_a_model_replaced_while_sessions_start_cannot_mix_two_models(models, tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(models["plain"].read_bytes())
    want = Generator(models["plain"], threads=1).generate(range(8))
    real = contract.open_session

    def open_then_replace(*args, **kwargs):
        session = real(*args, **kwargs)
        path.write_bytes(models["other"].read_bytes())  # rewritten in place after the first session
        return session

    monkeypatch.setattr("gankit_runtime.generator.open_session", open_then_replace)
    g = Generator(path, threads=2, lanes=2)
    assert path.read_bytes() == models["other"].read_bytes()  # the file was replaced while g started
    assert g.sha256 == Generator(models["plain"], threads=1).sha256
    single = [g.run(g.latents([s]), None) for s in range(8)]
    np.testing.assert_array_equal(np.concatenate(single), g.run(g.latents(range(8))))  # lanes: one model's images
    np.testing.assert_array_equal(g.generate(range(8), batch_size=1), want)


def test_a_model_that_lies_about_its_output_shape_is_refused(capsys, tmp_path):
    liar = shape_liar(tmp_path / "liar.onnx", declared=28, actual=64)
    for args in (
        ["--out", tmp_path / "o"],
        ["--out", tmp_path / "d.npz"],
        ["--out", tmp_path / "o", "--grid", tmp_path / "g.png"],
    ):
        expect_error(capsys, ["generate", liar, "--seeds", "0-3", *args], "declares images [4, 1, 28, 28] but made")
    assert sorted(os.listdir(tmp_path)) == ["liar.onnx"]


def test_ranges_whose_scale_is_not_finite_and_duplicate_seeds_are_refused(capsys, tmp_path):
    for text in ("-1e308,1e308", "0,1e-45"):
        model = tiny_generator(tmp_path / "m.onnx", metadata={"output_range": text})
        expect_error(capsys, ["generate", model, "--seeds", "0-3", "--out", tmp_path / "o"], "output_range")
    g = Generator(tiny_generator(tmp_path / "m.onnx"))
    for seeds in ([3, 1, 3], (s for s in (0, 0))):
        with pytest.raises(GankitError, match="listed twice"):
            plan(g, seeds)


def test_more_classes_in_the_metadata_than_the_model_has_is_one_line(capsys, tmp_path):
    ten = json.dumps([f"c{i}" for i in range(10)])
    config = json.dumps({"num_classes": 2})
    model = tiny_generator(tmp_path / "m.onnx", classes=["a", "b"], metadata={"classes": ten, "config": config})
    expect_error(capsys, ["generate", model, "--seeds", "0", "--out", tmp_path / "o"], "config has 2")
    model = tiny_generator(tmp_path / "m.onnx", classes=["a", "b"], metadata={"classes": ten})  # no config to tell
    expect_error(capsys, ["generate", model, "--seeds", "0", "--out", tmp_path / "o"], "onnxruntime failed")
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


# ------------------------------------------------------------------------------ one line, the right code
@pytest.mark.parametrize("option", ["--threads", "--lanes"])
def test_absurd_thread_counts_are_refused(capsys, models, tmp_path, option):
    expect_error(capsys, ["generate", models["plain"], option, 5000, "--out", tmp_path / "o"], "must be 1 to")
    if option == "--threads":
        expect_error(capsys, ["train", "--threads", 5000, "--out", tmp_path / "r"], "per CPU")
    assert not (tmp_path / "o").exists()


def test_options_that_would_be_ignored_are_refused(capsys, models, tmp_path):
    expect_error(capsys, ["train", "--augment", "ada", "--augment-p", 0.5, "--out", tmp_path / "r"], "--augment-p")
    expect_error(capsys, ["train", "--augment-p", 0.5, "--out", tmp_path / "r"], "--augment-p")
    expect_error(capsys, ["generate", models["plain"], "--tf32", "--out", tmp_path / "o"], "CUDA")
    expect_error(capsys, ["eval", models["plain"], "--samples", 10**9], "samples")
    expect_error(capsys, ["generate", models["plain"], "--batch-size", 10**9, "--out", tmp_path / "o"], "batch size")
    assert list(tmp_path.iterdir()) == []


def test_info_escapes_what_a_model_file_says(capsys, tmp_path):
    model = tiny_generator(tmp_path / "m.onnx", metadata={"dataset": "\x1b[2J\x1b]0;owned\x07pets"})
    rc, out = call(capsys, "info", model)
    assert rc == 0 and "\x1b" not in out.out and "\x07" not in out.out and "pets" in out.out


def test_a_random_bytes_checkpoint_is_corrupt_not_unsafe(capsys, tmp_path):
    (tmp_path / "junk.pt").write_bytes(np.random.default_rng(0).bytes(5000))
    err = expect_error(capsys, ["export", tmp_path / "junk.pt", "--out", tmp_path / "g.onnx"], "not a readable")
    assert "unsafe" not in err and "run code" not in err


def test_a_full_disk_while_checkpointing_is_one_line_naming_the_file(tmp_path, monkeypatch):
    def full(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(GankitError, match=f"could not write checkpoint {tmp_path / 'c.pt'}"):
        save_checkpoint({"a": 1}, tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_distributed_timeout_is_one_line_and_only_read_under_torchrun(monkeypatch):
    from gankit.distributed import timeout

    monkeypatch.setenv("GANKIT_DIST_TIMEOUT", "abc")
    r = subprocess.run(
        [sys.executable, "-c", "import gankit.train, gankit.export"],
        capture_output=True,
        text=True,
        env={**os.environ, "GANKIT_DIST_TIMEOUT": "abc"},
    )
    assert r.returncode == 0, r.stderr
    for text in ("abc", "²", "99999999999999999999", "0"):
        monkeypatch.setenv("GANKIT_DIST_TIMEOUT", text)
        with pytest.raises(GankitError, match="GANKIT_DIST_TIMEOUT"):
            timeout()


def test_training_data_hidden_folders_and_bad_class_names(capsys, tmp_path):
    from gankit.data import load_image_folder

    pets = make_image_folder(tmp_path / "pets", n_per_class=4)
    make_image_folder(pets / ".ipynb_checkpoints", n_per_class=2, classes=("x",))
    assert load_image_folder(pets, 16, 3).classes == ["cats", "dogs"]
    bad = make_image_folder(tmp_path / "bad", n_per_class=2, classes=("ok", " spaced"))
    expect_error(capsys, ["train", "--data", bad, "--conditional", "--out", tmp_path / "r"], "spaced")
    (tmp_path / "cache").write_text("a file")
    expect_error(capsys, ["train", "--data-dir", tmp_path / "cache", "--out", tmp_path / "r"], "is a file")
    assert not (tmp_path / "r").exists()


def test_the_limit_that_stops_a_run_is_named(capsys, tmp_path):
    pets = make_image_folder(tmp_path / "pets", n_per_class=8)
    rc, out = call(
        capsys,
        "train",
        "--data",
        pets,
        "--image-size",
        16,
        "--width",
        4,
        "--batch-size",
        8,
        "--epochs",
        1,
        "--steps",
        50,
        "--out",
        tmp_path / "r",
    )
    assert rc == 0 and "--epochs 1 (2 steps) stops the run before --steps 50" in out.err and "(--epochs 1)" in out.err
    # --steps without --epochs decides the length (the README's rare-class recipe), and the run records its epochs
    args = ["train", "--data", pets, "--image-size", 16, "--width", 4, "--batch-size", 8, "--steps", 13]
    rc, out = call(capsys, *args, "--out", tmp_path / "s")
    assert rc == 0 and "(--steps 13)" in out.err, out.err
    state = torch.load(tmp_path / "s" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 13 and state["train_config"]["epochs"] == 7  # 2 steps an epoch


def test_progress_without_a_terminal_is_a_plain_line_every_so_often():
    from gankit_runtime.progress import Progress

    log = io.StringIO()
    p = Progress(log, plain_every=0.05)
    p.update("loss 1", 1, 10)  # too soon after the start
    time.sleep(0.06)
    p.update("loss 2", 2, 10)
    p.update("loss 3", 3, 10)  # too soon after the last line
    assert log.getvalue() == "2/10 loss 2\n"


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_generate_stopped_by_a_signal_exits_128_plus_it(tmp_path, sig, code):
    out = tmp_path / "o"
    p = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "generate",
            ROOT / "exported" / "mnist-dcgan.onnx",
            "--seeds",
            "0-199999",
            "--threads",
            "1",
            "--out",
            out,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (out.is_dir() and len(os.listdir(out)) > 20) and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code and "interrupted" in err and "Traceback" not in err, err


def test_the_cli_without_typer_is_one_line(tmp_path):
    blocker = tmp_path / "blocker" / "typer"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('typer is blocked in this test')\n")
    r = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "info", "x.onnx"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(blocker.parent)},
    )
    assert r.returncode == 1 and r.stderr.startswith("error: ") and len(r.stderr.splitlines()) == 1, r.stderr


def test_no_flag_of_any_command_shows_a_value_in_the_help(capsys):
    """Every on/off flag of every command (read from the app, not listed here) shows no <bool> in its help."""
    import typer

    commands = typer.main.get_command(cli.app).commands
    checked = 0
    for name, command in commands.items():
        flags = [p.opts[0] for p in command.params if getattr(p, "is_flag", False) and p.opts[0] != "--help"]
        rc, out = call(capsys, name, "--help")
        assert rc == 0
        for flag in flags:
            line = next(x for x in out.out.splitlines() if flag in x)
            assert "<bool>" not in line and "BOOLEAN" not in line, (name, line)
            checked += 1
    assert checked >= 12 and {"split", "check-augmentation", "web"} <= set(commands)


def test_a_crafted_classifier_is_one_line(capsys, models, tmp_path):
    """eval's --classifier is a file from anywhere: NaN outputs or features of one dimension are refused."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    for name, features, fill in (("nan", 8, np.nan), ("flat", 1, 0.5)):
        images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 1, 28, 28])
        logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
        feats = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", features])
        w = numpy_helper.from_array(np.full((784, 10), fill, np.float32), "w")
        v = numpy_helper.from_array(np.full((784, features), 0.5, np.float32), "v")
        shape = numpy_helper.from_array(np.array([-1, 784], np.int64), "shape")
        nodes = [
            helper.make_node("Reshape", ["images", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("MatMul", ["flat", "v"], ["features"]),
        ]
        model = helper.make_model(
            helper.make_graph(nodes, name, [images], [logits, feats], [w, v, shape]),
            opset_imports=[helper.make_opsetid("", 13)],
            ir_version=8,
        )
        onnx.save(model, str(tmp_path / f"{name}.onnx"))
        m = tiny_generator(tmp_path / "g.onnx", size=28)
        expect_error(
            capsys,
            ["eval", m, "--samples", 20, "--classifier", tmp_path / f"{name}.onnx", "--out", tmp_path / "e.json"],
            "classifier",
        )
        assert not (tmp_path / "e.json").exists()


def test_a_plot_that_fails_warns_and_training_goes_on(capsys, tmp_path, monkeypatch):
    import gankit.monitor

    def broken(run):
        raise RuntimeError("no display, no fonts")

    monkeypatch.setattr(gankit.monitor, "plot_run", broken)
    pets = make_image_folder(tmp_path / "pets", n_per_class=8)
    rc, out = call(
        capsys,
        "train",
        "--data",
        pets,
        "--image-size",
        16,
        "--width",
        4,
        "--batch-size",
        8,
        "--steps",
        2,
        "--out",
        tmp_path / "r",
    )
    assert rc == 0 and "warning: could not draw" in out.err and (tmp_path / "r" / "checkpoint.pt").is_file()


def test_the_data_cache_as_a_file_is_refused_by_eval_too(capsys, models, tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("a file")
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "cache"))
    m = tiny_generator(tmp_path / "g.onnx", size=28)
    expect_error(capsys, ["eval", m, "--samples", 20, "--out", tmp_path / "e.json"], "is a file")
