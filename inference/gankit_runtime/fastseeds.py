"""The seed formula, vectorised across seeds: `RandomState(seed).randn(z_dim).astype(float32)` for many
seeds at once, bit for bit, in numpy alone (one RandomState per seed is slow enough to be the bottleneck of
generation).

RandomState(seed) is MT19937 seeded by Knuth's recurrence, and randn its legacy polar (Marsaglia) Gaussian over
53-bit doubles. Here each step runs on a whole chunk of seeds as numpy vector operations (the seeds are the
vector): seeding on chunks of CHUNK seeds, then twist, tempering and Gaussians on sub-blocks of SUB seeds that stay
in the core's cache, in a per-thread workspace reused chunk after chunk. A seed whose candidates run out (rare)
is made by RandomState itself; values near a float32 rounding boundary are settled with the C library's log; and
the whole is checked against RandomState once per process (VERIFY_SEEDS): where they differ, RandomState makes
every seed, so the formula is never broken, only slower. docs/design.md ("The seed formula") has the details.
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
    """Every array one chunk of `b` seeds needs (`c` candidate pairs per seed). Seeding runs on the whole
    chunk (623 steps: the wider the vectors, the less each numpy call costs a seed); everything after it runs
    on sub-blocks of SUB seeds, whose arrays stay in the core's cache (~3 MB)."""

    def __init__(self, b: int, c: int, pairs: int):
        sub = min(SUB, b)
        self.b, self.sub, self.c, self.pairs = b, sub, c, pairs
        self.state = np.empty((N, b), np.uint32)
        self.state_rows = list(self.state)  # row views made once: the seeding loop indexes 623 of them per chunk
        self.t = np.empty(b, np.uint32)
        self.words = np.empty((4 * c, sub), np.uint32)  # untempered outputs: words k reads word k - 227
        self.y, self.v, self.tempered = (np.empty((ROWS, sub), np.uint32) for _ in range(3))
        self.bits = np.empty((ROWS // 4, 2, sub), np.uint32)
        self.x = np.empty((c, 2, sub), np.float64)  # candidate (x1, x2) of each seed
        self.sq = np.empty((ROWS // 4, sub), np.float64)
        self.r2 = np.empty((c, sub), np.float64)
        self.accepted = np.empty((c, sub), bool)
        self.by_seed = np.empty((sub, c), bool)  # accepted, seed-major: each seed's candidates in a row
        self.counts, self.starts = np.empty(sub, np.intp), np.empty(sub, np.intp)
        self.js = np.arange(pairs, dtype=np.intp)
        self.at = np.empty((sub, pairs), np.intp)
        # (s * c + i) -> (i * 2 * sub + s): flat position in by_seed -> flat position of x1 in x
        self.seed_offset = (np.arange(sub, dtype=np.intp) * (2 * sub * c - 1))[:, None]
        self.x1, self.x2, self.r, self.f = (np.empty((sub, pairs), np.float64) for _ in range(4))
        self.z = np.empty((sub, pairs, 2), np.float64)  # (f * x2, f * x1): legacy_gauss's order
        self.short = np.empty(b, bool)
        self.twist_blocks = _twist_blocks(4 * c)


SUB = 512  # seeds per sub-block after seeding (measured 256-1024 at z_dim 100: 512 fastest)
ROWS = 112  # words per twist block: a multiple of 4 (a candidate pair's words), at most N - M


def _twist_blocks(words: int) -> list[tuple[int, int]]:
    """Blocks [s, e) of output words, each at most ROWS long, none straddling the words where the
    recurrence's operands move from the seeded state to the words already made (k = 227, 623, 624)."""
    blocks, s = [], 0
    while s < words:
        e = min(words, s + ROWS)
        for edge in (N - M, N - 1, N):
            if s < edge < e:
                e = edge
        blocks.append((s, e))
        s = e
    return blocks


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


def _twist(ws: _Workspace, state: np.ndarray) -> None:
    """ws.words = the untempered outputs of the seeded `state` (one sub-block's columns), past as many twists
    as the words take. As one sequence S (the state's 624 words, then the outputs), output k is
    S[624 + k] = f(S[k], S[k + 1], S[k + 397]): upper bit of the first, lower bits of the second, xor the third."""
    words, one = ws.words, np.uint32(1)

    def rows(a: int, e: int) -> np.ndarray:  # S[a:e], in one of the two arrays (blocks never straddle)
        return state[a:e] if e <= N else words[a - N:e - N]

    for s, e in ws.twist_blocks:
        y, v, dst = ws.y[:e - s], ws.v[:e - s], words[s:e]
        np.bitwise_and(rows(s, e), UPPER, y)
        np.bitwise_and(rows(s + 1, e + 1), LOWER, v)
        np.bitwise_or(y, v, y)
        np.right_shift(y, one, v)
        np.bitwise_xor(rows(s + M, e + M), v, dst)
        np.bitwise_and(y, one, y)  # odd y: xor MATRIX_A, as the mask -(y & 1) & MATRIX_A
        np.negative(y, y)
        np.bitwise_and(y, MATRIX_A, y)
        np.bitwise_xor(dst, y, dst)


def _candidates_from_words(ws: _Workspace) -> None:
    """Temper the words, ROWS at a time, into candidate pairs: ws.x, their r2 and whether each is accepted."""
    x, r2, accepted = ws.x, ws.r2, ws.accepted
    for s in range(0, len(ws.words), ROWS):
        src = ws.words[s:s + ROWS]
        k = len(src)
        t, v = ws.tempered[:k], ws.v[:k]
        np.right_shift(src, np.uint32(11), v)  # MT19937's tempering
        np.bitwise_xor(src, v, t)
        np.left_shift(t, np.uint32(7), v)
        np.bitwise_and(v, np.uint32(0x9D2C5680), v)
        np.bitwise_xor(t, v, t)
        np.left_shift(t, np.uint32(15), v)
        np.bitwise_and(v, np.uint32(0xEFC60000), v)
        np.bitwise_xor(t, v, t)
        np.right_shift(t, np.uint32(18), v)
        np.bitwise_xor(t, v, t)
        # legacy_double: ((a >> 5) * 2^26 + (b >> 6)) / 2^53; the candidate is 2 * double - 1 (exact steps)
        q = k // 4
        w, bits, xs = t.reshape(q, 4, ws.sub), ws.bits[:q], x[s // 4:s // 4 + q]
        np.right_shift(w[:, 0::2], np.uint32(5), bits)
        np.multiply(bits, 67108864.0, xs)
        np.right_shift(w[:, 1::2], np.uint32(6), bits)
        np.add(xs, bits, xs)
        np.multiply(xs, 2.0 ** -52, xs)
        np.subtract(xs, 1.0, xs)
        rs, sq = r2[s // 4:s // 4 + q], ws.sq[:q]
        np.multiply(xs[:, 0], xs[:, 0], rs)
        np.multiply(xs[:, 1], xs[:, 1], sq)
        np.add(rs, sq, rs)
        np.less(rs, 1.0, accepted[s // 4:s // 4 + q])
    np.not_equal(r2, 0.0, ws.by_seed.T)  # r2 == 0 is rejected too (scratch: by_seed is filled below)
    np.logical_and(accepted, ws.by_seed.T, accepted)


def _candidates(pairs: int) -> int:
    """Candidate pairs to draw per seed: `pairs` successes at rate pi/4 take a negative binomial number of
    tries; its mean plus 3 standard deviations leaves ~0.1% of seeds short, which RandomState then makes
    (~3 us each), cheaper on average than drawing more candidates for every seed."""
    p = np.pi / 4
    return int(pairs / p + 3 * np.sqrt(pairs * (1 - p)) / p) + 2


def _gaussians(ws: _Workspace, out: np.ndarray, short: np.ndarray) -> None:
    """out [n <= sub, z_dim] = the Gaussians of a sub-block's first n seeds from its candidates; short marks the
    seeds that ran out of accepted candidates (their rows are garbage: RandomState makes them)."""
    pairs, c, sub = ws.pairs, ws.c, ws.sub
    by_seed, counts, starts, at = ws.by_seed, ws.counts, ws.starts, ws.at
    np.copyto(by_seed, ws.accepted.T)
    # Each seed's accepted candidates in order: their flat positions in by_seed, seed after seed. Seed s's
    # pair j is the (starts[s] + j)-th of them.
    accepted_at = np.flatnonzero(by_seed)
    np.add.reduce(by_seed, axis=1, dtype=np.intp, out=counts)
    np.cumsum(counts, out=starts)
    np.subtract(starts, counts, starts)
    np.less(counts, pairs, short)
    np.add(starts[:, None], ws.js, at)
    np.take(accepted_at, at, None, at, "clip")  # short seeds: a neighbour's candidates, in bounds
    np.multiply(at, 2 * sub, at)
    np.subtract(at, ws.seed_offset, at)  # -> flat positions of x1 in x; x2 is sub further
    x1, x2, r, f, flat_x = ws.x1, ws.x2, ws.r, ws.f, ws.x.reshape(-1)
    np.take(flat_x, at, None, x1, "clip")  # in bounds by construction; "clip" skips a buffer
    at += sub
    np.take(flat_x, at, None, x2, "clip")
    np.multiply(x1, x1, r)  # the same operations as r2: the same bits
    np.multiply(x2, x2, f)
    np.add(r, f, r)
    with np.errstate(invalid="ignore", divide="ignore"):  # short seeds' stand-in candidates
        np.log(r, f)
        f *= -2.0
        f /= r
        np.sqrt(f, f)
    # legacy_gauss returns f * x2 first and keeps f * x1 for its next call (dropped after an odd z_dim)
    z = ws.z
    np.multiply(x2, f, z[:, :, 0])
    np.multiply(x1, f, z[:, :, 1])
    settle_near_boundaries(z, x1, x2, r)
    n, z_dim = out.shape
    np.copyto(out, z.reshape(sub, 2 * pairs)[:n, :z_dim], casting="same_kind")  # the rounding of astype(float32)


NEAR = 64  # float64 ulps: how close to a float32 rounding boundary a value must be for its log to matter


def near_boundary(v: np.ndarray) -> np.ndarray:
    """Where float64 `v` lies within NEAR ulps of a float32 rounding boundary (the midpoint between two float32s:
    the 29 mantissa bits that float32 drops are 1 followed by zeros), or is too small for a normal float32. Only
    there can a log that differs by an ulp (numpy's SIMD log, the C library's, JavaScript's Math.log) change the
    float32 a Gaussian rounds to."""
    dropped = (v.view(np.uint64) & np.uint64(0x1FFFFFFF)).astype(np.int64)
    return (np.abs(dropped - (1 << 28)) <= NEAR) | (np.abs(v) < 2.0 ** -126)


def settle_near_boundaries(z: np.ndarray, x1: np.ndarray, x2: np.ndarray, r2: np.ndarray) -> int:
    """Recompute, with the C library's log (math.log: what numpy's RandomState calls), each Gaussian of z
    [..., 2] (f * x2, f * x1 of the candidate pairs x1, x2 with radius r2) that lies near a float32 rounding
    boundary; elsewhere numpy's own log gives the same float32. Returns how many were recomputed."""
    import math

    near = near_boundary(z)
    if not near.any():
        return 0
    count = 0
    for *at, k in zip(*np.nonzero(near)):
        radius = float(r2[tuple(at)])
        if not 0.0 < radius < 1.0:  # a short seed's stand-in candidate: RandomState remakes that row
            continue
        f = math.sqrt(-2.0 * math.log(radius) / radius)  # legacy_gauss's expression, operation for operation
        z[(*at, k)] = float((x2 if k == 0 else x1)[tuple(at)]) * f
        count += 1
    return count


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
    if out is None:
        out = np.empty((n, z_dim), np.float32)
    for s in range(0, n, ws.sub):
        _twist(ws, ws.state[:, s:s + ws.sub])
        _candidates_from_words(ws)
        _gaussians(ws, out[s:s + ws.sub], ws.short[s:s + ws.sub])
    return out, ws.short[:n].copy()


CHUNK = 8192  # seeds per vector pass at z_dim <= 128 (measured 4096-16384: 8192 fastest)


def chunk_size(z_dim: int) -> int:
    """Seeds per vector pass: CHUNK, fewer for wide latents, so that a chunk's workspace stays bounded."""
    return CHUNK if z_dim <= 128 else max(256, CHUNK * 128 // z_dim // 256 * 256)


def latents(seeds, z_dim: int, out: np.ndarray | None = None) -> np.ndarray:
    """float32 [len(seeds), z_dim]: row i is RandomState(seeds[i]).randn(z_dim).astype(float32), into `out`
    when given. Runs in the calling thread, chunk by chunk, in that thread's workspace (kept for its next
    call: allocating it anew each time costs more in page faults than the arithmetic)."""
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    if out is None:
        out = np.empty((len(seeds), z_dim), dtype=np.float32)
    size = chunk_size(z_dim)
    for a in range(0, len(seeds), size):
        fill(seeds[a:a + size], z_dim, out[a:a + size])
    return out


def fill(seeds: np.ndarray, z_dim: int, out: np.ndarray) -> None:
    """out [len(seeds), z_dim] = the latents of one chunk of seeds (int64), in this thread."""
    if not verified():
        out[...] = by_reference(seeds, z_dim)
        return
    _, short = _vectorised(seeds.astype(np.uint32), z_dim, out=out)
    if short.any():
        out[short] = by_reference(seeds[short], z_dim)


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
