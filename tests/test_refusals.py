"""Round two of "nothing lost, nothing false": each test is a repro that failed before its fix (issue 26)."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from conftest import ROOT, assert_one_line_error, call, expect_error, run_cli
from gankit_runtime import GankitError, Generator, to_uint8
from gankit_runtime.images import save_png
from onnx import numpy_helper
from tiny_models import tiny_generator


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"plain": tiny_generator(d / "plain.onnx"), "cond": tiny_generator(d / "cond.onnx", classes=["cat", "dog"])}


def tampered(src: Path, dst: Path, **constants: float) -> Path:
    """A copy of an export whose pixels chain uses other constants (gankit_half=100.5: 100 levels too bright)."""
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        if init.name in constants:
            init.CopyFrom(numpy_helper.from_array(np.array(constants[init.name], np.float32), init.name))
    onnx.save(model, str(dst))
    return dst


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ------------------------------------------------------------------------------ data loss
def test_grid_never_replaces_a_png_that_gankit_did_not_write(capsys, models, tmp_path):
    screenshot = tmp_path / "screenshot.png"
    save_png(np.full((4, 4, 3), 200, np.uint8), screenshot)  # a real PNG, not ours
    before = screenshot.read_bytes()
    expect_error(
        capsys,
        ["generate", models["plain"], "--seeds", "0-3", "--out", tmp_path / "o", "--grid", screenshot],
        "--force",
    )
    assert screenshot.read_bytes() == before
    grid = tmp_path / "grid.png"
    for _ in range(2):  # a grid that gankit wrote is replaced by a rerun, without --force
        assert (
            call(capsys, "generate", models["plain"], "--seeds", "0-3", "--out", tmp_path / "o", "--grid", grid)[0] == 0
        )


@pytest.fixture
def ort_dist(tmp_path):
    """Stand-ins for onnxruntime-web's dist files (the site builder only copies them)."""
    from gankit_web.build_site import ORT_FILES

    d = tmp_path / "dist"
    d.mkdir()
    for f in ORT_FILES:
        (d / f).write_bytes(b"//")
    return d


def test_web_never_replaces_its_sources_the_checkout_the_cwd_or_someone_else_s_folder(
    capsys, models, ort_dist, tmp_path, monkeypatch
):
    web = ROOT / "web"
    before = sorted(os.listdir(web))
    for out in (web, ROOT, ROOT.parent):  # (web/ holds the page's sources where the runtime is installed editable)
        for force in ([], ["--force"]):
            words = ["holds"] if out != web else []
            expect_error(capsys, ["web", models["plain"], "--ort", ort_dist, "--out", out, *force], *words)
    assert sorted(os.listdir(web)) == before
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    expect_error(capsys, ["web", models["plain"], "--ort", ort_dist, "--out", foreign], "no manifest")
    expect_error(capsys, ["web", models["plain"], "--ort", ort_dist, "--out", foreign, "--force"], "no manifest")
    assert (foreign / "notes.txt").read_text() == "mine"
    for own in ("models/mine.onnx", "index.html"):  # a folder of the user's with a site's names only
        folder = tmp_path / own.replace("/", "-")
        (folder / own).parent.mkdir(parents=True)
        (folder / own).write_text("mine")
        for force in ([], ["--force"]):
            expect_error(capsys, ["web", models["plain"], "--ort", ort_dist, "--out", folder, *force], "no manifest")
        assert (folder / own).read_text() == "mine"
    site = tmp_path / "site"
    assert call(capsys, "web", models["plain"], "--ort", ort_dist, "--out", site)[0] == 0
    (site / "CNAME").write_text("gan.example.org")  # what a user adds to a built site is kept on a rebuild
    (site / "extra").mkdir()
    (site / "extra" / "page.html").write_text("mine")
    assert call(capsys, "web", models["plain"], "--ort", ort_dist, "--out", site)[0] == 0
    assert (site / "CNAME").read_text() == "gan.example.org" and (site / "extra" / "page.html").read_text() == "mine"
    (site / "index.html").write_text("edited")  # a site file the user changed: refused, --force replaces it
    expect_error(capsys, ["web", models["plain"], "--ort", ort_dist, "--out", site], "changed since", "--force")
    assert (site / "index.html").read_text() == "edited"
    assert call(capsys, "web", models["plain"], "--ort", ort_dist, "--out", site, "--force")[0] == 0
    assert (site / "index.html").read_bytes() == (web / "index.html").read_bytes() and (site / "CNAME").exists()
    (site / "sub").mkdir()
    monkeypatch.chdir(site / "sub")
    expect_error(capsys, ["web", models["plain"], "--ort", ort_dist, "--out", site], "working directory")


