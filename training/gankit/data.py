"""Training data as one uint8 tensor [N, C, H, W] in memory; batches are scaled to [-1, 1] on the fly."""

from __future__ import annotations

import hashlib
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from gankit_runtime import GankitError
from gankit_runtime.contract import class_name_problem
from gankit_runtime.evaluation.datasets import CLASSES, load_mnist_like
from PIL import Image, UnidentifiedImageError

BUILTIN = ("mnist", "fashion-mnist")
# The files an image folder's reader reads; others (metadata.jsonl, a README, a manifest) are not data
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}


@dataclass
class Dataset:
    name: str
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor | None  # int64 [N], or None when the data has no classes
    classes: list[str]
    files: list[str] | None = None  # an image folder's: each image's path, relative to the folder
    digests: list[str] | None = None  # an image folder's: the sha256 of each image's file

    def __len__(self) -> int:
        return self.images.shape[0]


def to_model_range(batch: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [-1, 1], the generator's tanh range (torch's twin of gankit_runtime.images.from_uint8,
    tested equal)."""
    return batch.float().div_(127.5).sub_(1.0)


def check_fits_in_memory(n: int, channels: int, size: int, what: str) -> None:
    """Refuse, before allocating, a data set whose uint8 tensor would not fit in this machine's memory."""
    need = n * channels * size * size
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on every platform
        return
    if need > total // 2:
        raise GankitError(
            f"{what}: {n} images of {channels}x{size}x{size} need {need / 1e9:.1f} GB in memory, more "
            f"than half of this machine's {total / 1e9:.1f} GB; use a smaller --image-size"
        )


def load_dataset(data: str, size: int, channels: int, data_dir: Path) -> Dataset:
    if data in BUILTIN:
        arrays = load_mnist_like(data, data_dir)
        check_fits_in_memory(len(arrays["x_train"]), channels, size, data)
        images = torch.from_numpy(np.array(arrays["x_train"])).unsqueeze(1)  # training split only; a writable copy
        images = _fit(images, size, channels)
        return Dataset(data, images, torch.from_numpy(arrays["y_train"].astype(np.int64)), CLASSES[data])
    path = Path(data)
    if not path.exists():
        raise GankitError(f"unknown data {data!r}: not one of {', '.join(BUILTIN)} and no such folder")
    if not path.is_dir():
        raise GankitError(f"data {data!r} is a file; give a folder of images or one of {', '.join(BUILTIN)}")
    return load_image_folder(path, size, channels)


def _fit(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Resize a uint8 [N, 1, 28, 28] set to `size` and repeat grey into RGB when asked."""
    if images.shape[-1] != size:
        resized = []
        for part in images.split(4096):  # bounded memory for the float copy
            x = F.interpolate(part.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            resized.append(x.round_().clamp_(0, 255).to(torch.uint8))
        images = torch.cat(resized)
    if channels == 3 and images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    return images.contiguous()


def _load_image(path: Path, size: int, mode: str) -> tuple[np.ndarray, str] | None:
    """(the image centre-cropped to a square, resized to size x size, in L or RGB; its file's sha256), or None if
    unreadable (a decompression bomb too: Pillow refuses images of over 2 x MAX_IMAGE_PIXELS)."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as opened:
            im = opened.convert(mode)
            w, h = im.size
            s = min(w, h)
            box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
            im = im.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=2.0)
            return np.asarray(im, dtype=np.uint8).reshape(size, size, -1), hashlib.sha256(data).hexdigest()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def load_image_folder(folder: Path, size: int, channels: int) -> Dataset:
    """Every image file under `folder` (recursive, by suffix; hidden files and folders skipped), centre-cropped,
    resized and converted as training needs them. Classes: the first-level sub-folders, when every image lies in one
    of them; a class folder without a readable image is refused. The one reader of image folders (train --data,
    check-augmentation, bench/)."""
    try:  # hidden files and folders (.ipynb_checkpoints, .DS_Store, macOS ._x.png) are not data
        files = sorted(
            p
            for p in folder.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as e:
        raise GankitError(f"cannot read image folder {folder}: {e.strerror or e}") from None
    if not files:
        raise GankitError(f"image folder {folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    check_fits_in_memory(len(files), channels, size, str(folder))
    mode = "L" if channels == 1 else "RGB"
    with ThreadPoolExecutor(max_workers=4) as pool:  # Pillow's decoders release the GIL
        loaded = list(pool.map(lambda p: _load_image(p, size, mode), files))
    kept = [(f, a) for f, a in zip(files, loaded) if a is not None]
    if not kept:
        raise GankitError(f"image folder {folder} holds {len(files)} files but none is an image Pillow can read")
    if len(kept) < len(files):
        print(
            f"note: skipped {len(files) - len(kept)} of {len(files)} files in {folder} that are not readable images",
            file=sys.stderr,
        )
    images = torch.from_numpy(np.stack([a[0] for _, a in kept])).permute(0, 3, 1, 2).contiguous()
    rel = [f.relative_to(folder).parts for f, _ in kept]
    labels, classes = None, []
    if all(len(parts) > 1 for parts in rel):
        classes = subfolders
        for c in classes:  # checked now, not at export after hours of training: class names become folder names
            problem = class_name_problem(c)
            if problem:
                raise GankitError(f"class folder {folder / c} cannot name a class: its name {problem}; rename it")
        empty = sorted(set(classes) - {parts[0] for parts in rel})
        if empty:
            raise GankitError(
                f"class folder {folder / empty[0]} holds no readable image: add images to it or remove it "
                "(a class is never dropped in silence)"
            )
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index[parts[0]] for parts in rel], dtype=torch.int64)
    names = ["/".join(parts) for parts in rel]
    return Dataset(folder.name, images, labels, classes, names, [a[1] for _, a in kept])
