"""The runtime's own PNG encoder: what Pillow (and any PNG reader) decodes is the image, bit for bit."""

import hashlib
import io
import zlib

import numpy as np
import pytest
from gankit_runtime.images import FILTER_FROM, encode_pngs
from PIL import Image


def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    return encode_pngs(image[None], level)[0]


def decode(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    pixels = np.asarray(image)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def smooth_rgb(h: int, w: int, seed: int) -> np.ndarray:
    """Photo-like pixels: every filter type (Sub, Up, Paeth) wins on some rows of these."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((h // 8 + 1, w // 8 + 1, 3)) * 150
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.kron(coarse, np.ones((8, 8, 1)))[:h, :w] + ((xx + yy) * 0.8)[..., None] + rng.normal(0, 4, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "shape", [(1, 1, 1), (1, 7, 1), (9, 1, 3), (28, 28, 1), (5, 3, 3), (64, 64, 3), (64, 64, 1), (33, 70, 3)]
)
def test_decodes_to_the_same_pixels(shape):
    rng = np.random.default_rng(sum(shape))
    for image in (
        rng.integers(0, 256, shape, dtype=np.uint8),
        np.zeros(shape, np.uint8),
        np.full(shape, 255, np.uint8),
    ):
        for level in (0, 1, 9):
            np.testing.assert_array_equal(decode(encode_png(image, level)), image)


def test_every_filter_type_round_trips(monkeypatch):
    import gankit_runtime.images as images

    image = smooth_rgb(64, 64, 0)
    assert image.size >= FILTER_FROM
    data = encode_png(image)
    np.testing.assert_array_equal(decode(data), image)
    # The filter bytes in front of the rows: this image uses several types, each decoded right above.
    rows = np.frombuffer(idat_rows(data), np.uint8)
    kinds = set(rows.reshape(64, 1 + 64 * 3)[:, 0].tolist())
    assert kinds <= {0, 1, 2, 4} and len(kinds) >= 3, kinds
    # and the filtering pays: smaller than the unfiltered encoding, as small as Pillow's at the same level
    monkeypatch.setattr(images, "FILTER_FROM", 10**9)
    plain = encode_png(image)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    assert len(data) < 0.8 * len(plain) and len(data) <= 1.05 * len(buf.getvalue())


def idat_rows(data: bytes) -> bytes:
    return zlib.decompress(data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8])


def test_rows_are_stable():
    """Recorded once: the filtered rows that get deflated (the deflated bytes themselves may differ between
    zlib builds, as zlib-ng's; what they decompress to may not)."""
    grey = (np.arange(28 * 28) % 251).astype(np.uint8).reshape(28, 28, 1)
    assert hashlib.sha256(idat_rows(encode_png(grey))).hexdigest()[:16] == "578a1090706ca3cc"
    assert hashlib.sha256(idat_rows(encode_png(smooth_rgb(64, 64, 1)))).hexdigest()[:16] == "7e08dccac13fb82a"


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 1), np.uint8),
        np.zeros((4, 4), np.uint8),
    ],
)
def test_refuses_what_it_cannot_write(image):
    with pytest.raises(ValueError):
        encode_png(image)
