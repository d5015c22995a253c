import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import child_exit_code
from gankit_runtime import GankitError, SeedRanges, fastseeds, latent_for_seed, latents_for_seeds, parse_seeds

# Recorded once from numpy.random.RandomState(seed).randn(z_dim).astype(float32) (numpy 2.4.6): the formula's
# values, not a recomputation of it.
GOLDEN = np.load(Path(__file__).parent / "golden" / "latents.npz")
GOLDEN_SEEDS = (0, 1, 42, 2**31, 2**32 - 1)


def test_ranges_and_lists_in_order():
    assert parse_seeds("0-3,10,7-8") == [0, 1, 2, 3, 10, 7, 8]
    assert parse_seeds("5") == [5]
    assert parse_seeds(" 1 , 2 ") == [1, 2]
    assert len(parse_seeds("0-9999")) == 10000


def test_any_number_of_seeds_is_lazy():
    seeds = parse_seeds("0-4294967295")
    assert isinstance(seeds, SeedRanges) and len(seeds) == 2**32 and seeds[-1] == 2**32 - 1
    assert seeds[123456789] == 123456789 and list(seeds[:3]) == [0, 1, 2]
    assert len(seeds.ranges) == 1  # a range, not four billion numbers


@pytest.mark.parametrize("text", ["", "a", "1-", "-1", "3-1", "1,,2", "1-2-3", "1.5", "0-4294967296", "1,1",
                                  "0-10,5", "5-9,0-5"])
def test_bad_seeds_are_refused(text):
    with pytest.raises(GankitError):
        parse_seeds(text)


@pytest.mark.parametrize("z_dim", [1, 100, 512])
@pytest.mark.parametrize("seed", GOLDEN_SEEDS)
def test_latents_equal_the_recorded_numpy_values(seed, z_dim):
    want = GOLDEN[f"seed{seed}_z{z_dim}"]
    np.testing.assert_array_equal(latent_for_seed(seed, z_dim), want)
    # In a batch large enough for the vectorised path, at any position.
    batch = [seed] + [s for s in range(1000, 2100) if s != seed]
    assert len(batch) >= latents_for_seeds.__globals__["FAST_FROM"]
    got = latents_for_seeds(batch[::-1], z_dim)
    np.testing.assert_array_equal(got[-1], want)


def test_vectorised_path_equals_numpy_on_many_seeds_and_odd_sizes():
    rng = np.random.default_rng(7)
    seeds = np.concatenate([rng.integers(0, 2**32, 3000, dtype=np.int64), [0, 2**32 - 1]])
    for z_dim in (1, 3, 100, 101, 512):  # 512: past one MT19937 twist of words
        got, short = fastseeds._vectorised(seeds.astype(np.uint32), z_dim)
        want = np.stack([np.random.RandomState(int(s)).randn(z_dim).astype(np.float32) for s in seeds[~short]])
        np.testing.assert_array_equal(got[~short], want)
    # ~0.1% of seeds run short of candidates at z_dim 100: they come from RandomState, still exact
    _, short = fastseeds._vectorised(seeds.astype(np.uint32), 100)
    assert short.any()
    full = fastseeds.latents(seeds, 100)
    np.testing.assert_array_equal(full[short], np.stack([np.random.RandomState(int(s)).randn(100).astype(np.float32)
                                                         for s in seeds[short]]))


def test_latent_depends_on_its_seed_alone():
    batch = latents_for_seeds([7, 3, 1000], 16)
    np.testing.assert_array_equal(batch[1], latent_for_seed(3, 16))
    big = latents_for_seeds(list(range(5000)), 16)
    np.testing.assert_array_equal(big[3], batch[1])
    assert not np.array_equal(batch[0], batch[1])


def test_seeds_outside_the_range_are_refused():
    with pytest.raises(GankitError, match="outside"):
        latents_for_seeds([1, 2**32], 4)
    with pytest.raises(GankitError, match="outside"):
        latents_for_seeds(list(range(100)) + [-1], 4)


@pytest.fixture
def workers(monkeypatch):
    """Latent worker processes of this test alone: started fresh, stopped after, the module's state restored."""
    from gankit_runtime import latent_workers

    latent_workers.stop()
    monkeypatch.setattr(latent_workers, "_disabled", False)
    monkeypatch.delenv(latent_workers.ENV, raising=False)
    yield latent_workers
    latent_workers.stop()


