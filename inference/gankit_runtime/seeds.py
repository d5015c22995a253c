"""Seeds -> latents. An image depends on its seed and the model alone, never on batch size or device."""

import bisect
import itertools
import re
from collections.abc import Iterator, Sequence

import numpy as np

from .errors import GankitError

MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32)
_TERM = re.compile(r"^(\d+)(?:-(\d+))?$")


class SeedRanges(Sequence):
    """Seeds as consecutive ranges, in the order given: a sequence of ints that costs memory per range,
    not per seed."""

    def __init__(self, ranges: Sequence[range]):
        self.ranges = tuple(r for r in ranges if len(r))
        self._ends = list(itertools.accumulate(len(r) for r in self.ranges))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        r = bisect.bisect_right(self._ends, k)
        return self.ranges[r][k - (self._ends[r - 1] if r else 0)]

    def __iter__(self) -> Iterator[int]:
        return itertools.chain.from_iterable(self.ranges)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return (
            "SeedRanges("
            + ",".join(f"{r.start}-{r.stop - 1}" if len(r) > 1 else str(r.start) for r in self.ranges)
            + ")"
        )


def parse_seeds(text: str) -> SeedRanges:
    """'0-99,200,300-310' -> the seeds 0, 1, ..., 99, 200, 300, ..., 310, in the order written, as lazy
    ranges (`0-4294967295` costs nothing until iterated).

    Ranges are inclusive. Duplicates are an error: they would name the same output file twice.
    """
    ranges: list[range] = []
    for term in str(text).replace(" ", "").split(","):
        m = _TERM.match(term)
        if not m:
            raise GankitError(
                f"bad seeds {text!r}: {term!r} is not N or A-B with non-negative integers (example: 0-99,200,300-310)"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise GankitError(f"bad seeds {text!r}: range {term!r} is empty (end before start)")
        if hi > MAX_SEED:
            raise GankitError(f"bad seeds {text!r}: seeds must be at most {MAX_SEED}")
        ranges.append(range(lo, hi + 1))
    ordered = sorted(ranges, key=lambda r: r.start)
    if any(a.stop > b.start for a, b in zip(ordered, ordered[1:])):
        raise GankitError(f"bad seeds {text!r}: a seed is listed twice")
    return SeedRanges(ranges)


def latent_for_seed(seed: int, z_dim: int) -> np.ndarray:
    """The seed formula: numpy.random.RandomState(seed).randn(z_dim).astype(numpy.float32). RandomState's stream
    is frozen by numpy's compatibility policy (Generator's is not), so a seed gives the same latent on every numpy
    version, as in StyleGAN's generate.py."""
    return latents_for_seeds([seed], z_dim)[0]


def latents_for_seeds(seeds, z_dim: int) -> np.ndarray:
    """float32 [len(seeds), z_dim], row i from seed i alone: the seed formula, bit for bit.

    One RandomState reseeded per seed gives RandomState(seed)'s stream without the cost of building one, and
    needs no code of ours to trust: what a latent costs this way is small beside the generator's run.
    """
    try:
        seeds = np.asarray(seeds).reshape(-1)
        if len(seeds) and seeds.dtype.kind not in "iu":
            raise TypeError
    except (OverflowError, TypeError, ValueError):
        raise GankitError(f"seeds must be integers in [0, {MAX_SEED}]") from None
    seeds = seeds.astype(np.int64)  # a uint64 above 2**63 wraps to negative: refused below
    if len(seeds) and (seeds.min() < 0 or seeds.max() > MAX_SEED):
        raise GankitError(f"seed {seeds[(seeds < 0) | (seeds > MAX_SEED)][0]} is outside [0, {MAX_SEED}]")
    state = np.random.RandomState()
    out = np.empty((len(seeds), z_dim), dtype=np.float32)
    for i, seed in enumerate(seeds.tolist()):
        state.seed(seed)
        out[i] = state.randn(z_dim)  # float64 -> float32 on assignment: the same rounding as astype
    return out
