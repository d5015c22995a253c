"""Faults: Ctrl-C, SIGTERM, kill -9, diverged runs, resume rules, untrusted files, racing jobs.

Every case ends in one line on stderr and a non-zero exit, keeps what was done whole, writes nothing
half-made and nothing outside the output it was given.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, assert_one_line_error, call, expect_error, make_image_folder, run_cli, torch_blocker
from gankit.checkpoint import save_checkpoint
from gankit.config import ModelConfig, TrainConfig
from gankit.export import to_onnx
from gankit.models import build_models
from gankit.train import Trainer, train
from gankit_runtime import GankitError, Generator, plan, write_folder, write_npz
from gankit_runtime.evaluation.evaluate import DEFAULT_CLASSIFIER
from gankit_runtime.files import _HOST, atomic_path, create_exclusive
from helpers import CONFIGS, trainer
from PIL import Image
from tiny_models import tiny_generator


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("pets") / "pets", n_per_class=16)


TINY = ["--image-size", 16, "--width", 4, "--batch-size", 4, "--threads", 1]


def _as_from_a_terminal():
    # A process started in the background by a non-interactive shell (CI run with `&` or nohup) inherits SIGINT
    # ignored, and Python then leaves it ignored; Ctrl-C in a terminal arrives with its default action.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=_as_from_a_terminal,
    )


def wait_for(predicate, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------------------- interruption
@pytest.mark.slow  # an end-to-end run in a subprocess
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_training_checkpoints_exits_non_zero_and_resumes(capsys, pets, tmp_path, sig, code):
    run = tmp_path / "run"
    p = start_cli("train", "--data", pets, *TINY, "--epochs", 1000, "--out", run)
    assert wait_for(lambda: (run / "samples").is_dir()), p.communicate()
    time.sleep(1.0)  # into the step loop
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert line and "interrupted at step" in line[0] and "--resume" in line[0], err
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    step = int(line[0].split("interrupted at step ")[1].split(":")[0])
    assert state["step"] == step > 0
    rc, out = call(capsys, "train", "--out", run, "--resume", "--steps", step + 2)  # in this process: quicker
    assert rc == 0, out.err
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == step + 2


def test_interrupted_generate_exits_non_zero_keeps_whole_files_and_a_rerun_finishes(tmp_path):
    out = tmp_path / "o"
    model = ROOT / "exported" / "mnist-dcgan.onnx"
    p = start_cli("generate", model, "--seeds", "0-199999", "--batch-size", 16, "--threads", 1, "--out", out)
    assert wait_for(lambda: out.is_dir() and len(os.listdir(out)) > 40)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert_one_line_error(err, p.returncode, "interrupted", "run the same command again")
    names = os.listdir(out)
    assert "metadata.jsonl" not in names and not [n for n in names if n.startswith(".")]  # no temporaries
    pngs = sorted(n for n in names if n.endswith(".png"))
    for name in pngs[-5:]:
        Image.open(out / name).load()  # whole images only
    r = run_cli("generate", model, "--seeds", f"0-{len(pngs) + 9}", "--out", out)
    assert r.returncode == 0 and f"kept {len(pngs)} already there" in r.stdout and "wrote 10 images" in r.stdout


@pytest.mark.slow  # an end-to-end run in a subprocess
def test_kill_9_loses_at_most_the_steps_since_the_last_periodic_checkpoint(capsys, pets, tmp_path):
    run = tmp_path / "run"
    p = start_cli("train", "--data", pets, *TINY, "--epochs", 1000, "--checkpoint-every", 2, "--out", run)
    assert wait_for(lambda: (run / "checkpoint.pt").is_file())  # mid-epoch: 8 steps per epoch
    time.sleep(0.5)
    p.kill()
    p.communicate()
    step = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    assert step >= 2
    rc, out = call(capsys, "train", "--out", run, "--resume", "--steps", step + 1)
    assert rc == 0 and f"step {step} -> {step + 1}" in out.err, out.err


def test_periodic_checkpoints_are_exact_points_to_resume_from(image_folder, tmp_path):
    model = ModelConfig(kind="dcgan", size=16, channels=3, width=4)
    cfg = TrainConfig(data=str(image_folder), batch_size=4, epochs=10, checkpoint_every=2)
    straight = torch.load(train(tmp_path / "a", model, cfg, max_steps=5), weights_only=True)
    # A run killed after step 5: its last checkpoint is step 4 (every 2 steps, 6 steps per epoch).
    real_step = Trainer.train_step
    calls = []

    def crash_at_five(self):
        if self.step == 5:
            raise RuntimeError("power cut")
        calls.append(self.step)
        return real_step(self)

    Trainer.train_step = crash_at_five
    try:
        with pytest.raises(RuntimeError, match="power cut"):
            train(tmp_path / "b", model, cfg, max_steps=8)
    finally:
        Trainer.train_step = real_step
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 4
    resumed = torch.load(train(tmp_path / "b", None, None, resume=True, max_steps=5), weights_only=True)
    for name, value in straight["generator"].items():
        assert torch.equal(value, resumed["generator"][name]), name


# ---------------------------------------------------------------------------------------- divergence
def test_a_diverged_run_stops_with_its_last_good_checkpoint(image_folder, tmp_path, monkeypatch):
    model = ModelConfig(kind="dcgan", size=16, channels=3, width=4)
    cfg = TrainConfig(data=str(image_folder), batch_size=4, epochs=10, checkpoint_every=2)
    real_step = Trainer.train_step

    def nan_after_three(self):
        stats = real_step(self)
        if self.step > 3:
            stats.loss_d = math.nan
        return stats

    monkeypatch.setattr(Trainer, "train_step", nan_after_three)
    with pytest.raises(GankitError, match=r"diverged at step 4.*last good checkpoint \(step 2\) is kept"):
        train(tmp_path / "r", model, cfg, max_steps=8)
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(Trainer, "train_step", _always_inf(real_step))
    with pytest.raises(GankitError, match="diverged at step 1.*no checkpoint was written"):
        train(tmp_path / "fresh", model, cfg, max_steps=8)
    assert not (tmp_path / "fresh").exists()  # a run that never checkpointed leaves no folder


def _always_inf(real_step):
    def step(self):
        stats = real_step(self)
        stats.loss_g = math.inf
        return stats

    return step


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory):
    """A checkpoint whose generator gives NaN (as a run trained with an infinite learning rate would)."""
    d = tmp_path_factory.mktemp("nan")
    t = trainer(CONFIGS["dcgan28"], steps=1)
    with torch.no_grad():
        for m in (t.G, t.G_ema):
            next(m.parameters()).fill_(math.nan)
    save_checkpoint(t.state_dict(), d / "checkpoint.pt")
    cfg = CONFIGS["dcgan28"]
    g, _ = build_models(cfg)
    with torch.no_grad():
        next(g.parameters()).fill_(math.nan)
    to_onnx(g.eval(), cfg, d / "nan.onnx", {})
    return d


def test_export_generate_and_eval_refuse_a_nan_model(capsys, nan_run, tmp_path):
    expect_error(capsys, ["export", nan_run, "--out", tmp_path / "g.onnx"], "NaN", "nothing exported")
    assert not (tmp_path / "g.onnx").exists()
    expect_error(capsys, ["generate", nan_run / "nan.onnx", "--out", tmp_path / "o"], "NaN or infinite")
    assert not (tmp_path / "o").exists()  # nothing of a failed job is left: no folder, no job file
    expect_error(capsys, ["generate", nan_run / "nan.onnx", "--format", "npz", "--out", tmp_path / "d.npz"], "NaN")
    assert list(tmp_path.iterdir()) == []
    if DEFAULT_CLASSIFIER.is_file():
        expect_error(capsys, ["eval", nan_run / "nan.onnx", "--samples", 20, "--out", tmp_path / "e.json"], "NaN")
        assert not (tmp_path / "e.json").exists()


def test_infinite_or_nan_settings_are_refused(capsys, tmp_path):
    for args, fragment in (
        (["--lr-g", "nan"], "lr-g must be a finite"),
        (["--lr-d", "inf"], "lr-d must be a finite"),
        (["--ema", "nan"], "--ema"),
        (["--label-smoothing", "nan"], "finite"),
        (["--image-size", 0], "image size"),
        (["--image-size", 100000], "image size"),
        (["--channels", 0], "channels"),
        (["--device", "mps"], "mps"),
        (["--device", "cuda:x"], "bad device"),
    ):
        expect_error(capsys, ["train", *args, "--out", tmp_path / "r"], fragment)
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------- resume rules
def test_resume_keeps_the_run_s_settings_and_refuses_other_ones(capsys, pets, tmp_path):
    run = tmp_path / "run"
    rc, out = call(capsys, "train", "--data", pets, *TINY, "--epochs", 2, "--steps", 3, "--lr-g", 0.002, "--out", run)
    assert rc == 0, out.err
    # No --epochs: the run's own 2 epochs (16 steps), not the option's default of 5.
    rc, out = call(capsys, "train", "--out", run, "--resume")
    assert rc == 0 and "step 3 -> 16" in out.err, out.err
    # The same value again is fine; another value of a run setting is refused, naming it.
    rc, out = call(capsys, "train", "--out", run, "--resume", "--lr-g", 0.002, "--epochs", 3)
    assert rc == 0 and "step 16 -> 24" in out.err, out.err
    for args, fragment in (
        (["--lr-g", 1e-4], "--lr-g 0.0001 differs from the run's 0.002"),
        (["--model", "vanilla"], "--model vanilla differs from the run's dcgan"),
        (["--batch-size", 8], "--batch-size 8 differs"),
        (["--conditional"], "--conditional True"),
        (["--steps", 10], "already at step 24"),
        (["--epochs", 3], "already at step 24"),
    ):
        expect_error(capsys, ["train", "--out", run, "--resume", *args], fragment)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 24


# ---------------------------------------------------------------------------------------- files
def test_a_killed_npz_writer_s_temporary_is_removed_by_the_next_run(tmp_path):
    g = Generator(ROOT / "exported" / "mnist-dcgan.onnx")
    stale = tmp_path / f".d.npz.{_HOST}.999999999.1.tmp"
    stale.write_bytes(b"x" * 1000)
    write_npz(g, plan(g, range(3)), tmp_path / "d.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def test_atomic_writes_fsync_file_and_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    with atomic_path(tmp_path / "ckpt.pt") as tmp:
        tmp.write_bytes(b"weights")
    assert len(synced) == 2 and (tmp_path / "ckpt.pt").read_bytes() == b"weights"


def test_an_empty_file_counts_as_missing_on_a_rerun(tmp_path):
    g = Generator(ROOT / "exported" / "mnist-dcgan.onnx")
    write_folder(g, plan(g, range(4)), tmp_path / "o")
    (tmp_path / "o" / "000002.png").write_bytes(b"")  # what a power cut leaves of an unsynced file
    result = write_folder(g, plan(g, range(4)), tmp_path / "o")
    assert (result.written, result.skipped) == (1, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o" / "000002.png"))[..., None], g.generate([2])[0])


def test_grid_on_a_rerun_with_nothing_left_and_on_a_shard(tmp_path, capsys):
    model = ROOT / "exported" / "mnist-dcgan.onnx"
    rc, _ = call(capsys, "generate", model, "--seeds", "10-99", "--out", tmp_path / "o", "--grid", tmp_path / "a.png")
    assert rc == 0
    rc, out = call(capsys, "generate", model, "--seeds", "10-99", "--out", tmp_path / "o", "--grid", tmp_path / "b.png")
    assert rc == 0 and "wrote 0 images" in out.out
    rc, _ = call(
        capsys,
        "generate",
        model,
        "--seeds",
        "10-99",
        "--out",
        tmp_path / "s",
        "--shard",
        "1/3",
        "--grid",
        tmp_path / "c.png",
    )
    assert rc == 0
    a, b, c = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in "abc")
    np.testing.assert_array_equal(a, b)  # the job's first 64 images, whatever this run wrote
    np.testing.assert_array_equal(a, c)
    first = np.asarray(Image.open(tmp_path / "o" / "000010.png"))
    np.testing.assert_array_equal(a[2:30, 2:30], first)  # top-left: seed 10, the job's first


def test_two_jobs_racing_for_one_folder_one_wins(tmp_path):
    for attempt in range(20):
        results = []
        barrier = threading.Barrier(2)

        def claim(text):
            barrier.wait()
            results.append((create_exclusive(tmp_path / f"job{attempt}.json", text.encode()), text))

        threads = [threading.Thread(target=claim, args=(t,)) for t in ("first", "second")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [text for won, text in results if won]
        assert len(winners) == 1
        assert (tmp_path / f"job{attempt}.json").read_text() == winners[0]


def test_two_processes_with_different_settings_never_mix_in_one_folder(tmp_path):
    model = ROOT / "exported" / "mnist-dcgan.onnx"
    for attempt in range(3):
        out = tmp_path / f"o{attempt}"
        procs = [
            start_cli("generate", model, "--seeds", "0-9", "--truncation", psi, "--out", out) for psi in (1.0, 0.5)
        ]
        codes = [p.wait(timeout=120) for p in procs]
        assert sorted(codes) == [0, 1], codes  # one claims the folder, the other is refused
        job = json.loads((out / "gankit-job.json").read_text())
        records = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
        assert {r["truncation"] for r in records} == {job["truncation"]} and len(records) == 10


# ---------------------------------------------------------------------------------------- untrusted models
@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """make(classes=..., output_range=...): a small conditional generator with the given metadata."""
    d = tmp_path_factory.mktemp("crafted")
    count = [0]

    def make(classes=("a", "b"), output_range="-1,1"):
        count[0] += 1
        return tiny_generator(
            d / f"m{count[0]}.onnx",
            classes=("a", "b"),
            metadata={"classes": json.dumps(list(classes)), "output_range": output_range},
        )

    return make


@pytest.mark.parametrize(
    "classes,fragment",
    [
        (["", "a"], "1 to 100 bytes"),
        ([".."], "distinct"),
        (["..", "a"], "starts or ends with '.'"),
        (["a/b", "c"], "path separator"),
        (["/", "c"], "path separator"),
        (["a\x00b", "c"], "control characters"),
        (["x" * 300, "c"], "1 to 100 bytes"),
        ([" a", "b"], "spaces"),
        ([1, 2], "JSON list of class names"),
    ],
)
def test_class_names_from_a_model_file_cannot_reach_outside_out(capsys, crafted, tmp_path, classes, fragment):
    model = crafted(classes=classes)
    err = expect_error(capsys, ["generate", model, "--per-class", 2, "--out", tmp_path / "o"], fragment)
    assert "\x00" not in err
    assert list(tmp_path.iterdir()) == []
    assert not os.path.exists("/000000.png")


@pytest.mark.parametrize("text", ["1,1", "nan,1", "1,-1", "inf,1", "0", "a,b"])
def test_bad_output_range_metadata_is_refused(capsys, crafted, tmp_path, text):
    expect_error(
        capsys, ["generate", crafted(output_range=text), "--per-class", 1, "--out", tmp_path / "o"], "output_range"
    )
    assert not (tmp_path / "o").exists()


def test_crafted_checkpoints_are_one_line(capsys, tmp_path):
    state = trainer(CONFIGS["dcgan28"]).state_dict()
    cases = {
        "huge.pt": {**state, "model_config": {**state["model_config"], "width": 10**9}},
        "types.pt": {**state, "model_config": {**state["model_config"], "z_dim": "100"}},
        "noconfig.pt": {k: v for k, v in state.items() if k != "model_config"},
        "notdict.pt": {**state, "model_config": [1, 2]},
        "weights.pt": {**state, "generator": {"net.0.weight": "not a tensor"}, "generator_ema": {"x": 1}},
    }
    for name, crafted_state in cases.items():
        save_checkpoint(crafted_state, tmp_path / name)
        err = expect_error(capsys, ["export", tmp_path / name, "--out", tmp_path / "g.onnx"])
        assert name not in ("huge.pt",) or "limit" in err
        assert name not in ("types.pt",) or "must be int" in err
    (tmp_path / "run").mkdir()
    save_checkpoint(
        {**state, "train_config": {**state["train_config"], "batch_size": "64"}}, tmp_path / "run" / "checkpoint.pt"
    )
    expect_error(capsys, ["train", "--out", tmp_path / "run", "--resume"], "batch_size", "must be int")
    assert not (tmp_path / "g.onnx").exists()


def test_a_malicious_checkpoint_is_named_as_such_without_torch_s_advice(capsys, tmp_path):
    import pickle
    import shutil

    with open(tmp_path / "code.pt", "wb") as f:
        pickle.dump(shutil.rmtree, f)
    err = expect_error(
        capsys,
        ["export", tmp_path / "code.pt", "--out", tmp_path / "x.onnx"],
        "not a gankit checkpoint",
        "may be unsafe",
    )
    assert "weights_only=False" not in err


# ---------------------------------------------------------------------------------------- eval and outputs
@pytest.mark.skipif(not DEFAULT_CLASSIFIER.is_file(), reason="no shipped classifier")
def test_eval_mistakes_are_one_line_and_found_before_the_work(capsys, tmp_path):
    model = ROOT / "exported" / "mnist-dcgan.onnx"
    for n in (2, 3):
        expect_error(capsys, ["eval", model, "--samples", n, "--out", tmp_path / "e.json"], "samples")
    expect_error(
        capsys,
        ["eval", model, "--samples", 20, "--classifier", model, "--out", tmp_path / "e.json"],
        "not a 28x28 classifier of 10 classes",
    )
    started = time.perf_counter()
    expect_error(capsys, ["eval", model, "--out", "/proc/e.json"], "cannot write to /proc")
    assert time.perf_counter() - started < 5  # refused before 10,000 samples are made
    expect_error(capsys, ["generate", ROOT / "exported", "--out", tmp_path / "o"], "is a folder")
    expect_error(capsys, ["generate", model, "--format", "npz", "--out", "/proc/x.npz"], "cannot write to /proc")


@pytest.mark.network  # MNIST on a cold cache
def test_eval_of_an_onnx_needs_only_the_runtime(tmp_path):
    env = torch_blocker(tmp_path)  # no torch, no onnx ...
    blocker = tmp_path / "blocker" / "gankit"  # ... and no training package
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('gankit is not installed in this test')\n")
    r = run_cli(
        "eval",
        ROOT / "exported" / "mnist-dcgan.onnx",
        "--samples",
        20,
        "--no-reference",
        "--out",
        tmp_path / "e.json",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "e.json").read_text())["generated"]["class_counts"]
    r = run_cli("eval", tmp_path, "--out", tmp_path / "e2.json", env=env)  # a run folder needs torch to export
    assert_one_line_error(r.stderr, r.returncode, "needs PyTorch")


def test_default_outputs_never_overwrite_shipped_files(capsys, tmp_path, monkeypatch):
    import gankit.classifier as classifier

    monkeypatch.chdir(tmp_path)
    shipped = {p: p.read_bytes() for p in DEFAULT_CLASSIFIER.parent.glob("*.onnx")}
    monkeypatch.setattr(classifier, "train_classifier", lambda data, **kw: (classifier.DigitClassifier().eval(), 0.5))
    rc, _ = call(capsys, "train-classifier", "--data", "fashion-mnist")  # training stubbed: where does it write?
    assert rc == 0 and (tmp_path / "runs" / "fashion-mnist-classifier.onnx").is_file()
    assert shipped and all(p.read_bytes() == b for p, b in shipped.items())
    if DEFAULT_CLASSIFIER.is_file():  # eval's figures go beside the model, never into the working directory
        (tmp_path / "m").mkdir()
        model = shutil.copy(ROOT / "exported" / "mnist-dcgan.onnx", tmp_path / "m" / "mnist-dcgan.onnx")
        rc, _ = call(capsys, "eval", model, "--samples", 20, "--no-reference")
        assert rc == 0 and (tmp_path / "m" / "mnist-dcgan.eval.json").is_file()
        assert not list(tmp_path.glob("*.json"))


def test_running_out_of_memory_is_one_line(image_folder, tmp_path, monkeypatch):
    def out_of_memory(self):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "train_step", out_of_memory)
    with pytest.raises(GankitError, match="out of memory.*lower --batch-size"):
        train(
            tmp_path / "r",
            ModelConfig(kind="dcgan", size=16, channels=3, width=4),
            TrainConfig(data=str(image_folder), batch_size=4),
            max_steps=2,
        )
    assert not (tmp_path / "r").exists()
