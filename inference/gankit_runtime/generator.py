"""The runtime: a generator's onnxruntime session behind a small class. Seeds in, uint8 images out; no torch.
Sessions, lanes and batches here; the model contract in contract.py, latents in seeds.py, pixels in images.py."""

from __future__ import annotations

import collections
import hashlib
import itertools
import math
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, overload

import numpy as np

from .contract import open_session, parse_device, read_info, read_model
from .errors import GankitError
from .images import to_uint8
from .seeds import latents_for_seeds
from .shipped import resolve_model

MAX_LANES = 4  # CPU batches in flight at once by default (each lane runs its batch single-threaded)
DEFAULT_THREADS = 8  # at most this many threads unless asked: small generators gain nothing from a 64-core host
THREADS_PER_CPU = 4  # more threads than this many per usable CPU is a mistake (and can hang onnxruntime's start)
CUDA_LANES = 2  # CUDA batches in flight: while the GPU runs one, the CPU makes the next one's latents and pixels
MAX_BATCH = 65536  # larger batches gain nothing and need gigabytes
_POOL_LOCK = threading.Lock()


def usable_cpus() -> int:
    """How many CPUs this process may use (its affinity mask where the platform has one: containers, taskset)."""
    return max(1, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_plan(device: str, threads: int | None, lanes: int | None) -> tuple[int | None, int]:
    """(the session's intra-op threads, lanes). One session serves every lane (onnxruntime's run is thread-safe;
    measured as fast as one session per lane, at half the memory). CPU: `threads` is the total, exactly: k lanes
    each run in their own thread and share threads - k + 1 intra-op threads (the calling thread is one of them).
    CUDA: CUDA_LANES lanes, `threads` for the session's CPU-side work."""
    cpus = usable_cpus()
    if threads is not None and not (isinstance(threads, int) and 1 <= threads <= THREADS_PER_CPU * cpus):
        raise GankitError(
            f"threads must be 1 to {THREADS_PER_CPU * cpus} ({THREADS_PER_CPU} per CPU this process "
            f"may use), got {threads}"
        )
    if lanes is not None and not (isinstance(lanes, int) and 1 <= lanes <= THREADS_PER_CPU * cpus):
        raise GankitError(f"lanes must be 1 to {THREADS_PER_CPU * cpus}, got {lanes}")
    if parse_device(device)[0] != "cpu":
        return threads, lanes or CUDA_LANES
    total = threads or min(cpus, DEFAULT_THREADS)
    k = lanes or min(total, MAX_LANES)
    if k > total:
        raise GankitError(f"{k} lanes need at least {k} threads (threads is the total, {total} here)")
    return total - k + 1, k


class Generator:
    """Load an exported generator once; turn seeds into images.

    >>> g = Generator("mnist-dcgan")                           # a shipped model, or any .onnx path; device="cuda"
    >>> images = g.generate(range(16))                         # uint8 [16, 28, 28, 1]
    >>> c = Generator("mnist-cdcgan")                          # class-conditional: one label per seed
    >>> sevens = c.generate(range(16), labels=[c.class_index("7")] * 16)

    device: "cpu", "cuda" or "cuda:N"; CUDA where onnxruntime cannot use it is an error, never a silent CPU run.
    threads: CPU threads in all, exactly (default: the CPUs this process may use, at most DEFAULT_THREADS).
    lanes: batches in flight at once on the one session (CPU: one per thread, at most MAX_LANES; CUDA: CUDA_LANES):
    several single-threaded runs beat one multi-threaded run for small generators. Images never depend on lanes.
    tf32: TF32 convolutions on CUDA, faster but several pixel levels off the CPU's. spin: onnxruntime's threads spin.
    Create Generators after os.fork() (sessions do not survive it); close() or a with block frees the session.
    """

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        threads: int | None = None,
        spin: bool = True,
        tf32: bool = False,
        lanes: int | None = None,
    ):
        path = resolve_model(path)  # a file, or the name of a shipped model ("mnist-dcgan")
        intra_threads, self.lanes = thread_plan(device, threads, lanes)
        model = read_model(path)  # read once: the session and the hash come from the same bytes
        self.sha256 = hashlib.sha256(model).hexdigest()
        self.session = open_session(model, device, intra_threads, spin, tf32, name=path)
        self.providers = self.session.get_providers()
        self.info = read_info(self.session, path)
        self._pool: ThreadPoolExecutor | None = None  # the lanes' threads, made at the first job that needs them
        self._pid = os.getpid()

    def close(self) -> None:
        """Free the session and threads now (a closed Generator cannot run again)."""
        if self._pool is not None and self._pid == os.getpid():
            self._pool.shutdown(wait=True)
        self._pool, self.session = None, None

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _usable(self) -> None:
        if self._pid != os.getpid():
            raise GankitError(
                "this Generator was made in another process, before os.fork(): onnxruntime sessions "
                "do not survive fork; create Generators after forking (gunicorn without --preload, "
                "celery's worker_process_init)"
            )
        if self.session is None:
            raise GankitError(f"this Generator of {self.info.path} is closed")

    def _threads(self) -> ThreadPoolExecutor:
        """The threads that run the lanes side by side, made at the first job that needs them."""
        with _POOL_LOCK:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.lanes, "gankit-lane")
            return self._pool

    def __repr__(self) -> str:
        i = self.info
        classes = f", classes={list(i.classes)}" if i.conditional else ""
        return (
            f"Generator({str(i.path)!r}, z_dim={i.z_dim}, image={i.channels}x{i.height}x{i.width}{classes}, "
            f"providers={self.providers})"
        )

    @property
    def conditional(self) -> bool:
        return self.info.conditional

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def class_index(self, name: str | int) -> int:
        """A class given by its name (as in the metadata) or by its index -> its index. An int is always an index;
        a string is a name first (a class may be named "2"), then an index written in digits."""
        if not self.conditional:
            raise GankitError(f"{self.info.path} is unconditional: it has no classes to choose from")
        if isinstance(name, (int, np.integer)) and not isinstance(name, bool):  # an int is an index, never a name
            if 0 <= name < len(self.info.classes):
                return int(name)
            raise GankitError(f"class index {name} is out of range: this model has {len(self.info.classes)} classes")
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
            raise GankitError(
                f"{self.info.path} is class-conditional: give one label per image "
                f"(classes: {', '.join(self.info.classes)})"
            )
        labels = np.asarray(labels)
        if labels.shape != (n,) or (n and labels.dtype.kind not in "iu"):
            raise GankitError(
                f"labels must be {n} integers, one per image, got shape {list(labels.shape)} of {labels.dtype}"
            )
        if n and (labels.min() < 0 or labels.max() >= len(self.info.classes)):
            raise GankitError(
                f"labels must lie in [0, {len(self.info.classes) - 1}], got {labels.min()}..{labels.max()}"
            )
        return np.ascontiguousarray(labels, dtype=np.int64)

    def run(self, z: np.ndarray, labels: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Raw generator output: float32 [N, C, H, W] in the model's output range.
        labels: int [N], one class per image, for a conditional generator (and only for one)."""
        self._usable()
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.info.z_dim:
            raise GankitError(f"z must be [N, {self.info.z_dim}], got {list(z.shape)}")
        labels = self._labels(labels, z.shape[0])
        parts = min(self.lanes, len(z))
        if parts < 2:
            return self._checked(z, labels)
        # one slice per lane, side by side (an image does not depend on the rest of its batch)
        cuts = [len(z) * k // parts for k in range(parts + 1)]
        runs = [
            self._threads().submit(self._checked, z[a:b], None if labels is None else labels[a:b])
            for a, b in zip(cuts, cuts[1:])
        ]
        return np.concatenate([run.result() for run in runs])

    @overload
    def _checked(
        self, z: np.ndarray, labels: np.ndarray | None, first_seed: object = "?", pixels: Literal[False] = False
    ) -> np.ndarray: ...

    @overload
    def _checked(
        self, z: np.ndarray, labels: np.ndarray | None, first_seed: object = "?", *, pixels: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def _checked(
        self, z: np.ndarray, labels: np.ndarray | None, first_seed: object = "?", pixels: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """One session run on inputs already checked: images float32 [N, C, H, W] as the contract says, finite
        (with pixels=True, also the graph's pixels), or one clear error (onnxruntime's own failures included: a
        graph that fails at some batch size, out of memory)."""
        i = self.info
        feed = {i.input_name: z}
        if labels is not None and i.labels_name is not None:
            feed[i.labels_name] = labels
        names = [i.output_name, i.pixels_name] if pixels and i.pixels_name else [i.output_name]
        try:
            outputs = self.session.run(names, feed)
        except Exception as e:  # onnxruntime's pybind exception types
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            hint = " (out of memory: try a smaller batch size)" if re.search(r"(?i)memory|alloc", reason) else ""
            raise GankitError(f"{i.path}: onnxruntime failed on a batch of {len(z)}{hint}: {reason}") from None
        i.check_output(outputs[0], len(z), first_seed, outputs[1] if pixels else None)
        return tuple(outputs) if pixels else outputs[0]

    def iter_images(
        self, seeds: Iterable[int], batch_size: int = 64, labels: Iterable[int] | None = None, truncation: float = 1.0
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """Yield (seeds of the batch, uint8 [B, H, W, C]) batch by batch. Seeds (and labels: one class per
        seed, for a conditional generator) are read lazily, so any number of them streams in flat memory.
        A batch with NaN or infinite output is an error, never black or white images."""
        items: Iterable[tuple[int, int | None]]
        if labels is None:
            self._labels(None, 0)  # a conditional generator needs labels: say so before any work
            items = ((s, None) for s in seeds)
        else:
            items = _with_labels(seeds, labels)
        for batch, images in self.iter_batches(items, batch_size, truncation):
            yield [item[0] for item in batch], images

    def iter_batches(
        self, items: Iterable[tuple], batch_size: int = 64, truncation: float = 1.0
    ) -> Iterator[tuple[list[tuple], np.ndarray]]:
        """iter_images over (seed, label or None, anything else...) tuples: yields (the batch's tuples, uint8
        [B, H, W, C]), so a caller's own data (a file name) travels with each image.

        Items are read lazily, a batch at a time. Each batch's latents are made in the lane that runs it, just
        before its session run, so with several lanes one lane makes latents while the others run (on a GPU
        too: CUDA_LANES); batches run side by side, one in flight per lane, and come out in order."""
        self._usable()
        check_batch_size(batch_size)
        check_truncation(truncation)
        item_iter = iter(items)
        batches = iter(lambda: list(itertools.islice(item_iter, batch_size)), [])
        k, pool = self.lanes, self._threads()
        pending: collections.deque = collections.deque()
        try:
            for batch in batches:
                if len(pending) == k:
                    yield pending[0][0], pending.popleft()[1].result()
                pending.append((batch, pool.submit(self._images, batch, truncation)))
            while pending:
                yield pending[0][0], pending.popleft()[1].result()
        finally:
            for _, future in pending:  # stopped early (an error, Ctrl-C, a consumer that stopped reading)
                future.cancel()
            for _, future in pending:
                if not future.cancelled():
                    future.exception()  # wait for the runs in flight: the session is free when we return

    def _images(self, batch: list[tuple], truncation: float) -> np.ndarray:
        """uint8 [B, H, W, C] of a batch of (seed, label or None, ...) items: the runtime's own conversion of the
        graph's images (to_uint8). The graph's `pixels` output is for other languages and is never read here: a file
        whose pixels disagree with its images (altered, or crafted to pass a check) cannot reach a written image."""
        labels = None
        if self.conditional or any(item[1] is not None for item in batch):
            labels = self._labels([item[1] for item in batch], len(batch))
        z = self.latents([item[0] for item in batch], truncation)
        return to_uint8(self._checked(z, labels, batch[0][0]), *self.info.output_range)

    def generate(
        self,
        seeds: Sequence[int],
        batch_size: int = 64,
        labels: Sequence[int] | np.ndarray | None = None,
        truncation: float = 1.0,
    ) -> np.ndarray:
        """uint8 [len(seeds), H, W, C]; image i depends on seeds[i] (and labels[i], truncation) alone."""
        i = self.info
        out = np.empty((len(seeds), i.height, i.width, i.channels), dtype=np.uint8)
        n = 0
        for chunk, images in self.iter_images(seeds, batch_size, labels, truncation):
            out[n : n + len(chunk)] = images
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


def check_batch_size(batch_size: int) -> None:
    if not (isinstance(batch_size, int) and 1 <= batch_size <= MAX_BATCH):
        raise GankitError(f"batch size must be 1 to {MAX_BATCH}, got {batch_size}")


MAX_TRUNCATION = 10.0  # psi beyond this puts latents far outside anything the generator saw in training


def check_truncation(psi: float) -> None:
    if not (isinstance(psi, (int, float)) and math.isfinite(psi) and 0 <= psi <= MAX_TRUNCATION):
        raise GankitError(f"truncation must be a number from 0 to {MAX_TRUNCATION:g} (1.0 = off), got {psi}")
