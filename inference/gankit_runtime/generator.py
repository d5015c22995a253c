"""The runtime: one onnxruntime session wrapped in a small class. No torch anywhere."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from . import metadata as meta
from .errors import GankitError
from .images import to_uint8
from .seeds import latents_for_seeds

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


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


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise GankitError("onnxruntime is not installed: pip install './inference[cpu]' "
                          "(or './inference[gpu]' for CUDA)") from None
    return onnxruntime


def _providers(ort, device: str) -> list:
    m = _DEVICE.match(device)
    if not m or (m.group(1) == "cpu" and m.group(2) is not None):
        raise GankitError(f"bad device {device!r}: use cpu, cuda or cuda:N")
    if m.group(1) == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise GankitError(f"device {device} requested but this onnxruntime has no CUDA provider "
                          "(install onnxruntime-gpu: pip install './inference[gpu]')")
    return [("CUDAExecutionProvider", {"device_id": int(m.group(2) or 0)}), "CPUExecutionProvider"]


def _read_info(session, path: Path) -> ModelInfo:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    got = (f"inputs {[(i.name, i.type, i.shape) for i in inputs]}, "
           f"outputs {[(o.name, o.type, o.shape) for o in outputs]}")
    ok = (len(inputs) == 1 and len(outputs) == 1
          and inputs[0].type == "tensor(float)" and len(inputs[0].shape) == 2
          and isinstance(inputs[0].shape[1], int)
          and outputs[0].type == "tensor(float)" and len(outputs[0].shape) == 4
          and all(isinstance(d, int) for d in outputs[0].shape[1:])
          and outputs[0].shape[1] in (1, 3))
    if not ok:
        raise GankitError(f"{path} is not a generator (expected one input z float32 [N, z_dim] and one "
                          f"output float32 [N, 1|3, H, W]; it has {got})")
    props = dict(session.get_modelmeta().custom_metadata_map)
    z_dim = inputs[0].shape[1]
    channels, height, width = outputs[0].shape[1:]
    for key, value in ((meta.Z_DIM, z_dim), (meta.CHANNELS, channels), (meta.HEIGHT, height),
                       (meta.WIDTH, width)):
        if key in props and props[key] != str(value):
            raise GankitError(f"{path}: metadata says {key}={props[key]} but the graph has {value}")
    try:
        low, high = (float(v) for v in props.get(meta.OUTPUT_RANGE, "-1,1").split(","))
    except ValueError:
        raise GankitError(f"{path}: bad output_range metadata {props[meta.OUTPUT_RANGE]!r}") from None
    return ModelInfo(path, inputs[0].name, outputs[0].name, z_dim, channels, height, width,
                     (low, high), props)


def open_session(path: Path, device: str = "cpu", threads: int | None = None, spin: bool = True):
    """An onnxruntime session on `device`, or one clear GankitError: missing or unloadable file, bad device,
    CUDA asked for but not available, or a session that silently fell back to the CPU."""
    ort = _import_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise GankitError(f"model {path} not found")
    if threads is not None and threads < 1:
        raise GankitError(f"threads must be at least 1, got {threads}")
    providers = _providers(ort, device)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only; a CUDA fallback is checked below, not logged
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # onnxruntime raises its own pybind exception types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GankitError(f"{path} is not a loadable ONNX model: {reason[:300]}") from None
    if device != "cpu" and "CUDAExecutionProvider" not in session.get_providers():
        raise GankitError(f"device {device} requested but onnxruntime fell back to {session.get_providers()} "
                          "(no visible GPU or CUDA/cuDNN libraries missing)")
    return session


class Generator:
    """Load an exported generator once; turn seeds into images.

    >>> g = Generator("exported/mnist-dcgan.onnx")            # or device="cuda", threads=4
    >>> images = g.generate(range(16))                         # uint8 [16, 28, 28, 1]

    device: "cpu", "cuda" or "cuda:N". Asking for CUDA where onnxruntime cannot use it is an
    error, never a silent run on the CPU. threads: onnxruntime's intra-op threads (default: its
    own choice, one per physical core); set it in containers and next to other busy processes.
    spin: let onnxruntime's threads spin while they wait (fastest for inference alone); turn it off when
    threads of your own work beside it, as the PNG writer does (measured: +16% PNG throughput on 2 cores).
    """

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None, spin: bool = True):
        path = Path(path)
        self.session = open_session(path, device, threads, spin)
        self.device = device
        self.providers = self.session.get_providers()
        self.info = _read_info(self.session, path)

    def __repr__(self) -> str:
        i = self.info
        return (f"Generator({str(i.path)!r}, z_dim={i.z_dim}, image={i.channels}x{i.height}x{i.width}, "
                f"providers={self.providers})")

    def latents(self, seeds: Sequence[int]) -> np.ndarray:
        """float32 [N, z_dim] from the seed formula (see gankit_runtime.seeds)."""
        return latents_for_seeds(seeds, self.info.z_dim)

    def run(self, z: np.ndarray) -> np.ndarray:
        """Raw generator output: float32 [N, C, H, W] in the model's output range."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.info.z_dim:
            raise GankitError(f"z must be [N, {self.info.z_dim}], got {list(z.shape)}")
        return self.session.run([self.info.output_name], {self.info.input_name: z})[0]

    def iter_images(self, seeds: Sequence[int], batch_size: int = 64) -> Iterator[tuple[list[int], np.ndarray]]:
        """Yield (seeds of the batch, uint8 [B, H, W, C]) batch by batch: memory stays flat."""
        if batch_size < 1:
            raise GankitError(f"batch size must be at least 1, got {batch_size}")
        seeds = [int(s) for s in seeds]
        for start in range(0, len(seeds), batch_size):
            chunk = seeds[start:start + batch_size]
            yield chunk, to_uint8(self.run(self.latents(chunk)), *self.info.output_range)

    def generate(self, seeds: Sequence[int], batch_size: int = 64) -> np.ndarray:
        """uint8 [len(seeds), H, W, C]; image i depends on seeds[i] alone."""
        i = self.info
        out = np.empty((len(seeds), i.height, i.width, i.channels), dtype=np.uint8)
        n = 0
        for chunk, images in self.iter_images(seeds, batch_size):
            out[n:n + len(chunk)] = images
            n += len(chunk)
        return out
