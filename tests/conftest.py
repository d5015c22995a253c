import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # cli.py lives at the top of the repository

if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n N`: N test processes share the cores, so each computes on one
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # thread (torch reads it when imported; its subprocesses inherit it)


def make_image_folder(folder: Path, n_per_class: int = 12, classes=("cats", "dogs"), size=(40, 30)) -> Path:
    """Small RGB images in class sub-folders, each a smooth pattern plus noise, of mixed formats."""
    from PIL import Image  # the training side's reader; the runtime's tests run without Pillow

    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
            base = 127 + 100 * np.sin(xx / (3 + c) + i) * np.cos(yy / 4)
            img = np.clip(base[..., None] + rng.normal(0, 10, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / name / f"{i:03d}.{'png' if i % 2 else 'jpg'}")
    return folder


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "images")


def run_cli(*args, env=None, cwd=ROOT):
    """Run `python cli.py ...` in a fresh process; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=600,
    )


def torch_blocker(tmp_path: Path) -> dict:
    """Environment in which `import torch` (and `import onnx`) fails, as where they are not installed."""
    blocker = tmp_path / "blocker"
    for name in ("torch", "onnx"):
        (blocker / name).mkdir(parents=True, exist_ok=True)
        (blocker / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked in this test')\n")
    return {"PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def full_disk(monkeypatch):
    """full_disk(n): the file system accepts n more atomic renames, then answers ENOSPC."""
    import errno

    import gankit_runtime.files as files

    def install(n: int):
        real, calls = os.replace, []

        def replace(src, dst):
            calls.append(dst)
            if len(calls) > n:
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            real(src, dst)

        monkeypatch.setattr(files.os, "replace", replace)

    return install


def assert_one_line_error(stderr: str, rc: int, *fragments: str):
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert rc != 0
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def call(capsys, *args):
    """`python cli.py ARGS` in this process: (exit code, captured stdout and stderr)."""
    import cli

    rc = cli.main([str(a) for a in args])
    return rc, capsys.readouterr()


def expect_error(capsys, args, *fragments) -> str:
    """The command fails with one `error:` line holding every fragment; returns stderr."""
    rc, out = call(capsys, *args)
    assert_one_line_error(out.err, rc, *fragments)
    return out.err


def child_exit_code(pid: int, timeout: float = 60.0) -> int | str:
    """The exit code of a forked child, or "hung" (it is then killed): a child that waits forever fails the
    test instead of hanging the run."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"
