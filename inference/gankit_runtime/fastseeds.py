"""The seed formula, vectorised across seeds: `RandomState(seed).randn(z_dim).astype(float32)` for many
seeds at once, bit for bit, in numpy alone.

numpy's RandomState(seed) is MT19937 seeded by Knuth's recurrence (init_genrand), and randn is its legacy
polar (Marsaglia) Gaussian over 53-bit doubles made of two 32-bit draws. Building one RandomState per seed
costs ~190 us, which made latents the bottleneck of generation; here each step of the algorithm runs on a
whole chunk of seeds as numpy vector operations instead (the seeds are the vector):

  seeding    623 sequential steps over all seeds
  twist      only as many words as the Gaussians need, in blocks of 227 rows (the recurrence reaches back
             397 words, so 227 rows at a time only read rows already made), then tempering
  Gaussians  every candidate pair at once; for each seed, a chain through "the next accepted candidate"
             picks its first z_dim/2 accepted pairs in order, and only those pay for log and sqrt

Every array lives in a per-thread workspace reused chunk after chunk: allocating its ~45 MB anew for each
chunk cost more in page faults than the arithmetic (measured: 23 ms against 9.5 ms for 4,096 seeds).

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
_ROW_INDEX = [np.uint32(i) for i in range(N)]  # the "+ i" of seeding, made once (a scalar per step costs)
_lock = threading.Lock()
_verified: bool | None = None
_local = threading.local()


class _Workspace:
    """Every array one chunk of `b` seeds needs, with `c` candidate pairs per seed."""

    def __init__(self, b: int, c: int, pairs: int):
        self.b, self.c, self.pairs = b, c, pairs
        self.state = np.empty((N, b), np.uint32)
        self.state_rows = list(self.state)  # row views made once: the seeding loop indexes 623 of them per chunk
        self.spare = np.empty((N, b), np.uint32) if 4 * c > N else None  # the next state, past one twist
        self.t = np.empty(b, np.uint32)
        self.words = np.empty((4 * c, b), np.uint32)
        self.u = np.empty((N - M, b), np.uint32)
        self.v = np.empty((N - M, b), np.uint32)
        self.x = np.empty((c, 2, b), np.float64)  # candidate (x1, x2) of each seed
        self.bits = np.empty((c, 2, b), np.uint32)
        self.r2 = np.empty((c, b), np.float64)
        self.sq = np.empty((c, b), np.float64)
        self.accepted = np.empty((c, b), bool)
        self.nonzero = np.empty((c, b), bool)
        self.next = np.empty((c + 2, b), np.intp)  # next[i]: the first accepted candidate >= i (c: none)
        self.next[c:] = c
        self.next_rows, self.accepted_rows = list(self.next), list(self.accepted)
        self.columns = np.arange(b, dtype=np.intp)
        self.pick = np.empty((pairs, b), np.intp)
        self.pick_rows = list(self.pick)
        self.at = np.empty(b, np.intp)
        self.x1 = np.empty((pairs, b), np.float64)
        self.x2 = np.empty((pairs, b), np.float64)
        self.r = np.empty((pairs, b), np.float64)
        self.f = np.empty((pairs, b), np.float64)
        self.short = np.empty(b, bool)


def _workspace(b: int, c: int, pairs: int) -> _Workspace:
    """This thread's workspace for chunks of b seeds (one per thread: its chunks share a size)."""
    ws = getattr(_local, "workspace", None)
    if ws is None or (ws.b, ws.c) != (b, c):
        _local.workspace = None  # let the old one go before making the new one
        ws = _local.workspace = _Workspace(b, c, pairs)
    return ws


def _seed(ws: _Workspace, seeds: np.ndarray) -> None:
    """init_genrand for every seed: row i of ws.state = word i of each seed's state."""
    rows, t = ws.state_rows, ws.t
    rows[0][...] = seeds
    mult, thirty = np.uint32(1812433253), np.uint32(30)
    right_shift, xor, multiply, add = np.right_shift, np.bitwise_xor, np.multiply, np.add
    prev = rows[0]
    for i in range(1, N):  # positional outputs and ready-made rows and constants: 24% faster than keywords
        row = rows[i]
        right_shift(prev, thirty, t)
        xor(t, prev, t)
        multiply(t, mult, t)  # uint32 arithmetic wraps modulo 2^32, as the C code's & 0xffffffff
        add(t, _ROW_INDEX[i], row)
        prev = row


