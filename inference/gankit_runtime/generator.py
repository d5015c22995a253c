"""The runtime: onnxruntime sessions wrapped in a small class. No torch anywhere."""

from __future__ import annotations

import collections
import itertools
import json
import math
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import latent_workers, metadata as meta
from .cpus import usable_cpus
from .errors import GankitError
from .files import sha256_of
from .images import to_uint8
from .seeds import latents_for_seeds

MAX_SESSIONS = 4  # CPU sessions side by side by default (each holds its own weights and buffers)
CUDA_LANES = 2  # CUDA batches in flight, sharing one session (see Generator.__init__)
LATENT_BLOCK = 16384  # seeds whose latents are made in one go (two of fastseeds' chunks: both threads or workers busy)
_POOL_LOCK = threading.Lock()
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
    # Class-conditional generators have a second input, labels int64 [N]; `classes` names label 0, 1, ...
    labels_name: str | None = None
    classes: tuple[str, ...] = ()

    @property
    def conditional(self) -> bool:
        return self.labels_name is not None


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise GankitError("onnxruntime is not installed: pip install './inference[cpu]' "
                          "(or './inference[gpu]' for CUDA)") from None
    # Errors only. onnxruntime-gpu logs a warning at every session start ("No registered plugin EP device
    # found ..."); real failures reach the user as exceptions, and a CUDA fallback is checked explicitly.
    onnxruntime.set_default_logger_severity(3)
    return onnxruntime


def _providers(ort, device: str, tf32: bool = False) -> list:
    m = _DEVICE.match(str(device))
    if not m or (m.group(1) == "cpu" and m.group(2) is not None):
        raise GankitError(f"bad device {device!r}: use cpu, cuda or cuda:N (onnxruntime's CUDA provider; "
                          "other accelerators are not supported)")
    if m.group(1) == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise GankitError(f"device {device} requested but this onnxruntime has no CUDA provider "
                          "(install onnxruntime-gpu: pip install './inference[gpu]')")
    # TF32 convolutions are onnxruntime's CUDA default; they move the shipped DCGAN's pixels by up to 3-5
    # levels against the CPU (measured on an H200: 2.6e-2 max abs; without TF32 8.6e-6). Off unless asked.
    options = {"device_id": int(m.group(2) or 0), "use_tf32": 1 if tf32 else 0}
    return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]


