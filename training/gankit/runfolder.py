"""The run folder a training owns: held by one training at a time, never written through a link; its
metrics.jsonl and plot."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from gankit_runtime import GankitError

LOCK_FILE = ".gankit-train.lock"
TRAINING_IMAGES = "training-images.sha256"  # one sha256 a line: the image files a run on a folder trained on
_held_locks: dict = {}  # run folder -> its open lock file, held until the process ends


def claim_run_folder(out: Path) -> None:
    """Hold the run folder for this process alone (an advisory lock the kernel drops when the process ends, however
    it ends): two trainings into one folder would interleave metrics.jsonl and overwrite each other's checkpoint."""
    import fcntl

    key = str(out.resolve())
    if key in _held_locks:
        return
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise GankitError(f"another training is running in {out}: wait for it, or choose another --out") from None
    _held_locks[key] = fd


def release_run_folder(out: Path) -> None:
    fd = _held_locks.pop(str(Path(out).resolve()), None)
    if fd is not None:
        os.close(fd)


def refuse_links(out: Path, names) -> None:
    """Files and folders of a run are never written through a link: a link there could point anywhere."""
    for name in names:
        if (out / name).is_symlink():
            raise GankitError(
                f"{out / name} is a link: gankit never writes through links inside a run folder; remove it"
            )


def append_metrics(run: Path, record: dict) -> None:
    # One write of one whole line: a crash cannot leave half a record. O_NOFOLLOW: never through a link.
    fd = os.open(run / "metrics.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "a") as f:
        f.write(json.dumps(record) + "\n")


def plot(run: Path) -> None:
    if importlib.util.find_spec("matplotlib") is None:  # optional: the numbers are in metrics.jsonl
        return
    from .monitor import plot_run

    try:
        plot_run(run)
    except Exception as e:  # noqa: BLE001 - a plot is a convenience: training goes on without it
        print(
            f"warning: could not draw {run / 'plot.png'}: {(str(e).splitlines() or [repr(e)])[0][:200]}",
            file=sys.stderr,
        )


def prepare_run_folder(out: Path, digests: list[str] | None = None) -> None:
    """Make and hold the run folder (rank 0), its samples/ too; record the images a run on a folder trains on."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        claim_run_folder(out)
        refuse_links(out, ("samples", "metrics.jsonl", "best.pt", "plot.png", TRAINING_IMAGES))
        (out / "samples").mkdir(exist_ok=True)
        if digests is not None:
            record_training_images(out, digests)
    except OSError as e:
        raise GankitError(f"cannot write to {out}: {e.strerror or e}") from None


def record_training_images(out: Path, digests: list[str]) -> None:
    """The sha256 of every image file the run trained on (a resumed run's too), written whole: export carries them
    into the model's metadata, and check-augmentation refuses test images among them."""
    from gankit_runtime.files import atomic_write_bytes

    path = out / TRAINING_IMAGES
    known = set(path.read_text().split()) if path.is_file() else set()
    atomic_write_bytes(path, "".join(f"{d}\n" for d in sorted(known | set(digests))).encode())