def _twist(ws: _Workspace, old: np.ndarray, new: np.ndarray, rows: int) -> None:
    """The first `rows` words of the state after `old` (untempered) into new[:rows]."""
    one = np.uint32(1)
    start, end = 0, min(rows, N - 1)
    while start < end:
        # Word i needs old[i] (upper bit), old[i + 1] (lower bits) and word i + M: the old one while
        # i + M < N, else the new word i + M - N. Blocks of N - M = 227 rows never straddle that line.
        stop = min(end, start + (N - M))
        y, v = ws.u[:stop - start], ws.v[:stop - start]
        np.bitwise_and(old[start:stop], UPPER, out=y)
        np.bitwise_and(old[start + 1:stop + 1], LOWER, out=v)
        np.bitwise_or(y, v, out=y)
        far = old[start + M:stop + M] if stop + M <= N else new[start + M - N:stop + M - N]
        dst = new[start:stop]
        np.right_shift(y, one, out=v)
        np.bitwise_xor(far, v, out=dst)
        np.bitwise_and(y, one, out=y)  # odd y: xor MATRIX_A, as the mask -(y & 1) & MATRIX_A
        np.negative(y, out=y)
        np.bitwise_and(y, MATRIX_A, out=y)
        np.bitwise_xor(dst, y, out=dst)
        start = stop
    if rows == N:  # the last word wraps around to the new first word
        y = (old[N - 1] & UPPER) | (new[0] & LOWER)
        new[N - 1] = new[M - 1] ^ (y >> one) ^ ((y & one) * MATRIX_A)


def _temper(ws: _Workspace, src: np.ndarray, dst: np.ndarray) -> None:
    """MT19937's output tempering of src into dst (they may be the same array), 227 rows at a time."""
    for start in range(0, len(src), N - M):
        s, d = src[start:start + N - M], dst[start:start + N - M]
        v = ws.v[:len(s)]
        np.right_shift(s, np.uint32(11), out=v)
        np.bitwise_xor(s, v, out=d)
        np.left_shift(d, np.uint32(7), out=v)
        np.bitwise_and(v, np.uint32(0x9D2C5680), out=v)
        np.bitwise_xor(d, v, out=d)
        np.left_shift(d, np.uint32(15), out=v)
        np.bitwise_and(v, np.uint32(0xEFC60000), out=v)
        np.bitwise_xor(d, v, out=d)
        np.right_shift(d, np.uint32(18), out=v)
        np.bitwise_xor(d, v, out=d)


def _words(ws: _Workspace) -> None:
    """ws.words = the first 4c 32-bit outputs of each seeded state, past as many twists as that takes."""
    total, made, state = len(ws.words), 0, ws.state
    while True:
        rows = min(N, total - made)
        if made + rows == total:  # the last twist: straight into the output rows, tempered in place
            dst = ws.words[made:]
            _twist(ws, state, dst, rows)
            _temper(ws, dst, dst)
            return
        nxt = ws.spare if state is ws.state else ws.state
        _twist(ws, state, nxt, N)
        _temper(ws, nxt, ws.words[made:made + N])
        state, made = nxt, made + N


def _candidates(pairs: int) -> int:
    """Candidate pairs to draw per seed: `pairs` successes at rate pi/4 take a negative binomial number of
    tries; its mean plus 3 standard deviations leaves ~0.1% of seeds short, which RandomState then makes
    (~3 us each), cheaper on average than drawing more candidates for every seed."""
    p = np.pi / 4
    return int(pairs / p + 3 * np.sqrt(pairs * (1 - p)) / p) + 2


