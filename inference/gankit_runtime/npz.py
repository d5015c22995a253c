"""A job's images as one .npz, streamed batch by batch and written whole (gankit generate --out X.npz)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ._version import __version__
from .errors import GankitError, Interrupted
from .files import atomic_path, prepare_output_file, refuse_overlap
from .generator import Generator, check_batch_size
from .jobs import Job
from .writers import Progress, WriteResult, _naming, _prepare_grid, write_grid


def _is_our_npz(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return {"images.npy", "seeds.npy", "metadata.npy"} <= set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def write_npz(
    generator: Generator,
    job: Job,
    path: Path,
    batch_size: int = 64,
    grid: Path | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> WriteResult:
    """One .npz, streamed batch by batch: `images` uint8 [N, H, W, C], `seeds` int64 [N], and for a
    conditional generator `labels` int64 [N] and `classes` (names); `metadata` is a JSON string
    (model sha256, runtime version, provider, truncation). Loads with np.load, no pickle. Written whole or
    not at all: Ctrl-C or a full disk leaves no file (and a killed run's temporary goes at the next run)."""
    refuse_overlap(path, "output", {"the model": generator.info.path})
    if Path(path).suffix != ".npz" and not Path(path).is_dir():
        raise GankitError(f"an npz output needs a file name ending in .npz, not {path}")
    check_batch_size(batch_size)
    grid = _prepare_grid(grid, generator, force, npz=path)
    path = prepare_output_file(path, ours=_is_our_npz, force=force)
    i = generator.info
    n = len(job)
    header = {"descr": "|u1", "fortran_order": False, "shape": (n, i.height, i.width, i.channels)}
    meta = {
        "model_sha256": generator.sha256,
        "runtime_version": __version__,
        "provider": generator.providers[0],
        "truncation": job.truncation,
    }
    try:
        with atomic_path(path) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                with zf.open("images.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array_header_1_0(f, header)
                    done = 0
                    for _, images in generator.iter_images(job.seeds, batch_size, job.labels, job.truncation):
                        f.write(images.tobytes())
                        done += len(images)
                        if progress is not None:
                            progress(done, n)
                arrays = {
                    "seeds": np.fromiter(job.seeds, dtype=np.int64, count=n),
                    "metadata": np.asarray(json.dumps(meta)),
                }
                if job.labels is not None:
                    arrays.update(
                        labels=np.fromiter(job.labels, dtype=np.int64, count=n), classes=np.asarray(generator.classes)
                    )
                for name, array in arrays.items():
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                        np.lib.format.write_array(f, array, allow_pickle=False)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted: nothing written ({path} is written whole or not at all); run the command again"
        ) from None
    except OSError as e:
        raise GankitError(f"cannot write {path}: {e.strerror or e}; nothing written") from None
    if grid is not None:
        with _naming(grid, f"{path} is whole"):
            write_grid(generator, job, grid, batch_size)
    return WriteResult(n, 0)