def test_a_killed_web_build_is_removed_by_the_next_run(capsys, models, ort_dist, tmp_path):
    pid = dead_pid()
    from gankit_runtime.files import _HOST

    site = tmp_path / "site"
    assert call(capsys, "web", models["plain"], "--ort", ort_dist, "--out", site)[0] == 0
    (site / "CNAME").write_text("gan.example.org")
    # killed between its two renames: the old site aside (with the user's file), the new one not yet in place
    aside = tmp_path / f".site.gankit-build.{_HOST}.{pid}.old"
    site.rename(aside)
    half = tmp_path / f".site.x1.gankit-build.{_HOST}.{pid}"  # and a killed build's temporary folder
    half.mkdir()
    (half / "big.wasm").write_bytes(b"0" * 1000)
    alive = tmp_path / f".site.x2.gankit-build.{_HOST}.{os.getpid()}"  # a build in progress (this process) stays
    other_host = tmp_path / f".site.x3.gankit-build.otherhost.{pid}"  # another machine's (a shared disk) stays
    for d in (alive, other_host):
        d.mkdir()
    assert call(capsys, "web", models["plain"], "--ort", ort_dist, "--out", site)[0] == 0
    assert (site / "CNAME").read_text() == "gan.example.org"  # the old site came back, and its file was carried
    assert not aside.exists() and not half.exists() and alive.is_dir() and other_host.is_dir()
    stale_old = tmp_path / f".site.gankit-build.{_HOST}.{pid}.old"  # killed after both renames: only removed
    stale_old.mkdir()
    assert call(capsys, "web", models["plain"], "--ort", ort_dist, "--out", site)[0] == 0
    assert not stale_old.exists() and (site / "CNAME").exists()


# ------------------------------------------------------------------------------ resource exhaustion
def test_nproc_is_capped_at_the_usable_cpus(capsys, tmp_path):
    expect_error(capsys, ["train", "--nproc", 1000, "--out", tmp_path / "r"], "--nproc 1000", "CPUs")
    assert not (tmp_path / "r").exists()


def test_a_rank_killed_by_a_signal_is_the_failure_reported_not_the_others_sigterm():
    from gankit.launch import ranks_exit_code

    rank0_stopped, rank1_killed = SimpleNamespace(exitcode=143), SimpleNamespace(exitcode=-9)
    assert ranks_exit_code({0: rank0_stopped, 1: rank1_killed}) == (1, 137, 9)
    assert ranks_exit_code({0: SimpleNamespace(exitcode=-15), 1: SimpleNamespace(exitcode=1)}) == (1, 1, None)


# ------------------------------------------------------------------------------ false success
@pytest.mark.parametrize("constants", [{"gankit_half": 100.5}, {"gankit_scale": 0.0}], ids=["bright", "black"])
def test_a_model_whose_pixels_lie_cannot_put_them_in_an_image(capsys, models, tmp_path, constants):
    """The runtime makes every image's bytes from the graph's `images` itself, so a `pixels` output that lies (on some
    latents or all of them) never reaches a PNG, an npz or a grid."""
    bad = tampered(models["cond"], tmp_path / "bad.onnx", **constants)
    g = Generator(bad, threads=1)
    labels = np.arange(20) % len(g.classes)
    z = g.latents(range(20))
    z[10:] *= 4  # saturated images too
    _, lying = g._checked(z, labels, pixels=True)
    truth = to_uint8(g.run(z, labels))
    assert (lying != truth).any()
    np.testing.assert_array_equal(g.generate(range(20), labels=labels), to_uint8(g.run(g.latents(range(20)), labels)))
    rc, out = call(
        capsys, "generate", bad, "--seeds", "0-3", "--class", "1", "--format", "npz", "--out", tmp_path / "o.npz"
    )
    assert rc == 0, out.err
    np.testing.assert_array_equal(np.load(tmp_path / "o.npz")["images"], g.generate(range(4), labels=[1] * 4))