def _gaussians(ws: _Workspace, out: np.ndarray) -> None:
    """out [n <= B, z_dim] = the first n seeds' Gaussians from ws.words; ws.short marks the seeds that ran out
    of candidates (their rows are garbage: RandomState makes them)."""
    pairs, c, b = ws.pairs, ws.c, ws.b
    words = ws.words.reshape(c, 4, b)
    x, bits = ws.x, ws.bits
    # legacy_double: ((a >> 5) * 2^26 + (b >> 6)) / 2^53; the candidate is 2 * double - 1 (exact steps)
    np.right_shift(words[:, 0::2], np.uint32(5), out=bits)
    np.multiply(bits, 67108864.0, out=x)
    np.right_shift(words[:, 1::2], np.uint32(6), out=bits)
    np.add(x, bits, out=x)
    np.multiply(x, 2.0 ** -52, out=x)
    np.subtract(x, 1.0, out=x)
    r2, sq, accepted = ws.r2, ws.sq, ws.accepted
    np.multiply(x[:, 0], x[:, 0], out=r2)
    np.multiply(x[:, 1], x[:, 1], out=sq)
    np.add(r2, sq, out=r2)
    np.less(r2, 1.0, out=accepted)
    np.not_equal(r2, 0.0, out=ws.nonzero)
    np.logical_and(accepted, ws.nonzero, out=accepted)
    nxt, next_rows, accepted_rows, copyto = ws.next, ws.next_rows, ws.accepted_rows, np.copyto
    for i in range(c - 1, -1, -1):
        copyto(next_rows[i], next_rows[i + 1])
        copyto(next_rows[i], i, where=accepted_rows[i])
    # pick[j]: the candidate of each seed's pair j = the next accepted one after pair j - 1's
    flat_next, columns, pick, pick_rows, at = nxt.reshape(-1), ws.columns, ws.pick, ws.pick_rows, ws.at
    width = np.intp(b)
    pick_rows[0][...] = next_rows[0]
    for j in range(1, pairs):
        np.multiply(pick_rows[j - 1], width, at)
        np.add(at, width, at)
        np.add(at, columns, at)
        np.take(flat_next, at, None, pick_rows[j], "clip")  # in bounds by construction; "clip" skips a buffer
    np.greater_equal(pick[-1], c, out=ws.short)
    np.minimum(pick, c - 1, out=pick)  # short seeds: any candidate, to keep the gathers in bounds
    pick *= 2 * b
    pick += columns
    flat_x = x.reshape(-1)
    x1, x2, r, f = ws.x1, ws.x2, ws.r, ws.f
    np.take(flat_x, pick, None, x1, "clip")
    pick += b
    np.take(flat_x, pick, None, x2, "clip")
    np.multiply(x1, x1, out=r)  # the same operations as r2: the same bits
    np.multiply(x2, x2, out=f)
    np.add(r, f, out=r)
    with np.errstate(invalid="ignore", divide="ignore"):  # short seeds' stand-in candidates
        np.log(r, out=f)
        f *= -2.0
        f /= r
        np.sqrt(f, out=f)
    # legacy_gauss returns f * x2 first and keeps f * x1 for its next call (dropped after an odd z_dim)
    x2 *= f
    x1 *= f
    n, z_dim = out.shape
    out[:, 0::2] = x2[:(z_dim + 1) // 2, :n].T  # float64 -> float32: the rounding of astype(float32)
    out[:, 1::2] = x1[:z_dim // 2, :n].T


def _vectorised(seeds: np.ndarray, z_dim: int, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [B, z_dim], bool [B] of seeds that ran out of candidates and need RandomState)."""
    pairs, n = (z_dim + 1) // 2, len(seeds)
    # Chunks are made in sizes of multiples of 512 (a short last chunk padded with copies of its first seed),
    # so a thread's workspace fits every chunk of a job instead of being made anew for the last one.
    b = -(-max(n, 1) // 512) * 512
    ws = _workspace(b, _candidates(pairs), pairs)
    padded = np.full(b, seeds[0] if n else 0, np.uint32)
    padded[:n] = seeds
    _seed(ws, padded)
    _words(ws)
    if out is None:
        out = np.empty((n, z_dim), np.float32)
    _gaussians(ws, out)
    return out, ws.short[:n].copy()


CHUNK = 4096  # seeds per vector pass at z_dim <= 128 (measured 2048-8192: 4096 fastest, alone and with 2 threads)


def chunk_size(z_dim: int) -> int:
    """Seeds per vector pass: CHUNK, fewer for wide latents, to keep a workspace near 45 MB."""
    return CHUNK if z_dim <= 128 else max(256, CHUNK * 128 // z_dim // 256 * 256)


_pool = None


def latents(seeds, z_dim: int, threads: int | None = None) -> np.ndarray:
    """float32 [len(seeds), z_dim]: row i is RandomState(seeds[i]).randn(z_dim).astype(float32).

    threads: chunks run in this many threads (numpy releases the GIL in its loops), 2 by default. Each
    keeps a workspace of ~45 MB (z_dim 100) for the next call."""
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    if not verified():
        return by_reference(seeds, z_dim)
    out = np.empty((len(seeds), z_dim), dtype=np.float32)
    size = chunk_size(z_dim)
    starts = range(0, len(seeds), size)

    def chunk(start: int) -> None:
        part, dst = seeds[start:start + size], out[start:start + size]
        _, short = _vectorised(part.astype(np.uint32), z_dim, out=dst)
        if short.any():
            dst[short] = by_reference(part[short], z_dim)

    # Always in the pool, even one chunk: the workspaces (~45 MB each) then live in its threads alone.
    for _ in _thread_pool(threads or 2).map(chunk, starts):
        pass
    return out


def _thread_pool(threads: int):
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers != threads:
            from concurrent.futures import ThreadPoolExecutor

            if _pool is not None:
                _pool.shutdown(wait=False)  # its threads end, and their workspaces with them
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
