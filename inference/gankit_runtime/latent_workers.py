"""Latents in worker processes: the seed formula's numpy work without the GIL.

fastseeds makes a seed's latent in ~1.7 us of numpy calls, but threads share one GIL and each call holds it
for a moment: two threads give 1.1-1.45x one (measured on 2 cores). Processes do not share it: two give ~2x.
So a job longer than one latent block (Generator.iter_batches calls start(wait=False)), or a process that
has made START_AFTER seeds through latents_for_seeds, starts worker processes in the background (never a
service's single call) and, when they are up, hands them chunks of seeds; until then, and whenever they are
busy or gone, fastseeds runs in this process. The latents are the same either way.

A worker is `python -c` loading fastseeds.py by its path (numpy is all it imports). Requests go through
its stdin, latents come back through a shared, unnamed file (memfd on Linux), two slots per worker so one
chunk is copied out while the next is made. Workers run in their own session (a Ctrl-C in the terminal
reaches the parent alone, which then stops) and end when their stdin closes: when the parent exits,
however it exits, kill -9 included.

GANKIT_LATENT_WORKERS: the number of workers (0: none). Default: the CPUs this process may use, at most 4,
and none with a single CPU or where processes cannot share a file by descriptor (Windows).
"""

from __future__ import annotations

import atexit
import contextlib
import mmap
import os
import subprocess
import sys
import tempfile
import threading
import warnings
from collections import deque

import numpy as np

from . import fastseeds
from .cpus import usable_cpus
from .errors import GankitError

ENV = "GANKIT_LATENT_WORKERS"
START_AFTER = 65536  # seeds made in this process before workers start
MAX_WORKERS = 4  # ~2M seeds/s: more than a GPU session's 1M images/s needs
SLOT_BYTES = fastseeds.CHUNK * 128 * 4  # fastseeds.chunk_size keeps a chunk's latents within this
START_TIMEOUT = 60.0  # seconds for a worker to start, import numpy and pass its check
_WORKER = ("import sys; del sys.path[0]; import importlib.util as u; "
           "s = u.spec_from_file_location('gankit_fastseeds', sys.argv[1]); m = u.module_from_spec(s); "
           "s.loader.exec_module(m); m.serve(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))")

_lock = threading.Lock()
_pool: Pool | None = None
_made = 0  # seeds made in this process, by either path
_disabled = False  # workers failed once: this process makes its latents itself from then on


def worker_count() -> int:
    """Workers to start: GANKIT_LATENT_WORKERS, or the default (see the module's doc)."""
    text = os.environ.get(ENV, "").strip()
    if text:
        if not text.isdigit():
            raise GankitError(f"{ENV} must be a number of worker processes (0: none), got {text!r}")
        wanted = int(text)
    else:
        cpus = usable_cpus()
        wanted = min(cpus, MAX_WORKERS) if cpus > 1 else 0
    return wanted if os.name == "posix" else 0


def fill(seeds: np.ndarray, z_dim: int, out: np.ndarray) -> bool:
    """out = the latents of `seeds` (int64, in range) if workers are up and free; False: make them yourself.
    Starts the workers, in the background, once this process has made START_AFTER seeds."""
    global _pool, _made
    with _lock:
        if _made == 0:
            worker_count()  # a bad GANKIT_LATENT_WORKERS is an error at a job's start, not after 65,536 images
        _made += len(seeds)
        pool = _pool
        if pool is None and not _disabled and _made >= START_AFTER:
            count = worker_count()
            if count:
                pool = _pool = Pool(count)
    return pool is not None and pool.fill(seeds, z_dim, out)


def start(count: int | None = None, wait: bool = True) -> Pool | None:
    """Start the workers now (count: default worker_count()). wait: until they are ready, and None if they are
    not (no workers here, or they failed); else the pool, perhaps still starting (None: no workers here)."""
    global _pool
    with _lock:
        if _pool is None and not _disabled:
            count = worker_count() if count is None else count
            if count:
                _pool = Pool(count)
        pool = _pool
    if pool is None or not wait:
        return pool
    pool.started.wait(START_TIMEOUT)
    return pool if pool.ready else None


