"""Generator output (float NCHW in [-1, 1]) -> uint8 NHWC pixels, grids and PNG files."""

import math
import struct
import zlib

import numpy as np

from .files import atomic_write_bytes


def to_uint8(images: np.ndarray, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """float [N, C, H, W] in [low, high] -> uint8 [N, H, W, C] (values outside are clipped)."""
    scale = 255.0 / (high - low)
    # x*scale + 0.5 then truncation is round-half-up, the same rule StyleGAN uses.
    with np.errstate(over="ignore"):  # a huge value overflows to inf, which the clip below makes 255 all the same
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
        grid[y : y + h, x : x + w] = images[i]
    return grid


# PNG, written here rather than through Pillow (faster for small images, and the runtime needs no Pillow): one
# image is a header, its rows deflated, and a trailer. Writing a data set is a loop over this.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILTER_FROM = (
    4096  # bytes of pixels in an image; below it, unfiltered rows deflate smaller (MNIST: 324 against 340 bytes)
)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


_END = _chunk(b"IEND", b"")


def _filtered_rows(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, C] -> uint8 [N, H, 1 + W*C]: each row behind its filter-type byte, the filter (None, Sub,
    Up or Paeth) whose output has the smallest sum of absolute values as signed bytes, libpng's heuristic (and
    Pillow's file sizes)."""
    n, h, w, c = images.shape
    x = images.reshape(n, h, w * c).astype(np.int16)
    up, left, up_left = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    up[:, 1:] = x[:, :-1]
    left[:, :, c:] = x[:, :, :-c]
    up_left[:, 1:, c:] = x[:, :-1, :-c]
    p = left + up - up_left
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    candidates = np.stack([x, x - left, x - up, x - paeth]).astype(np.uint8)  # modulo 256, as PNG defines them
    best = np.abs(candidates.view(np.int8).astype(np.int16)).sum(axis=3).argmin(axis=0)  # [N, H]
    rows = np.empty((n, h, 1 + w * c), np.uint8)
    rows[:, :, 0] = np.array([0, 1, 2, 4], np.uint8)[best]  # PNG's numbers for None, Sub, Up, Paeth
    rows[:, :, 1:] = np.take_along_axis(candidates, best[None, :, :, None], axis=0)[0]
    return rows


def encode_pngs(images: np.ndarray, compress_level: int = 1) -> list[bytes]:
    """uint8 [N, H, W, C], C = 1 (grey) or 3 (RGB) -> the bytes of N 8-bit PNGs. The rows of the whole batch
    are prepared at once; per image there remain one deflate and a few byte joins."""
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[3] not in (1, 3) or not all(images.shape[1:3]):
        raise ValueError(f"PNG images must be uint8 [N, H, W, 1 or 3], got {images.dtype} {list(images.shape)}")
    n, h, w, c = images.shape
    if h * w * c >= FILTER_FROM:
        rows = _filtered_rows(images)
    else:
        rows = np.zeros((n, h, 1 + w * c), np.uint8)  # filter type 0 (None) in front of each row
        rows[:, :, 1:] = images.reshape(n, h, w * c)
    head = PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0))
    return [b"".join((head, _chunk(b"IDAT", zlib.compress(r, compress_level)), _END)) for r in rows]


GANKIT_TEXT = _chunk(b"tEXt", b"Software\x00gankit")  # marks a PNG that gankit wrote (a grid may be replaced)
_HEAD = len(PNG_SIGNATURE) + 25  # the signature and the IHDR chunk


def save_png(image: np.ndarray, path, compress_level: int = 1, marked: bool = False) -> None:
    """Write one uint8 [H, W, C] image atomically (temporary name, then rename): one create, one write and
    one rename. Compression level 1: higher levels barely shrink these small images and cost time.
    marked: with gankit's tEXt chunk after the header, so that is_marked_png knows the file for ours."""
    data = encode_pngs(image[None], compress_level)[0]
    atomic_write_bytes(path, data[:_HEAD] + GANKIT_TEXT + data[_HEAD:] if marked else data)


def is_marked_png(path) -> bool:
    """Whether `path` is a PNG that save_png(marked=True) wrote."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD + len(GANKIT_TEXT))
    except OSError:
        return False
    return head.startswith(PNG_SIGNATURE) and head[_HEAD:] == GANKIT_TEXT
