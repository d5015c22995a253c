"""Generator output (float NCHW in [-1, 1]) -> uint8 NHWC pixels, grids and PNG files."""

import math
import numpy as np
from PIL import Image

import io

from .files import atomic_write_bytes


def to_uint8(images: np.ndarray, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """float [N, C, H, W] in [low, high] -> uint8 [N, H, W, C] (values outside are clipped)."""
    scale = 255.0 / (high - low)
    # x*scale + 0.5 then truncation is round-half-up, the same rule StyleGAN uses.
    pixels = (images.astype(np.float32, copy=False) - low) * scale + 0.5
    np.clip(pixels, 0, 255, out=pixels)
    return pixels.astype(np.uint8).transpose(0, 2, 3, 1)


def from_uint8(pixels: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 [N, C, H, W] in [-1, 1]: the inverse of to_uint8 (up to its rounding), the
    scaling real images get for training (gankit.data.to_model_range) and for the evaluation classifier."""
    return pixels.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def make_grid(images: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 [N, H, W, C] -> one uint8 [rows*(H+pad)+pad, cols*(W+pad)+pad, C] image."""
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * (h + pad) + pad, columns * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y:y + h, x:x + w] = images[i]
    return grid


def to_pil(image: np.ndarray) -> Image.Image:
    """uint8 [H, W, C] with C = 1 or 3 -> a grey or RGB Pillow image."""
    return Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)


def save_png(image: np.ndarray, path, compress_level: int = 1) -> None:
    """Write one uint8 [H, W, C] image atomically (temporary name, then rename).

    Encoded in memory first, so the file system sees one create, one write and one rename.
    Compression level 1: higher levels barely shrink these small images and cost time.
    """
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG", compress_level=compress_level)
    atomic_write_bytes(path, buf.getvalue())
