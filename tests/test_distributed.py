"""Training under torchrun (DDP, gloo on the CPU, 2 processes): the same run as one process, resumable across
world sizes, over two "machines" on 127.0.0.1, and a lost rank stops the job with its checkpoint whole."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, call, make_image_folder, run_cli

pytestmark = pytest.mark.slow

TINY = ["--image-size", 16, "--width", 4, "--batch-size", 16, "--threads", 1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GANKIT_DIST_TIMEOUT": "60"}
# The one-process runs a case compares with run in this process (`call`): a process of its own would import torch
# and torch._dynamo again (about 7 s of CPU each on two busy cores); the test workers run one thread, as --threads 1.


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("pets") / "pets", n_per_class=32)  # 64 images, 4 steps/epoch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, nproc=2, extra=(), wait=True):
    if "--nnodes" not in map(str, extra):
        extra = ["--master-port", free_port(), *extra]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        *map(str, extra),
        str(ROOT / "cli.py"),
        *map(str, args),
    ]
    p = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT, start_new_session=True
    )
    if not wait:
        return p
    out, err = p.communicate(timeout=300)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def weights(run):
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    return {
        f"{k}.{n}": v
        for k in ("generator", "discriminator", "generator_ema")
        for n, v in state[k].items()
        if v.is_floating_point()
    }, state


def max_difference(a, b) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_two_ranks_train_the_one_process_run(capsys, pets, tmp_path):
    """The vanilla GAN with augmentation and InfoGAN's code: each option's DDP path, in one run. (The DCGAN with
    synchronised batch norm and self-conditioned modes: the stopped-and-resumed test below.)"""
    model = ["--model", "vanilla", "--augment", "fixed", "--augment-p", "0.5", "--modes", "2"]
    rc, out = call(capsys, "train", "--data", pets, *TINY, *model, "--steps", 5, "--out", tmp_path / "one")
    assert rc == 0, out.err
    two = torchrun("train", "--data", pets, *TINY, *model, "--steps", 5, "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    assert "torchrun: 2 processes, backend gloo, global batch 16 (8 per process)" in two.stderr
    assert two.stdout.count("checkpoint:") == 1  # rank 0 speaks for the group
    a, state_a = weights(tmp_path / "one")
    b, state_b = weights(tmp_path / "two")
    assert state_a["step"] == state_b["step"] == 5
    assert max_difference(a, b) < 1e-5


def test_two_ranks_fit_the_transfer_latent_as_one_process_does(capsys, pets, tmp_path):
    """--transfer latent's autoencoder runs on every rank before the GAN, then rank 0's fit is broadcast: two ranks
    end with the one-process generator, class means and shared covariance included."""
    model = ["--model", "vanilla", "--conditional", "--transfer", "latent", "--transfer-steps", 4]
    rc, out = call(capsys, "train", "--data", pets, *TINY, *model, "--steps", 3, "--out", tmp_path / "one")
    assert rc == 0, out.err
    two = torchrun("train", "--data", pets, *TINY, *model, "--steps", 3, "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    assert two.stderr.count("transfer: autoencoder 4 steps") == 1  # rank 0 speaks for the group
    (a, state_a), (b, _) = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert not torch.equal(state_a["generator"]["join.means"][0], state_a["generator"]["join.means"][1])
    assert max_difference(a, b) < 1e-5


def one_process(model: list) -> list:
    """The one-process run of a torchrun case: --sync-bn is refused there; R1 is off with it (so say so)."""
    return [a for a in model if a != "--sync-bn"] + (["--r1", "0"] if "--sync-bn" in model else [])


def test_a_stopped_and_resumed_two_rank_run_equals_the_one_process_run(capsys, pets, tmp_path):
    """The DCGAN with synchronised batch norm and self-conditioned modes: two ranks, stopped after 3 steps and
    resumed to 6 (across an epoch's end, where the modes are clustered again: every rank takes rank 0's clusters),
    train what one process trains straight. (With InfoGAN's code, the DCGAN's first layer differs by 1e-6 after
    a step, from summation order, and GAN training grows that to 1e-3 in six: the vanilla case above has it.)"""
    args = ["--data", pets, *TINY, "--sync-bn", "--modes", "2", "--mode-learning", "self-conditioned", "--epochs", 3]
    rc, out = call(capsys, "train", *one_process(args), "--steps", 6, "--out", tmp_path / "straight")
    assert rc == 0, out.err
    first = torchrun("train", *args, "--steps", 3, "--out", tmp_path / "resumed")
    assert first.returncode == 0, first.stderr
    assert "torchrun: 2 processes, backend gloo, global batch 16 (8 per process)" in first.stderr
    assert first.stdout.count("checkpoint:") == 1  # rank 0 speaks for the group
    again = torchrun("train", "--out", tmp_path / "resumed", "--resume", "--steps", 6)
    assert again.returncode == 0 and "step 3 -> 6" in again.stderr, again.stderr
    (a, straight_state), (b, resumed_state) = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert torch.equal(straight_state["clusters"]["labels"], resumed_state["clusters"]["labels"])
    assert max_difference(a, b) < 1e-5
    # the comparison has teeth: one step fewer is 10x beyond the tolerance
    rc, out = call(capsys, "train", *one_process(args), "--steps", 5, "--out", tmp_path / "five")
    assert rc == 0, out.err
    assert max_difference(a, weights(tmp_path / "five")[0]) > 1e-4


def test_two_machines_on_localhost(pets, tmp_path):
    port = free_port()
    nodes = [
        torchrun(
            "train",
            "--data",
            pets,
            *TINY,
            "--sync-bn",
            "--steps",
            3,
            "--out",
            tmp_path / "run",
            nproc=1,
            wait=False,
            extra=["--nnodes", 2, "--node-rank", rank, "--master-addr", "127.0.0.1", "--master-port", port],
        )
        for rank in (0, 1)
    ]
    results = [p.communicate(timeout=300) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], results
    assert "torchrun: 2 processes" in results[0][1] and weights(tmp_path / "run")[1]["step"] == 3
    assert sorted(os.listdir(tmp_path / "run")) == [
        ".gankit-train.lock",
        "checkpoint.pt",
        "metrics.jsonl",
        "plot.png",
        "samples",
        "training-images.sha256",  # a folder's images: the record export carries into the model
    ]  # rank 0 alone writes (and holds the folder)


def test_a_killed_rank_stops_the_job_with_its_checkpoint_whole_and_it_resumes(capsys, pets, tmp_path):
    run = tmp_path / "run"
    job = torchrun("train", "--data", pets, *TINY, "--epochs", 10000, "--checkpoint-every", 2, "--out", run, wait=False)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    workers = subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    os.kill(int(workers[1]), signal.SIGKILL)  # one rank dies, as on a lost machine
    started = time.monotonic()
    _, err = job.communicate(timeout=120)
    assert job.returncode != 0 and time.monotonic() - started < 90, err[-2000:]
    state = torch.load(run / "checkpoint.pt", weights_only=True)  # whole: it loads
    step = state["step"]
    assert step >= 2 and step % 2 == 0
    rc, out = call(capsys, "train", "--out", run, "--resume", "--steps", step + 2)  # on one process now
    assert rc == 0 and f"step {step} -> {step + 2}" in out.err, out.err


def test_nproc_launches_the_ranks_and_a_refusal_is_one_line(capsys, pets, tmp_path):
    """train --nproc N is torchrun in one command: a run like torchrun's, and a mistake is rank 0's one line
    with the ranks' exit code (no launcher traceback, no line per rank). Without --sync-bn each rank normalises
    its own share of the batch, so the run is not the one process's (and says so). In grey (one channel, as
    MNIST): DDP's warning that a gradient's strides do not match (channels_last weights of one channel) is gone."""
    grey = ["--data", pets, *TINY, "--channels", 1, "--steps", 3]
    shadow = tmp_path / "cwd" / "gankit_cli"  # a folder in the working directory named as the ranks' package
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise SystemExit('the working directory shadowed gankit_cli')\n")
    r = run_cli("train", "--nproc", 2, *grey, "--out", tmp_path / "run", env=ENV, cwd=shadow.parent)
    assert r.returncode == 0 and "batch norm per process" in r.stderr, r.stderr
    assert "Grad strides" not in r.stderr, r.stderr
    two, state = weights(tmp_path / "run")
    assert state["step"] == 3
    rc, out = call(capsys, "train", *grey, "--out", tmp_path / "one")
    assert rc == 0, out.err
    assert max_difference(weights(tmp_path / "one")[0], two) > 1e-4
    r = run_cli(
        "train", "--nproc", 2, "--data", pets, *TINY[:4], "--batch-size", 15, "--out", tmp_path / "bad", env=ENV
    )
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(errors) == 1 and "divide" in errors[0], r.stderr


@pytest.mark.parametrize(
    "failures, code",
    [({0: -15, 1: 1}, 1), ({0: 1, 1: -15}, 1), ({0: 2, 1: 1}, 2), ({0: -15, 1: -15}, 143), ({1: -2}, 130)],
)
def test_the_launcher_answers_with_the_failing_rank_s_code_not_the_signal_that_stopped_the_others(failures, code):
    """The first rank to fail makes torchrun SIGTERM the rest (a race: rank 0 may be the one stopped)."""
    from types import SimpleNamespace

    from gankit.launch import ranks_exit_code

    assert ranks_exit_code({rank: SimpleNamespace(exitcode=c) for rank, c in failures.items()})[1] == code
