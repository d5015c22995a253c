"""What to generate: a Job is a list of (seed, label) pairs in a fixed order, and a shard of it.

An image depends on its seed, its label and the truncation alone, so a job can be cut into shards
(`--shard i/n`) that run anywhere, in any order, and together give exactly the single run's files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from .errors import GankitError
from .generator import Generator, check_truncation

_SHARD = re.compile(r"^(\d+)/(\d+)$")


@dataclass(frozen=True)
class Job:
    seeds: tuple[int, ...]
    labels: tuple[int, ...] | None  # one class index per seed; None for an unconditional generator
    truncation: float = 1.0

    def __post_init__(self):
        if self.labels is not None and len(self.labels) != len(self.seeds):
            raise GankitError("a job needs one label per seed")
        check_truncation(self.truncation)

    def __len__(self) -> int:
        return len(self.seeds)

    def shard(self, index: int, count: int) -> "Job":
        """Every count-th item from `index` on: shards are disjoint, cover the job and mix its classes."""
        if not 0 <= index < count:
            raise GankitError(f"bad shard {index}/{count}: need 0 <= i < n")
        labels = None if self.labels is None else self.labels[index::count]
        return Job(self.seeds[index::count], labels, self.truncation)


def plan(generator: Generator, seeds: Sequence[int], classes: Sequence[int] | None = None,
         truncation: float = 1.0) -> Job:
    """The job for `seeds`: for a conditional generator, every seed in each of `classes` (default: all of
    them), class by class; for an unconditional one, the seeds as given."""
    seeds = tuple(int(s) for s in seeds)
    if not generator.conditional:
        if classes is not None:
            raise GankitError(f"{generator.info.path} is unconditional: --classes, --class and --per-class "
                              "need a class-conditional generator (train one with --conditional)")
        return Job(seeds, None, truncation)
    classes = list(range(len(generator.classes))) if classes is None else list(classes)
    if not classes:
        raise GankitError("no classes chosen")
    if len(set(classes)) != len(classes):
        raise GankitError("a class is listed twice")
    return Job(seeds * len(classes), tuple(c for c in classes for _ in seeds), truncation)


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8): the third of eight shards (shards count from 0)."""
    m = _SHARD.match(str(text).strip())
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise GankitError(f"bad shard {text!r}: use i/n with 0 <= i < n, e.g. 0/4 ... 3/4")
    return int(m.group(1)), int(m.group(2))