def test_export_upgrades_a_format_1_model_whose_output_has_another_name(capsys, tmp_path):
    model = onnx.load(str(ROOT / "tests" / "fixtures" / "mnist-dcgan-format1.onnx"))
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = ["out" if o == old else o for o in node.output]
    model.graph.output[0].name = "out"
    onnx.save(model, str(tmp_path / "fmt1.onnx"))
    rc, out = call(capsys, "export", tmp_path / "fmt1.onnx", "--out", tmp_path / "up.onnx")
    assert rc == 0, out.err
    assert Generator(tmp_path / "up.onnx").info.pixels_name == "pixels"
    expect_error(capsys, ["export", tmp_path / "fmt1.onnx", "--out", tmp_path / "up2.onnx", "--atol", "1e-3"], "--atol")


# ------------------------------------------------------------------------------ one line, the right words
def test_absurd_shards_seeds_and_counts_are_one_line(capsys, models, tmp_path):
    big = "99999999999999999999/99999999999999999999999"
    expect_error(capsys, ["generate", models["plain"], "--shard", big, "--out", tmp_path / "o"], "bad shard")
    expect_error(capsys, ["generate", models["cond"], "--per-class", 2**32 + 1, "--out", tmp_path / "o"], "--per-class")
    expect_error(capsys, ["generate", models["plain"], "--truncation", "1e38", "--out", tmp_path / "o"], "truncation")
    assert not (tmp_path / "o").exists()


def test_a_shard_of_a_huge_job_starts_at_its_own_first_image(models, tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "generate",
            models["plain"],
            "--seeds",
            "0-4294967295",
            "--shard",
            "4294967295/4294967296",
            "--out",
            tmp_path / "o",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert os.listdir(tmp_path / "o") and (tmp_path / "o" / "4294967295.png").is_file()


def test_a_file_name_as_the_folder_of_a_png_job_is_refused(capsys, models, tmp_path):
    for args in (["--format", "png", "--out", tmp_path / "x.npz"], ["--out", tmp_path / "x.png"]):
        expect_error(capsys, ["generate", models["plain"], "--seeds", "0-3", *args], "names a file")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_names_the_file_it_could_not_write(capsys, models, tmp_path, full_disk):
    full_disk(4)  # the four images fit; metadata.jsonl does not
    err = expect_error(
        capsys,
        ["generate", models["plain"], "--seeds", "0-3", "--out", tmp_path / "o"],
        "metadata.jsonl",
        "No space left",
    )
    assert ".tmp" not in err


def test_a_full_disk_names_the_grid(capsys, models, tmp_path, full_disk):
    full_disk(4 + 1)  # the images and metadata.jsonl fit, the grid does not
    expect_error(
        capsys,
        ["generate", models["plain"], "--seeds", "0-3", "--out", tmp_path / "p", "--grid", tmp_path / "g.png"],
        "g.png",
        "No space left",
    )


def test_a_checkpoint_that_cannot_be_written_says_so_plainly(tmp_path, monkeypatch):
    import torch
    from gankit.checkpoint import save_checkpoint

    def torch_full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 3200 vs 3104")

    monkeypatch.setattr(torch, "save", torch_full_disk)
    with pytest.raises(GankitError) as e:
        save_checkpoint({"x": 1}, tmp_path / "checkpoint.pt")
    assert "inline_container" not in str(e.value) and "no checkpoint was written" in str(e.value)
    (tmp_path / "checkpoint.pt").write_bytes(b"an earlier one")
    with pytest.raises(GankitError, match="the previous checkpoint is kept"):
        save_checkpoint({"x": 1}, tmp_path / "checkpoint.pt")


def test_an_onnxruntime_failure_is_one_line_on_the_real_stderr(capfd, tmp_path):
    ten = json.dumps([f"c{i}" for i in range(10)])  # more classes than the graph's embedding holds
    model = tiny_generator(tmp_path / "m.onnx", classes=["a", "b"], metadata={"classes": ten})
    r = run_cli("generate", model, "--seeds", "0", "--out", tmp_path / "o")  # fd 2 of a real process
    assert_one_line_error(r.stderr, r.returncode, "onnxruntime failed")
    import cli

    assert cli.main(["generate", str(model), "--seeds", "0", "--out", str(tmp_path / "o")]) == 1
    assert_one_line_error(capfd.readouterr().err, 1, "onnxruntime failed")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--sync-bn"], "one process"),
        (["--model", "vanilla", "--d-norm", "spectral"], "--d-norm"),
        (["--d-condition", "concat"], "--conditional"),
        (["--r1", "1e300"], "r1 must lie"),
        (["--mode-learning", "self-conditioned"], "--modes N"),
        (["--modes", "10", "--conditional"], "no --conditional"),
        (["--info-weight", "0.5"], "--info-weight weighs InfoGAN"),
        (["--modes", "4", "--mode-learning", "self-conditioned", "--info-weight", "2"], "--info-weight weighs"),
        (["--modes", "4", "--info-weight", "0"], "info-weight must lie"),
    ],
)
def test_options_that_would_be_ignored_or_absurd_are_refused(capsys, tmp_path, args, fragment):
    expect_error(capsys, ["train", *args, "--steps", 1, "--out", tmp_path / "r"], fragment)
    assert not (tmp_path / "r").exists()


