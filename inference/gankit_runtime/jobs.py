"""What to generate: a Job is a list of (seed, label) pairs in a fixed order, and a shard of it.

An image depends on its seed, its label and the truncation alone, so a job can be cut into shards
(`--shard i/n`) that run anywhere, in any order, and together give exactly the single run's files.
Jobs are lazy: `--seeds 0-4294967295` is a few ranges, never a list of four billion numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from .errors import GankitError
from .generator import Generator, check_truncation
from .seeds import MAX_SEED, SeedRanges, parse_seeds

_SHARD = re.compile(r"^(\d{1,20})/(\d{1,20})$")
MAX_SHARDS = 2**32  # more shards than seeds of a class can never all hold an image


def as_seed_sequence(seeds) -> Sequence[int]:
    """A range or SeedRanges stays lazy; anything else becomes a tuple of ints. A seed listed twice is an error:
    it would name one output file twice."""
    if isinstance(seeds, range):
        seeds = SeedRanges([seeds])
    if isinstance(seeds, SeedRanges):
        spans = sorted((min(r[0], r[-1]), max(r[0], r[-1])) for r in seeds.ranges)
        twice = any(a[1] >= b[0] for a, b in zip(spans, spans[1:]))
    else:
        seeds = tuple(int(s) for s in seeds)
        twice = len(set(seeds)) != len(seeds)
    if twice:
        raise GankitError("a seed is listed twice: each seed names one image")
    return seeds


class _Column(Sequence):
    """job.seeds or job.labels: one field of the job's (seed, label) pairs, read lazily."""

    def __init__(self, job: Job, field: int):
        self.job, self.field = job, field

    def __len__(self) -> int:
        return len(self.job)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return tuple(self[i] for i in range(*k.indices(len(self))))
        return self.job.item(k)[self.field]

    def __iter__(self):
        return (pair[self.field] for pair in self.job)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(a == b for a, b in zip(self, other))


@dataclass(frozen=True)
class Job:
    """Every seed of `seeds` in each class of `classes` (class by class), or the seeds alone for an
    unconditional generator (classes None); `part` (i, n) keeps every n-th pair from the i-th on."""

    per_class_seeds: Sequence[int]
    classes: tuple[int, ...] | None
    truncation: float = 1.0
    part: tuple[int, int] = (0, 1)

    def __post_init__(self):
        check_truncation(self.truncation)

    @property
    def total(self) -> int:
        """Pairs in the whole job (all shards)."""
        return len(self.per_class_seeds) * (len(self.classes) if self.classes is not None else 1)

    def __len__(self) -> int:
        i, n = self.part
        return max(0, (self.total - i + n - 1) // n)

    def item(self, k: int) -> tuple[int, int | None]:
        """The k-th (seed, label) pair of this job (or shard)."""
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        i, n = self.part
        c, j = divmod(i + k * n, len(self.per_class_seeds))
        return self.per_class_seeds[j], None if self.classes is None else self.classes[c]

    def __iter__(self) -> Iterator[tuple[int, int | None]]:
        classes = self.classes if self.classes is not None else (None,)
        if self.part == (0, 1):
            return ((s, c) for c in classes for s in self.per_class_seeds)
        return (self.item(k) for k in range(len(self)))  # a shard starts at its own first pair, at once

    @property
    def seeds(self) -> Sequence[int]:
        return _Column(self, 0)

    @property
    def labels(self) -> Sequence[int] | None:
        return None if self.classes is None else _Column(self, 1)

    @property
    def whole(self) -> Job:
        return replace(self, part=(0, 1))

    def shard(self, index: int, count: int) -> Job:
        """Every count-th pair from `index` on: shards are disjoint, cover the job and mix its classes."""
        if self.part != (0, 1):
            raise GankitError("a shard cannot be cut into shards again")
        if not 0 <= index < count:
            raise GankitError(f"bad shard {index}/{count}: need 0 <= i < n")
        return replace(self, part=(index, count))


def plan(generator: Generator, seeds, classes: Sequence[int] | None = None, truncation: float = 1.0) -> Job:
    """The job for `seeds`: for a conditional generator, every seed in each of `classes` (default: all of
    them), class by class; for an unconditional one, the seeds as given."""
    seeds = as_seed_sequence(seeds)
    if not generator.conditional:
        if classes is not None:
            raise GankitError(
                f"{generator.info.path} is unconditional: --classes, --class and --per-class "
                "need a class-conditional generator (train one with --conditional)"
            )
        return Job(seeds, None, truncation)
    classes = tuple(range(len(generator.classes))) if classes is None else tuple(int(c) for c in classes)
    if not classes:
        raise GankitError("no classes chosen")
    if len(set(classes)) != len(classes):
        raise GankitError("a class is listed twice")
    return Job(seeds, classes, truncation)


DEFAULT_SEEDS = "0-63"


def job_for(
    generator: Generator,
    seeds: str | Sequence[int] | None = None,
    per_class: int | None = None,
    classes: str | Sequence[str | int] | None = None,
    truncation: float = 1.0,
    shard: str | tuple[int, int] | None = None,
) -> Job:
    """The job `generate` makes, from its options: `seeds` ('0-99,200' or a sequence; default 0-63) or
    `per_class` N (seeds 0..N-1 in each class), in `classes` by name or index ('0,3,7' or a list; default all,
    conditional generators only), and optionally one shard of it ('i/n')."""
    if per_class is not None and seeds is not None:
        raise GankitError("give --per-class N or --seeds, not both (--per-class N means seeds 0..N-1 in each class)")
    if per_class is not None:
        if not 1 <= per_class <= MAX_SEED + 1:
            raise GankitError(f"--per-class must be 1 to {MAX_SEED + 1} (seeds are 32-bit), got {per_class}")
        if not generator.conditional:
            raise GankitError(
                f"{generator.info.path} is unconditional: --per-class needs a class-conditional "
                "generator (train one with --conditional)"
            )
        seed_list: Sequence[int] = range(per_class)
    elif seeds is None or isinstance(seeds, str):
        seed_list = parse_seeds(DEFAULT_SEEDS if seeds is None else seeds)
    else:
        seed_list = seeds
    class_list = None  # class_index refuses unknown names, and any class of an unconditional model, in one line
    if classes is not None:
        names = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else list(classes)
        class_list = [generator.class_index(c) for c in names if c != ""]  # "Ankle boot" keeps its space
    job = plan(generator, seed_list, class_list, truncation)
    if shard is not None:
        job = job.shard(*(parse_shard(shard) if isinstance(shard, str) else shard))
    return job


def default_layout(generator: Generator) -> str:
    """imagefolder (a folder per class) for a conditional generator, png (one flat folder) otherwise."""
    return "imagefolder" if generator.conditional else "png"


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8): the third of eight shards (shards count from 0)."""
    m = _SHARD.match(str(text).strip())
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)) <= MAX_SHARDS:
        raise GankitError(f"bad shard {str(text)[:60]!r}: use i/n with 0 <= i < n <= {MAX_SHARDS}, e.g. 0/4 ... 3/4")
    return int(m.group(1)), int(m.group(2))