def _output_range(path: Path, text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise GankitError(f"{path}: bad output_range metadata {text[:40]!r} (expected 'low,high')") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise GankitError(f"{path}: bad output_range metadata {text[:40]!r} (need finite low < high)")
    return low, high


def _classes(path: Path, text: str | None) -> tuple[str, ...]:
    """A conditional model's class names: a JSON list of distinct, safe names (they become folder names)."""
    try:
        classes = json.loads(text)
    except (TypeError, ValueError):
        classes = None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise GankitError(f"{path} is a conditional generator without a valid {meta.CLASSES!r} metadata "
                          "entry (a JSON list of class names)")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise GankitError(f"{path}: metadata {meta.CLASSES!r} must name at least 2 distinct classes")
    for c in classes:
        problem = meta.class_name_problem(c)
        if problem:
            raise GankitError(f"{path}: class name {c[:40]!r} {problem}")
    return tuple(classes)


def _read_info(session, path: Path) -> ModelInfo:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    got = (f"inputs {[(i.name, i.type, i.shape) for i in inputs]}, "
           f"outputs {[(o.name, o.type, o.shape) for o in outputs]}")
    labels_ok = len(inputs) == 1 or (len(inputs) == 2 and inputs[1].type == "tensor(int64)"
                                     and len(inputs[1].shape) == 1)
    ok = (labels_ok and len(outputs) == 1
          and inputs[0].type == "tensor(float)" and len(inputs[0].shape) == 2
          and isinstance(inputs[0].shape[1], int) and inputs[0].shape[1] > 0
          and outputs[0].type == "tensor(float)" and len(outputs[0].shape) == 4
          and all(isinstance(d, int) and d > 0 for d in outputs[0].shape[1:])
          and outputs[0].shape[1] in (1, 3))
    if not ok:
        raise GankitError(f"{path} is not a generator (expected input z float32 [N, z_dim], optionally labels "
                          f"int64 [N], and one output float32 [N, 1|3, H, W]; it has {got})"[:600])
    props = dict(session.get_modelmeta().custom_metadata_map)
    z_dim = inputs[0].shape[1]
    channels, height, width = outputs[0].shape[1:]
    for key, value in ((meta.Z_DIM, z_dim), (meta.CHANNELS, channels), (meta.HEIGHT, height),
                       (meta.WIDTH, width)):
        if key in props and props[key] != str(value):
            raise GankitError(f"{path}: metadata says {key}={props[key][:40]!r} but the graph has {value}")
    low, high = _output_range(path, props.get(meta.OUTPUT_RANGE, "-1,1"))
    labels_name, classes = None, ()
    if len(inputs) == 2:
        labels_name = inputs[1].name
        classes = _classes(path, props.get(meta.CLASSES))
    return ModelInfo(path, inputs[0].name, outputs[0].name, z_dim, channels, height, width,
                     (low, high), props, labels_name, classes)


def open_session(path: Path, device: str = "cpu", threads: int | None = None, spin: bool = True,
                 tf32: bool = False):
    """An onnxruntime session on `device`, or one clear GankitError: missing or unloadable file, bad device,
    CUDA asked for but not available, or a session that silently fell back to the CPU.
    tf32: let CUDA convolutions use TF32 (faster on Ampere and later; off by default, see _providers)."""
    ort = _import_onnxruntime()
    path = Path(path)
    if path.is_dir():
        raise GankitError(f"model {path} is a folder; give an .onnx file")
    if not path.is_file():
        raise GankitError(f"model {path} not found")
    if threads is not None and threads < 1:
        raise GankitError(f"threads must be at least 1, got {threads}")
    providers = _providers(ort, device, tf32)
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
    >>> c = Generator("exported/mnist-cdcgan.onnx")            # class-conditional: one label per seed
    >>> sevens = c.generate(range(16), labels=[c.class_index("7")] * 16)

    device: "cpu", "cuda" or "cuda:N". Asking for CUDA where onnxruntime cannot use it is an
    error, never a silent run on the CPU. threads: CPU threads for inference, all sessions together
    (default: the CPUs this process may use); set it in containers and next to other busy processes.
    sessions (CPU): sessions that run batches side by side, threads // sessions intra-op threads each
    (default: one per thread, at most MAX_SESSIONS). Small generators gain most: one single-threaded session
    per core ran the MNIST DCGAN 20% faster than one session with both cores (12.5-13.0k against 10.5-10.8k
    img/s), the 64x64 RGB DCGAN 4% faster, and a session slowed by other work (a PNG writer) then holds back
    no other. An image does not depend on the session that made it (tested).
    tf32: on CUDA, let convolutions run in TF32: faster on Ampere and later GPUs, but pixels then differ from
    the CPU's by up to 3-5 levels (measured on the shipped DCGAN); off by default, so CUDA matches the CPU.
    spin: let onnxruntime's threads spin while they wait (fastest for inference alone; only sessions with
    more than one thread have any).
    """

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None, spin: bool = True,
                 tf32: bool = False, sessions: int | None = None):
        path = Path(path)
        if threads is not None and threads < 1:
            raise GankitError(f"threads must be at least 1, got {threads}")
        if sessions is not None and sessions < 1:
            raise GankitError(f"sessions must be at least 1, got {sessions}")
        if device != "cpu" and sessions not in (None, 1):
            raise GankitError(f"sessions apply to the CPU: one session runs on {device}")
        per_session = threads
        if device == "cpu":
            total = threads or usable_cpus()
            sessions = sessions or min(total, MAX_SESSIONS)
            per_session = max(1, total // sessions)
        self.sessions = [open_session(path, device, per_session, spin, tf32) for _ in range(sessions or 1)]
        self.session = self.sessions[0]
        # Batches in flight at once, one per lane. CPU: a lane per session. CUDA: CUDA_LANES lanes share the one
        # session (onnxruntime's run is thread-safe): while the GPU runs one batch, another lane's thread turns
        # the previous one into uint8 on the CPU, which would otherwise leave the GPU waiting.
        self._lanes = self.sessions if device == "cpu" else self.sessions * CUDA_LANES
        self.device = device
        self.providers = self.session.get_providers()
        self.info = _read_info(self.session, path)
        self._pool, self._pool_pid = None, None  # threads that run the sessions side by side

    def _threads(self) -> ThreadPoolExecutor:
        """The threads that run the sessions side by side: made once per process (a child forked after they
        started has none of them, and work handed to the parent's pool would wait forever)."""
        if self._pool_pid != os.getpid():
            with _POOL_LOCK:
                if self._pool_pid != os.getpid():
                    self._pool = ThreadPoolExecutor(len(self._lanes), "gankit-infer")
                    self._pool_pid = os.getpid()
        return self._pool

    def __repr__(self) -> str:
        i = self.info
        classes = f", classes={list(i.classes)}" if i.conditional else ""
        return (f"Generator({str(i.path)!r}, z_dim={i.z_dim}, image={i.channels}x{i.height}x{i.width}{classes}, "
                f"providers={self.providers})")

    @property
    def conditional(self) -> bool:
        return self.info.conditional

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def sha256(self) -> str:
        """sha256 of the model file: what names this model in dataset metadata."""
        if not hasattr(self, "_sha256"):
            self._sha256 = sha256_of(self.info.path)
        return self._sha256

    def class_index(self, name: str | int) -> int:
        """A class given by its name (as in the metadata) or by its index -> its index."""
        if not self.conditional:
            raise GankitError(f"{self.info.path} is unconditional: it has no classes to choose from")
        if str(name) in self.info.classes:
            return self.info.classes.index(str(name))
        if re.fullmatch(r"\d+", str(name)) and int(name) < len(self.info.classes):
            return int(name)
        raise GankitError(f"unknown class {name!r}: this model's classes are {', '.join(self.info.classes)}")

    def latents(self, seeds: Sequence[int], truncation: float = 1.0) -> np.ndarray:
        """float32 [N, z_dim] from the seed formula (see gankit_runtime.seeds), times `truncation`.

        Truncation psi shrinks each latent toward the prior's mean (0): z' = psi * z. Smaller psi trades
        variety for typical, cleaner images; 1.0 is off.
        """
        check_truncation(truncation)
        z = latents_for_seeds(seeds, self.info.z_dim)
        if truncation != 1.0:
            z *= np.float32(truncation)
        return z

    def _labels(self, labels, n: int) -> np.ndarray | None:
        if not self.conditional:
            if labels is not None:
                raise GankitError(f"{self.info.path} is unconditional: it takes no labels")
            return None
        if labels is None:
            raise GankitError(f"{self.info.path} is class-conditional: give one label per image "
                              f"(classes: {', '.join(self.info.classes)})")
        labels = np.asarray(labels)
        if labels.shape != (n,) or (n and labels.dtype.kind not in "iu"):
            raise GankitError(f"labels must be {n} integers, one per image, got shape {list(labels.shape)} "
                              f"of {labels.dtype}")
        if n and (labels.min() < 0 or labels.max() >= len(self.info.classes)):
            raise GankitError(f"labels must lie in [0, {len(self.info.classes) - 1}], got {labels.min()}..{labels.max()}")
        return np.ascontiguousarray(labels, dtype=np.int64)

    def run(self, z: np.ndarray, labels: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Raw generator output: float32 [N, C, H, W] in the model's output range.
        labels: int [N], one class per image, for a conditional generator (and only for one)."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.info.z_dim:
            raise GankitError(f"z must be [N, {self.info.z_dim}], got {list(z.shape)}")
        labels = self._labels(labels, z.shape[0])
        parts = min(len(self.sessions), len(z))
        if parts < 2:
            return self._infer(z, labels)
        # one slice per session, side by side (an image does not depend on the rest of its batch)
        cuts = [len(z) * k // parts for k in range(parts + 1)]
        runs = [self._threads().submit(self._infer, z[a:b], None if labels is None else labels[a:b], session)
                for a, b, session in zip(cuts, cuts[1:], self.sessions)]
        return np.concatenate([run.result() for run in runs])

    def _infer(self, z: np.ndarray, labels: np.ndarray | None, session=None) -> np.ndarray:
        """One session run on inputs already checked (run() and iter_images() check them once)."""
        feed = {self.info.input_name: z}
        if labels is not None:
            feed[self.info.labels_name] = labels
        return (session or self.session).run([self.info.output_name], feed)[0]

    def iter_images(self, seeds: Iterable[int], batch_size: int = 64, labels: Iterable[int] | None = None,
                    truncation: float = 1.0) -> Iterator[tuple[list[int], np.ndarray]]:
        """Yield (seeds of the batch, uint8 [B, H, W, C]) batch by batch. Seeds (and labels: one class per
        seed, for a conditional generator) are read lazily, so any number of them streams in flat memory.
        A batch with NaN or infinite output is an error, never black or white images."""
        if labels is None:
            self._labels(None, 0)  # a conditional generator needs labels: say so before any work
            items = ((s, None) for s in seeds)
        else:
            items = _with_labels(seeds, labels)
        for batch, images in self.iter_batches(items, batch_size, truncation):
            yield [item[0] for item in batch], images

    def iter_batches(self, items: Iterable[tuple], batch_size: int = 64,
                     truncation: float = 1.0) -> Iterator[tuple[list[tuple], np.ndarray]]:
        """iter_images over (seed, label or None, anything else...) tuples: yields (the batch's tuples, uint8
        [B, H, W, C]), so a caller's own data (a file name) travels with each image.

        Latents are made LATENT_BLOCK seeds at a time, one block ahead in a thread of their own while the
        session runs: the vectorised seed formula needs thousands of seeds per pass to be fast, and on a GPU
        the session would otherwise wait for the CPU. Items are read by that thread, lazily. With several
        sessions, batches run side by side, one in flight per session, and come out in order."""
        if batch_size < 1:
            raise GankitError(f"batch size must be at least 1, got {batch_size}")
        check_truncation(truncation)
        batches = self._latent_batches(items, batch_size, truncation)
        try:
            if len(self._lanes) == 1:
                for batch, z, labels in batches:
                    yield batch, self._images(batch, z, labels, self.session)
            else:
                yield from self._side_by_side(batches)
        finally:
            batches.close()  # its read-ahead thread ends with it

    def _side_by_side(self, batches: Iterator[tuple]) -> Iterator[tuple[list[tuple], np.ndarray]]:
        """Batch j runs in lane j % k; batch j + k is handed out once batch j is done, so a lane never has
        two at once."""
        k, pending, pool = len(self._lanes), collections.deque(), self._threads()
        try:
            for j, (batch, z, labels) in enumerate(batches):
                if len(pending) == k:
                    yield pending[0][0], pending.popleft()[1].result()
                pending.append((batch, pool.submit(self._images, batch, z, labels, self._lanes[j % k])))
            while pending:
                yield pending[0][0], pending.popleft()[1].result()
        finally:
            for _, future in pending:  # stopped early (an error, Ctrl-C, a consumer that stopped reading)
                future.cancel()
            for _, future in pending:
                if not future.cancelled():
                    future.exception()  # wait for the runs in flight: the sessions are free when we return

    def _latent_batches(self, items: Iterable[tuple], batch_size: int, truncation: float) -> Iterator[tuple]:
        """(batch's items, latents, labels or None) batch by batch, latents made a block ahead."""
        block_size = max(batch_size, LATENT_BLOCK)
        item_iter = iter(items)

        def next_block():
            block = list(itertools.islice(item_iter, block_size))
            if not block:
                return None
            labels = None
            if self.conditional or any(item[1] is not None for item in block):
                labels = self._labels([item[1] for item in block], len(block))
            return block, self.latents([item[0] for item in block], truncation), labels

        def batches_of(block, z, labels):
            for start in range(0, len(block), batch_size):
                stop = start + batch_size
                yield block[start:stop], z[start:stop], None if labels is None else labels[start:stop]

        made = next_block()  # the first block here: a job of one block (a service's call) needs no thread
        if made is None:
            return
        if len(made[0]) < block_size:
            yield from batches_of(*made)
            return
        # A job of more blocks: latents from worker processes, started in the background, from the block they
        # are ready for (no GIL shared with inference and writers: PNGs +6% on 2 cores, and what a GPU needs).
        latent_workers.start(wait=False)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gankit-latents") as ahead:
            upcoming = ahead.submit(next_block)
            try:
                while True:
                    yield from batches_of(*made)
                    made = upcoming.result()
                    if made is None:
                        return
                    upcoming = ahead.submit(next_block)
            finally:
                upcoming.cancel()

    def _images(self, batch: list, z: np.ndarray, labels: np.ndarray | None, session) -> np.ndarray:
        raw = self._infer(z, labels, session)
        if not np.isfinite(raw).all():
            raise GankitError(f"{self.info.path} gives NaN or infinite values (seeds {batch[0][0]}.."
                              f"{batch[-1][0]}): the model is broken, perhaps exported from a diverged run")
        return to_uint8(raw, *self.info.output_range)

    def generate(self, seeds: Sequence[int], batch_size: int = 64, labels: Sequence[int] | None = None,
                 truncation: float = 1.0) -> np.ndarray:
        """uint8 [len(seeds), H, W, C]; image i depends on seeds[i] (and labels[i], truncation) alone."""
        i = self.info
        out = np.empty((len(seeds), i.height, i.width, i.channels), dtype=np.uint8)
        n = 0
        for chunk, images in self.iter_images(seeds, batch_size, labels, truncation):
            out[n:n + len(chunk)] = images
            n += len(chunk)
        return out


def _with_labels(seeds: Iterable[int], labels: Iterable[int]) -> Iterator[tuple[int, int]]:
    """(seed, label) pairs; labels beyond the seeds are not read (itertools.cycle(...) is fine)."""
    label_iter = iter(labels)
    for seed in seeds:
        label = next(label_iter, None)
        if label is None:
            raise GankitError("labels must be one per seed: the labels ran out before the seeds")
        yield seed, label


def check_truncation(psi: float) -> None:
    if not (isinstance(psi, (int, float)) and math.isfinite(psi) and psi >= 0):
        raise GankitError(f"truncation must be a finite number >= 0 (1.0 = off), got {psi}")