def stop() -> None:
    """Stop the workers (they start again later if need be)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close()


def _give_up(pool: Pool, why: str) -> None:
    """Workers failed: close them and make latents in this process from now on, with one warning."""
    global _pool, _disabled
    with _lock:
        if _pool is pool:
            _pool, _disabled = None, True
    pool.close()
    warnings.warn(f"gankit: latent worker processes stopped ({why}); making latents in this process",
                  RuntimeWarning, stacklevel=3)


class _Worker:
    def __init__(self, process: subprocess.Popen, slots: list[memoryview]):
        self.process, self.slots = process, slots

    def send(self, slot: int, seeds: np.ndarray, z_dim: int) -> None:
        try:
            self.process.stdin.write(fastseeds.REQUEST.pack(b"GKLR", slot, len(seeds), z_dim))
            self.process.stdin.write(seeds.astype("<u4").tobytes())
            self.process.stdin.flush()
        except BrokenPipeError:
            raise OSError(self._ended()) from None

    def _ended(self) -> str:
        try:
            code = self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            code = None
        return f"worker {self.process.pid} ended (exit code {code})"

    def receive(self, slot: int, n: int, z_dim: int, out: np.ndarray) -> None:
        reply = self.process.stdout.read(fastseeds.REPLY.size)
        if len(reply) != fastseeds.REPLY.size or fastseeds.REPLY.unpack(reply) != (b"GKLA", slot, n, 0):
            raise OSError(f"worker {self.process.pid} failed" if len(reply) else self._ended())
        np.copyto(out, np.frombuffer(self.slots[slot], np.float32, n * z_dim).reshape(n, z_dim))


class Pool:
    """Worker processes and their shared buffer. fill() is for one caller at a time; a second caller, while
    the first is in, gets False and makes its latents itself."""

    def __init__(self, count: int):
        self.count, self.workers, self.ready, self.closed = count, [], False, False
        self.started = threading.Event()
        self._busy = threading.Lock()
        size = count * 2 * SLOT_BYTES
        if hasattr(os, "memfd_create"):
            self._file, fd = None, os.memfd_create("gankit-latents")
        else:
            self._file = tempfile.TemporaryFile()  # unlinked at once: nothing left behind on a crash
            fd = self._file.fileno()
        os.ftruncate(fd, size)
        self._fd, self._buffer = fd, mmap.mmap(fd, size)
        threading.Thread(target=self._start, name="gankit-latent-workers", daemon=True).start()

    def _start(self) -> None:
        """Start every worker, then check each: its hello, and its latents for fastseeds' check seeds
        against this process's numpy. Any failure: no workers (silently: this process makes latents)."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # this process's numpy
        view = memoryview(self._buffer)
        try:
            processes = []
            for k in range(self.count):
                if self.closed:  # stopped while starting (the process is exiting, say)
                    return
                offset = k * 2 * SLOT_BYTES
                processes.append(subprocess.Popen(
                    [sys.executable, "-c", _WORKER, fastseeds.__file__, str(self._fd), str(offset), str(SLOT_BYTES)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                    pass_fds=(self._fd,), start_new_session=True))
                self.workers.append(_Worker(processes[-1], [view[offset + s * SLOT_BYTES:][:SLOT_BYTES]
                                                            for s in (0, 1)]))
            seeds = np.array(fastseeds.VERIFY_SEEDS, np.int64)
            want = fastseeds.by_reference(seeds, 7)
            for worker in self.workers:
                hello = worker.process.stdout.read(8)
                if hello != fastseeds.HELLO + (1).to_bytes(4, "little"):
                    raise OSError(f"worker {worker.process.pid} did not start")
                got = np.empty_like(want)
                worker.send(0, seeds, 7)
                worker.receive(0, len(seeds), 7, got)
                if not np.array_equal(got, want):
                    raise OSError(f"worker {worker.process.pid} made other latents")
            self.ready = not self.closed
        except Exception:  # noqa: BLE001 - no workers, whatever went wrong (a closed pipe: stopped meanwhile)
            self.close()
        finally:
            # the workers hold the shared file now (and the mapping here keeps it): its descriptor can go
            if self._file is None:
                os.close(self._fd)
            else:
                self._file.close()
            if self.closed:
                self.close()  # stopped while starting: the workers started meanwhile end too
            self.started.set()

    def fill(self, seeds: np.ndarray, z_dim: int, out: np.ndarray) -> bool:
        if not self.ready or not self._busy.acquire(blocking=False):
            return False
        try:
            chunk = min(fastseeds.chunk_size(z_dim), -(-len(seeds) // self.count // 512) * 512 or 512)
            if chunk * z_dim * 4 > SLOT_BYTES:
                return False  # very wide latents (z_dim > 2048): this process makes them
            pending: deque = deque()
            # Round robin, two chunks in flight per worker (its two slots): chunk i waits for chunk i - 2W.
            for i, a in enumerate(range(0, len(seeds), chunk)):
                if len(pending) == 2 * self.count:
                    self._receive(pending.popleft(), z_dim, out)
                worker, slot = self.workers[i % self.count], (i // self.count) % 2
                worker.send(slot, seeds[a:a + chunk], z_dim)
                pending.append((worker, slot, a, min(a + chunk, len(seeds))))
            while pending:
                self._receive(pending.popleft(), z_dim, out)
            return True
        except (OSError, ValueError) as e:  # a worker died or failed (or stop() closed its pipes meanwhile)
            if not self.closed:
                _give_up(self, str(e))  # this call and the next are made in this process
            return False
        except BaseException:  # Ctrl-C while workers hold chunks: their replies are unread; start afresh later
            stop()
            raise
        finally:
            self._busy.release()

    @staticmethod
    def _receive(item, z_dim: int, out: np.ndarray) -> None:
        worker, slot, a, b = item
        worker.receive(slot, b - a, z_dim, out[a:b])

    def close(self) -> None:
        """End the workers: their stdin closes, they exit; killed if they have not within a second."""
        self.ready, self.closed = False, True
        for worker in list(self.workers):
            try:
                worker.process.stdin.close()
            except (OSError, ValueError):
                pass
        for worker in list(self.workers):
            try:
                worker.process.wait(1.0)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            with contextlib.suppress(OSError, ValueError):
                worker.process.stdout.close()


def _forget_in_child() -> None:
    """After os.fork(): the workers belong to the parent. The child closes its copies of their pipes (so they
    still end with the parent) and starts its own if it needs them."""
    global _pool, _lock
    _lock = threading.Lock()
    pool, _pool = _pool, None
    for worker in pool.workers if pool is not None else ():
        for stream in (worker.process.stdin, worker.process.stdout):
            try:
                os.close(stream.fileno())
            except (OSError, ValueError):
                pass


atexit.register(stop)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
