"""The model contract: what an exported generator must be, read and checked once, and its onnxruntime session.

A generator takes z float32 [N, z_dim] (and, class-conditional, labels int64 [N]) and gives images float32
[N, 1|3, H, W]; its metadata_props (the keys below) add what the graph cannot say. Every field of the
file is untrusted: a model is checked here before any work, and each batch's shape again when it is made.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import GankitError

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")
MAX_MODEL_BYTES = 2**31  # protobuf's own limit: a larger "model" is not one

# The keys an exported generator carries in its ONNX metadata_props (all values are strings). The graph states the
# shapes, so that tools which cannot read metadata (onnxruntime-node and -web) can still use the model.
FORMAT = "gankit.format"  # "2": images and pixels; "1": images alone (still read)
MODEL_KIND = "model_kind"  # vanilla | dcgan
Z_DIM = "z_dim"
CHANNELS = "channels"
HEIGHT = "height"
WIDTH = "width"
OUTPUT_RANGE = "output_range"  # "-1,1": tanh output, NCHW float32
LATENT = "latent"  # the seed formula, in words
DATASET = "dataset"
TRAINING_STEPS = "training_steps"
PACKAGE_VERSION = "package_version"
CHECKPOINT_SHA256 = "checkpoint_sha256"
CONFIG = "config"  # the model config as JSON
CLASSES = "classes"  # conditional generators: JSON list of class names; label i is classes[i]
# Trained on an image folder: the first 16 hex digits of the sha256 of each training image's file, comma separated,
# so that check-augmentation can refuse a test image the generator saw
TRAINING_IMAGES = "training_images_sha256_16"
TRAINING_IMAGES_MAX = 200_000  # more are not recorded in the file (3.4 MB of metadata)

FORMAT_VERSION = "2"
LATENT_FORMULA = "numpy.random.RandomState(seed).randn(z_dim).astype(numpy.float32)"

MAX_CLASS_NAME = 100  # bytes of UTF-8: a folder name (with its index in front) stays far below 255 bytes
WINDOWS_FORBIDDEN = set('<>:"|?*')
# Device names Windows reserves whatever the extension ("aux.txt" too): such a class folder gets its index in front
WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"{d}{i}" for d in ("COM", "LPT") for i in range(1, 10))}


def class_name_problem(name: str) -> str | None:
    """Why `name` cannot be a class name, or None. Class names come from a model file (untrusted) and become
    folder names (imagefolder layout) and metadata values, so they must be safe as one path component on Linux,
    macOS and Windows."""
    if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_CLASS_NAME:
        return f"must have 1 to {MAX_CLASS_NAME} bytes (UTF-8)"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "holds control characters"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if name.startswith(".") or name.endswith(".") or name != name.strip():
        return "starts or ends with '.' or has spaces around it"
    if WINDOWS_FORBIDDEN & set(name):
        return (
            f"holds a character that Windows forbids in file names ({''.join(sorted(WINDOWS_FORBIDDEN & set(name)))})"
        )
    return None


def windows_reserved(name: str) -> bool:
    """Whether Windows reserves `name` as a device (CON, aux.txt, COM1, ...)."""
    return name.split(".")[0].strip().upper() in WINDOWS_RESERVED


@dataclass(frozen=True)
class ModelInfo:
    """What a generator takes and gives, read from its graph and metadata."""

    path: Path
    input_name: str
    output_name: str
    z_dim: int
    channels: int
    height: int
    width: int
    output_range: tuple[float, float] = (-1.0, 1.0)
    metadata: dict = field(default_factory=dict)
    # Class-conditional generators have a second input, labels int64 [N]; `classes` names label 0, 1, ...
    labels_name: str | None = None
    classes: tuple[str, ...] = ()
    # Format 2: a second output, pixels uint8 [N, H, W, C], the graph's own to_uint8 of images
    pixels_name: str | None = None

    @property
    def conditional(self) -> bool:
        return self.labels_name is not None

    def check_output(self, raw: np.ndarray, n: int, first_seed: object = "?", pixels: np.ndarray | None = None) -> None:
        """A batch of n images (and pixels) as the graph declared them, all finite; else one clear error."""
        want = (n, self.channels, self.height, self.width)
        for name, got, shape in (("images", raw, want), ("pixels", pixels, (n, *want[2:], want[1]))):
            if got is not None and got.shape != shape:
                raise GankitError(
                    f"{self.path} declares {name} {list(shape)} but made {list(got.shape)}: "
                    "the file is not a valid generator"
                )
        if not np.isfinite(raw).all():
            raise GankitError(
                f"{self.path} gives NaN or infinite values (seeds from {first_seed}): the model is "
                "broken, perhaps exported from a diverged run"
            )


def parse_device(device: str) -> tuple[str, int | None]:
    """'cpu', 'cuda' or 'cuda:N' -> (kind, index); anything else is one clear error."""
    m = _DEVICE.match(str(device))
    if not m or (m.group(1) == "cpu" and m.group(2) is not None):
        raise GankitError(
            f"bad device {str(device)[:40]!r}: use cpu, cuda or cuda:N (other accelerators such "
            "as mps are not supported)"
        )
    return m.group(1), None if m.group(2) is None else int(m.group(2))


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise GankitError(
            "onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu for CUDA, never both; "
            "the extras [cpu] and [gpu] of gankit-runtime choose one)"
        ) from None
    # Fatal only. onnxruntime-gpu logs a warning at every session start ("No registered plugin EP device
    # found ..."); real failures reach the user as exceptions, and a CUDA fallback is checked explicitly.
    onnxruntime.set_default_logger_severity(4)
    return onnxruntime


def _providers(ort, device: str, tf32: bool = False) -> list:
    kind, index = parse_device(device)
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise GankitError(
            f"device {device} requested but this onnxruntime has no CUDA provider "
            "(onnxruntime-gpu has one: pip uninstall onnxruntime, then pip install onnxruntime-gpu)"
        )
    # TF32 convolutions are onnxruntime's CUDA default; they move pixels by several levels against the CPU
    # (docs/benchmarks.md). Off unless asked, so that CUDA stays close to the CPU (within 1e-5 when last measured).
    return [("CUDAExecutionProvider", {"device_id": index or 0, "use_tf32": 1 if tf32 else 0}), "CPUExecutionProvider"]


def read_model(path: Path) -> bytes:
    """The model file's bytes, read once: every session and the model's sha256 come from these same bytes, so
    a file replaced while a job starts cannot give two models' images under one name."""
    path = Path(path)
    if path.is_dir():
        raise GankitError(f"model {path} is a folder; give an .onnx file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MODEL_BYTES + 1)
    except FileNotFoundError:
        hint = ""
        if not path.suffix and len(path.parts) == 1:
            from .shipped import shipped_models

            hint = f", nor is it a shipped model ({', '.join(shipped_models())})"
        raise GankitError(f"model {path} not found{hint}") from None
    except OSError as e:
        raise GankitError(f"cannot read model {path}: {e.strerror or e}") from None
    if len(data) > MAX_MODEL_BYTES:
        raise GankitError(f"{path} is over 2 GB: not an ONNX model this runtime can load")
    return data


def open_session(
    model: Path | bytes,
    device: str = "cpu",
    threads: int | None = None,
    spin: bool = True,
    tf32: bool = False,
    name: Path | str | None = None,
):
    """An onnxruntime session on `device`, from a file or from its bytes (`name` then names it in messages), or
    one clear GankitError: missing or unloadable file, bad device, CUDA asked for but not available, or a
    session that silently fell back to the CPU. tf32: let CUDA convolutions use TF32 (see _providers)."""
    ort = import_onnxruntime()
    data = model if isinstance(model, bytes) else read_model(model)
    name = name or (model if not isinstance(model, bytes) else "model")
    if threads is not None and threads < 1:
        raise GankitError(f"threads must be at least 1, got {threads}")
    providers = _providers(ort, device, tf32)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: a failure reaches the user as our one line, not also as ORT's own
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    try:
        session = ort.InferenceSession(data, options, providers=providers)
    except Exception as e:  # onnxruntime raises its own pybind exception types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GankitError(f"{name} is not a loadable ONNX model: {reason[:300]}") from None
    if device != "cpu" and "CUDAExecutionProvider" not in session.get_providers():
        raise GankitError(
            f"device {device} requested but onnxruntime fell back to {session.get_providers()} "
            "(no visible GPU or CUDA/cuDNN libraries missing)"
        )
    return session


def _output_range(path: Path, text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise GankitError(f"{path}: bad output_range metadata {text[:40]!r} (expected 'low,high')") from None
    with np.errstate(all="ignore"):
        scale = np.float32(255.0) / np.float32(high - low)  # what to_uint8 computes with
    if not (math.isfinite(low) and math.isfinite(high) and low < high and np.isfinite(scale) and scale > 0):
        raise GankitError(
            f"{path}: bad output_range metadata {text[:40]!r} (need finite low < high, a range "
            "whose float32 scale is finite and non-zero)"
        )
    return low, high


def _classes(path: Path, props: dict) -> tuple[str, ...]:
    """A conditional model's class names: a JSON list of distinct, safe names (they become folder names), as many
    as its config says it has (when it says)."""
    try:
        classes = json.loads(props[CLASSES])
    except (KeyError, TypeError, ValueError):
        classes = None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise GankitError(
            f"{path} is a conditional generator without a valid {CLASSES!r} metadata entry (a JSON list of class names)"
        )
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise GankitError(f"{path}: metadata {CLASSES!r} must name at least 2 distinct classes")
    for c in classes:
        problem = class_name_problem(c)
        if problem:
            raise GankitError(f"{path}: class name {c[:40]!r} {problem}")
    try:
        declared = json.loads(props.get(CONFIG, "{}")).get("num_classes", len(classes))
    except (TypeError, ValueError, AttributeError):
        declared = len(classes)
    if declared != len(classes):
        raise GankitError(f"{path}: metadata names {len(classes)} classes but its config has {str(declared)[:20]}")
    return tuple(classes)


def read_info(session, path: Path) -> ModelInfo:
    """The contract of a loaded model, or one clear error saying what it has instead."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    got = (
        f"inputs {[(i.name, i.type, i.shape) for i in inputs]}, outputs {[(o.name, o.type, o.shape) for o in outputs]}"
    )
    labels_ok = len(inputs) == 1 or (
        len(inputs) == 2 and inputs[1].type == "tensor(int64)" and len(inputs[1].shape) == 1
    )
    pixels_ok = len(outputs) == 1 or (
        len(outputs) == 2
        and outputs[1].name == "pixels"
        and outputs[1].type == "tensor(uint8)"
        and list(outputs[1].shape[1:]) == [*outputs[0].shape[2:], outputs[0].shape[1]]
    )
    ok = (
        labels_ok
        and pixels_ok
        and inputs[0].type == "tensor(float)"
        and len(inputs[0].shape) == 2
        and isinstance(inputs[0].shape[1], int)
        and inputs[0].shape[1] > 0
        and outputs[0].type == "tensor(float)"
        and len(outputs[0].shape) == 4
        and all(isinstance(d, int) and d > 0 for d in outputs[0].shape[1:])
        and outputs[0].shape[1] in (1, 3)
    )
    if not ok:
        raise GankitError(
            f"{path} is not a generator (expected input z float32 [N, z_dim], optionally labels "
            f"int64 [N]; output images float32 [N, 1|3, H, W], optionally pixels uint8 [N, H, W, C]; "
            f"it has {got})"[:600]
        )
    props = dict(session.get_modelmeta().custom_metadata_map)
    z_dim = inputs[0].shape[1]
    channels, height, width = outputs[0].shape[1:]
    for key, value in ((Z_DIM, z_dim), (CHANNELS, channels), (HEIGHT, height), (WIDTH, width)):
        if key in props and props[key] != str(value):
            raise GankitError(f"{path}: metadata says {key}={props[key][:40]!r} but the graph has {value}")
    low, high = _output_range(path, props.get(OUTPUT_RANGE, "-1,1"))
    labels_name, classes = None, tuple[str, ...]()
    if len(inputs) == 2:
        labels_name = inputs[1].name
        classes = _classes(path, props)
    pixels_name = outputs[1].name if len(outputs) == 2 else None
    return ModelInfo(
        path,
        inputs[0].name,
        outputs[0].name,
        z_dim,
        channels,
        height,
        width,
        (low, high),
        props,
        labels_name,
        classes,
        pixels_name,
    )