def test_worker_processes_make_the_recorded_latents(workers):
    pool = workers.start(2)
    assert pool is not None and pool.ready
    pids = [w.process.pid for w in pool.workers]
    # their own session: a Ctrl-C in the terminal reaches the parent, which decides
    assert all(os.getsid(pid) == pid != os.getsid(0) for pid in pids)
    for z_dim in (1, 100, 512):
        batch = [s for s in range(1000, 8000) if s not in GOLDEN_SEEDS] + list(GOLDEN_SEEDS)
        out = np.full((len(batch), z_dim), np.nan, np.float32)
        assert pool.fill(np.array(batch, np.int64), z_dim, out)  # made by the workers, not here
        for k, seed in enumerate(GOLDEN_SEEDS, start=len(batch) - len(GOLDEN_SEEDS)):
            np.testing.assert_array_equal(out[k], GOLDEN[f"seed{seed}_z{z_dim}"])
        np.testing.assert_array_equal(out[:3000], fastseeds.by_reference(batch[:3000], z_dim))
    np.testing.assert_array_equal(latents_for_seeds(range(2000), 3), fastseeds.by_reference(range(2000), 3))
    # Many chunks: two in flight per worker, each in its own slot of the shared buffer
    seeds = np.arange(10**9, 10**9 + 200_000, dtype=np.int64)
    out = np.empty((len(seeds), 100), np.float32)
    assert pool.fill(seeds, 100, out)
    np.testing.assert_array_equal(out, fastseeds.latents(seeds, 100))


def test_a_dead_worker_costs_a_warning_not_a_latent(workers):
    pool = workers.start(2)
    pool.workers[1].process.kill()
    pool.workers[1].process.wait()
    seeds = np.arange(20000, dtype=np.int64)
    with pytest.warns(RuntimeWarning, match="latent worker processes stopped .*ended"):
        got = latents_for_seeds(seeds, 100)
    np.testing.assert_array_equal(got, fastseeds.latents(seeds, 100))
    assert workers._pool is None and workers.start() is None  # not started again in this process
    assert all(w.process.poll() is not None for w in pool.workers)


def test_workers_start_after_many_seeds_and_end_with_their_parent(tmp_path):
    """A process that makes many latents gets workers; killed with SIGKILL, it leaves none behind."""
    script = ("import os, signal, sys, numpy as np\n"
              "from gankit_runtime import latents_for_seeds, latent_workers\n"
              "latents_for_seeds(np.arange(latent_workers.START_AFTER), 8)\n"
              "pool = latent_workers._pool; pool.started.wait(60)\n"
              "print(*[w.process.pid for w in pool.workers], flush=True)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {k: v for k, v in os.environ.items() if k != "GANKIT_LATENT_WORKERS"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == -signal.SIGKILL
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == min(len(os.sched_getaffinity(0)), 4) >= 2
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)


def alive(pid: int) -> bool:
    """Whether a process (not our child: init reaps it) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_number_of_workers_is_checked(workers, monkeypatch):
    monkeypatch.setenv(workers.ENV, "two")
    with pytest.raises(GankitError, match="GANKIT_LATENT_WORKERS must be a number"):
        workers.start()
    monkeypatch.setattr(workers, "_made", 0)
    with pytest.raises(GankitError, match="GANKIT_LATENT_WORKERS must be a number"):
        latents_for_seeds(range(2000), 4)  # said at a job's first latents, not once it has made many
    monkeypatch.setenv(workers.ENV, "0")
    assert workers.start() is None
    monkeypatch.setenv(workers.ENV, "3")
    assert workers.worker_count() == 3


def test_a_forked_child_does_not_talk_to_its_parents_workers(workers):
    """os.fork() after the workers started: the child makes its latents without them (they answer the parent
    alone), and the parent's still work."""
    pool = workers.start(2)
    seeds = np.arange(30000, dtype=np.int64)
    want = fastseeds.latents(seeds, 100)
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 if its latents are right and it did not use the parent's workers
        try:
            ok = workers._pool is None and np.array_equal(latents_for_seeds(seeds[:5000], 100), want[:5000])
        finally:
            os._exit(0 if ok else 1)
    assert child_exit_code(pid) == 0
    out = np.empty_like(want)
    assert workers._pool is pool and pool.fill(seeds, 100, out)
    np.testing.assert_array_equal(out, want)


def test_stopping_workers_while_they_start_is_quiet(workers, monkeypatch):
    """Ctrl-C in a job's first seconds: the process exits (stop() at exit) while the workers are being started
    and checked. Nothing may escape to stderr (the job's one-line message must stay the only one)."""
    import threading

    errors = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    for delay in (0.0, 0.05, 0.1, 0.2):
        pool = workers.start(2, wait=False)
        time.sleep(delay)
        workers.stop()
        assert pool.started.wait(60) and not pool.ready
        assert all(w.process.poll() is not None for w in pool.workers)
    assert errors == []
