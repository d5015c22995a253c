"""The seed formula, vectorised across seeds: `RandomState(seed).randn(z_dim).astype(float32)` for many
seeds at once, bit for bit, in numpy alone.

numpy's RandomState(seed) is MT19937 seeded by Knuth's recurrence (init_genrand), and randn is its legacy
polar (Marsaglia) Gaussian over 53-bit doubles made of two 32-bit draws. Building one RandomState per seed
costs ~190 us, which made latents the bottleneck of generation; here each step of the algorithm runs on a
whole batch of seeds as numpy vector operations instead:

  seeding    624 sequential steps, each one vector operation over all seeds (the seeds are the vector)
  twist      only as many words as the Gaussians need, in blocks of 227 rows (the recurrence reaches back
             397 words, so 227 rows at a time only read rows already made)
  Gaussians  all candidate pairs at once; each seed keeps its first z_dim/2 accepted pairs, in order

A seed whose candidates run out (rare: more rejections than the words made) is computed by RandomState
itself. The result is checked against RandomState once per process on a sample of seeds (VERIFY_SEEDS);
a platform where they differ (say a numpy whose log differs from the C library's in the last bit) falls back
to RandomState for every seed, so the formula is never broken, only slower.
"""

from __future__ import annotations

import threading

import numpy as np

N, M = 624, 397
MATRIX_A = np.uint32(0x9908B0DF)
UPPER, LOWER = np.uint32(0x80000000), np.uint32(0x7FFFFFFF)
VERIFY_SEEDS = (0, 1, 2, 42, 1234, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1, 987654321)
_lock = threading.Lock()
_verified: bool | None = None


def _seed_states(seeds: np.ndarray) -> np.ndarray:
    """init_genrand for every seed: uint32 [624, B], row i = word i of each seed's state."""
    b = seeds.shape[0]
    mt = np.empty((N, b), dtype=np.uint32)
    mt[0] = seeds
    t = np.empty(b, dtype=np.uint32)
    mult = np.uint32(1812433253)
    for i in range(1, N):
        np.right_shift(mt[i - 1], 30, out=t)
        np.bitwise_xor(t, mt[i - 1], out=t)
        np.multiply(t, mult, out=t)  # uint32 arithmetic wraps modulo 2^32, as the C code's & 0xffffffff
        np.add(t, np.uint32(i), out=mt[i])
    return mt


def _twist_rows(old: np.ndarray, rows: int) -> np.ndarray:
    """The first `rows` words of the next MT19937 state (of every seed), from the whole current one."""
    new = np.empty((rows, old.shape[1]), dtype=np.uint32)
    start, end = 0, min(rows, N - 1)
    while start < end:
        # Word i needs old[i] (upper bit), old[i + 1] (lower bits) and word i + M: the old one while
        # i + M < N, else the new word i + M - N. Blocks of N - M = 227 rows never straddle that line.
        stop = min(end, start + (N - M))
        y = (old[start:stop] & UPPER) | (old[start + 1:stop + 1] & LOWER)
        far = old[start + M:stop + M] if stop + M <= N else new[start + M - N:stop + M - N]
        new[start:stop] = far ^ (y >> np.uint32(1)) ^ ((y & np.uint32(1)) * MATRIX_A)
        start = stop
    if rows == N:  # the last word wraps around to the new first word
        y = (old[N - 1] & UPPER) | (new[0] & LOWER)
        new[N - 1] = new[M - 1] ^ (y >> np.uint32(1)) ^ ((y & np.uint32(1)) * MATRIX_A)
    return new


def _temper(y: np.ndarray) -> np.ndarray:
    y = y ^ (y >> np.uint32(11))
    y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
    y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
    y ^= y >> np.uint32(18)
    return y


def _words(state: np.ndarray, count: int) -> np.ndarray:
    """The first `count` 32-bit outputs of each seeded state uint32 [624, B]: uint32 [count, B]."""
    out = []
    made = 0
    while made < count:
        rows = min(N, count - made)
        nxt = _twist_rows(state, N if count - made > N else rows)
        out.append(_temper(nxt[:rows]))
        made += rows
        if made < count:
            state = nxt
    return out[0] if len(out) == 1 else np.concatenate(out)


def _candidates(pairs: int) -> int:
    """Candidate pairs to draw per seed: `pairs` successes at rate pi/4 take a negative binomial number of
    tries; its mean plus 3 standard deviations leaves ~0.1% of seeds short, which RandomState then makes
    (~9 us each), cheaper on average than drawing more candidates for every seed."""
    p = np.pi / 4
    return int(pairs / p + 3 * np.sqrt(pairs * (1 - p)) / p) + 2