def test_export_refuses_a_nan_atol(capsys, tmp_path):
    expect_error(capsys, ["export", tmp_path, "--atol", "nan", "--out", tmp_path / "g.onnx"], "--atol")


def test_the_failure_advice_never_suggests_the_default(capsys):
    import io

    from gankit.monitor import D_FAKE_PATIENCE, FailureWatch

    for g_loss, advice in (("non-saturating", "--r1"), ("minimax", "--g-loss non-saturating")):
        log = io.StringIO()
        watch = FailureWatch(log)
        watch.g_loss = g_loss
        for _ in range(D_FAKE_PATIENCE):
            watch.step(0.0)
        assert advice in log.getvalue() and ("non-saturating" in log.getvalue()) == (g_loss == "minimax")


def test_a_train_config_with_unknown_keys_is_refused():
    from gankit.config import TrainConfig

    with pytest.raises(GankitError, match="unknown keys"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "lr_typo": 1.0})


def test_the_plot_of_a_short_run_shows_its_points(tmp_path):
    from gankit.monitor import plot_run
    from PIL import Image

    (tmp_path / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "loss_d": 1.2, "loss_g": 0.7, "d_real": 0.6, "d_fake": 0.4}) + "\n"
    )
    plot_run(tmp_path)
    rgb = np.asarray(Image.open(tmp_path / "plot.png").convert("RGB")).astype(int)
    blue = (np.abs(rgb - [31, 119, 180]).sum(axis=2) < 40).sum()  # matplotlib's first colour: the loss D point
    assert blue > 10


def test_two_shards_started_together_share_one_imagefolder(models, tmp_path):
    for round_ in range(3):
        out = tmp_path / f"o{round_}"
        args = ["generate", models["cond"], "--per-class", 8, "--threads", 1, "--out", out]
        procs = [
            subprocess.Popen(
                [sys.executable, str(ROOT / "cli.py"), *map(str, args), "--shard", f"{i}/2"],
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        errs = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errs
        assert len(list(out.rglob("*.png"))) == 16


def test_create_exclusive_without_hard_links_still_has_one_winner(tmp_path, monkeypatch):
    import gankit_runtime.files as files

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(files.os, "link", no_links)
    assert files.create_exclusive(tmp_path / "claim.json", b'{"a": 1}') is True
    assert files.create_exclusive(tmp_path / "claim.json", b'{"b": 2}') is False
    assert (tmp_path / "claim.json").read_bytes() == b'{"a": 1}' and os.listdir(tmp_path) == ["claim.json"]


def test_generate_shows_progress_in_a_log(capsys, models, tmp_path, monkeypatch):
    import gankit_runtime.progress

    monkeypatch.setattr(gankit_runtime.progress, "PLAIN_EVERY", 0.0)
    rc, out = call(capsys, "generate", models["plain"], "--seeds", "0-127", "--batch-size", 32, "--out", tmp_path / "o")
    assert rc == 0 and "/128 images" in out.err, out.err


def test_options_that_would_be_ignored_or_overflow_are_one_line(capsys, tmp_path, monkeypatch):
    out = tmp_path / "r"
    expect_error(capsys, ["train", "--loss", "hinge", "--label-smoothing", 0.1, "--out", out], "--label-smoothing")
    for command in (["train"], ["train-classifier"], ["check-augmentation", "--real", out, "--generated", out]):
        expect_error(capsys, [*command, "--seed", 2**64, "--out", out], "--seed")
    monkeypatch.setenv("RANK", "0")  # a rank of torchrun already
    expect_error(capsys, ["train", "--nproc", 2, "--out", out], "--nproc starts its own ranks")
    assert not out.exists()
