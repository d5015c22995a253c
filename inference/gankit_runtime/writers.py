"""Stream a generator's images to disk: one PNG per seed, or one .npz, plus an optional grid.

Inference runs in the calling thread while a small pool encodes and writes the previous batch's
files: creating files costs about as much as inference here, so the two overlap. At most two
batches are in flight, whatever the number of seeds.
"""

from __future__ import annotations

import zipfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from .files import atomic_path, prepare_output_dir, prepare_output_file
from .generator import Generator
from .images import make_grid, save_png

GRID_MAX = 64


def png_name(seed: int) -> str:
    return f"{seed:06d}.png"


def write_pngs(generator: Generator, seeds: Sequence[int], out_dir: Path, batch_size: int = 64,
               workers: int = 2, grid: Path | None = None) -> int:
    """Write out_dir/<seed>.png for every seed; returns how many were written."""
    out_dir = prepare_output_dir(out_dir)
    grid_images: list[np.ndarray] = []
    in_flight: deque = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for chunk, images in generator.iter_images(seeds, batch_size):
            in_flight.append([pool.submit(save_png, img, out_dir / png_name(s)) for s, img in zip(chunk, images)])
            if grid is not None and len(grid_images) < GRID_MAX:
                grid_images.extend(images[:GRID_MAX - len(grid_images)])
            while len(in_flight) > 2:
                for f in in_flight.popleft():
                    f.result()
        for batch in in_flight:
            for f in batch:
                f.result()
    if grid is not None and grid_images:
        write_grid(np.stack(grid_images), grid)
    return len(seeds)


def write_npz(generator: Generator, seeds: Sequence[int], path: Path, batch_size: int = 64,
              grid: Path | None = None) -> int:
    """One .npz: `images` uint8 [N, H, W, C] and `seeds` int64 [N], streamed batch by batch."""
    path = prepare_output_file(path)
    i = generator.info
    header = {"descr": "|u1", "fortran_order": False, "shape": (len(seeds), i.height, i.width, i.channels)}
    grid_images = None
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("images.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, header)
                for chunk, images in generator.iter_images(seeds, batch_size):
                    f.write(images.tobytes())
                    if grid is not None and grid_images is None:
                        grid_images = images[:GRID_MAX]
            with zf.open("seeds.npy", "w") as f:
                np.lib.format.write_array(f, np.asarray(seeds, dtype=np.int64))
    if grid is not None and grid_images is not None:
        write_grid(grid_images, grid)
    return len(seeds)


def write_grid(images: np.ndarray, path: Path) -> None:
    path = prepare_output_file(path)
    save_png(make_grid(images), path, compress_level=6)