def _gaussians(state: np.ndarray, z_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """From seeded states uint32 [624, B]: (float32 [B, z_dim], bool [B] of seeds that ran out of candidates
    and need RandomState)."""
    pairs = (z_dim + 1) // 2
    c = _candidates(pairs)
    b_count = state.shape[1]
    w = _words(state, 4 * c).reshape(c, 4, b_count)
    # legacy_double: ((a >> 5) * 2^26 + (b >> 6)) / 2^53; the candidate is x = 2 * double - 1 (exact steps)
    x = (w[:, 0::2] >> np.uint32(5)).astype(np.float64)  # [c, 2, B]: x1, x2 of each candidate
    x *= 67108864.0
    x += w[:, 1::2] >> np.uint32(6)
    x /= 9007199254740992.0
    x *= 2.0
    x -= 1.0
    r2 = x[:, 0] * x[:, 0]
    r2 += x[:, 1] * x[:, 1]
    accepted = (r2 < 1.0) & (r2 != 0.0)
    # Each seed keeps its first `pairs` accepted candidates: their positions, seed by seed in draw order.
    positions = np.flatnonzero(accepted.T)  # s * c + candidate
    counts = accepted.sum(axis=0)
    short = counts < pairs
    first = np.cumsum(counts) - counts
    pick = (first[~short, None] + np.arange(pairs)).reshape(-1)
    s_idx, c_idx = np.divmod(positions[pick], c)
    r = np.take(r2.reshape(-1), c_idx * b_count + s_idx)
    f = np.log(r)
    f *= -2.0
    f /= r
    np.sqrt(f, out=f)
    # legacy_gauss returns f * x2 first and keeps f * x1 for its next call
    at = np.empty((len(s_idx), 2), dtype=np.int64)
    at[:, 1] = c_idx * (2 * b_count) + s_idx
    at[:, 0] = at[:, 1] + b_count
    n_ok = b_count - int(short.sum())
    gauss = np.empty((n_ok, 2 * pairs), dtype=np.float32)
    np.multiply(np.take(x.reshape(-1), at.reshape(-1)).reshape(n_ok, 2 * pairs),
                np.repeat(f, 2).reshape(n_ok, 2 * pairs), out=gauss, casting="unsafe")
    out = np.empty((b_count, z_dim), dtype=np.float32)
    out[~short] = gauss[:, :z_dim]
    return out, short


def _vectorised(seeds: np.ndarray, z_dim: int) -> tuple[np.ndarray, np.ndarray]:
    return _gaussians(_seed_states(seeds), z_dim)


CHUNK = 4096  # seeds per vector pass (measured: 1024-8192; 4096 with 2 threads was fastest, 535k seeds/s)
_pool = None


def latents(seeds, z_dim: int, threads: int | None = None) -> np.ndarray:
    """float32 [len(seeds), z_dim]: row i is RandomState(seeds[i]).randn(z_dim).astype(float32).

    threads: chunks of CHUNK seeds run in this many threads (numpy releases the GIL in its loops);
    default: up to 2, when there are at least two chunks."""
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    if not verified():
        return by_reference(seeds, z_dim)
    out = np.empty((len(seeds), z_dim), dtype=np.float32)
    starts = range(0, len(seeds), CHUNK)

    def chunk(start: int) -> None:
        part = seeds[start:start + CHUNK]
        got, short = _vectorised(part.astype(np.uint32), z_dim)
        if short.any():
            got[short] = by_reference(part[short], z_dim)
        out[start:start + len(part)] = got

    threads = min(threads or 2, len(starts))
    if threads <= 1:
        for start in starts:
            chunk(start)
    else:
        for _ in _thread_pool(threads).map(chunk, starts):
            pass
    return out


def _thread_pool(threads: int):
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers != threads:
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gankit-latents")
        return _pool


def by_reference(seeds, z_dim: int) -> np.ndarray:
    """The formula computed by numpy itself, seed by seed: one RandomState reseeded per seed gives
    RandomState(seed)'s stream without building one (~3-9 us a seed). The fallback, and for few seeds."""
    state = np.random.RandomState()
    out = np.empty((len(seeds), z_dim), dtype=np.float32)
    for i, s in enumerate(seeds):
        state.seed(int(s))
        out[i] = state.randn(z_dim)  # float64 -> float32 on assignment: the same rounding as astype
    return out


def verified() -> bool:
    """Whether the vectorised formula equals RandomState's on this platform (checked once per process)."""
    global _verified
    if _verified is None:
        with _lock:
            if _verified is None:
                seeds = np.array(VERIFY_SEEDS + tuple(range(100, 164)), dtype=np.int64)
                ok = True
                for z_dim in (1, 7, 100, 512):
                    got, short = _vectorised(seeds.astype(np.uint32), z_dim)
                    want = by_reference(seeds, z_dim)
                    ok &= bool(np.array_equal(got[~short], want[~short]))
                _verified = ok
    return _verified
