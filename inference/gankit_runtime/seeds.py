"""Seeds -> latents. An image depends on its seed and the model alone, never on batch size or device."""

import re

import numpy as np

from .errors import GankitError

MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32)
_TERM = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_seeds(text: str) -> list[int]:
    """'0-99,200,300-310' -> [0, 1, ..., 99, 200, 300, ..., 310], in the order written.

    Ranges are inclusive. Duplicates are an error: they would name the same output file twice.
    """
    seeds: list[int] = []
    for term in str(text).replace(" ", "").split(","):
        m = _TERM.match(term)
        if not m:
            raise GankitError(f"bad seeds {text!r}: {term!r} is not N or A-B with non-negative integers "
                              "(example: 0-99,200,300-310)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise GankitError(f"bad seeds {text!r}: range {term!r} is empty (end before start)")
        if hi > MAX_SEED:
            raise GankitError(f"bad seeds {text!r}: seeds must be at most {MAX_SEED}")
        seeds.extend(range(lo, hi + 1))
    if len(set(seeds)) != len(seeds):
        raise GankitError(f"bad seeds {text!r}: a seed is listed twice")
    return seeds


def latent_for_seed(seed: int, z_dim: int) -> np.ndarray:
    """The seed formula: numpy.random.RandomState(seed).randn(z_dim).astype(numpy.float32).

    RandomState's stream is frozen by numpy's compatibility policy (Generator's is not), so a
    seed gives the same latent on every numpy version, as in StyleGAN's generate.py.
    """
    if not 0 <= seed <= MAX_SEED:
        raise GankitError(f"seed {seed} is outside [0, {MAX_SEED}]")
    return np.random.RandomState(seed).randn(z_dim).astype(np.float32)


def latents_for_seeds(seeds, z_dim: int) -> np.ndarray:
    """float32 [len(seeds), z_dim], row i from seed i alone."""
    out = np.empty((len(seeds), z_dim), dtype=np.float32)
    for i, seed in enumerate(seeds):
        out[i] = latent_for_seed(int(seed), z_dim)
    return out
