"""gankit's torch-free runtime: exported ONNX generators -> uint8 images and labelled data sets."""

from ._version import __version__
from .contract import ModelInfo
from .errors import GankitError, Interrupted
from .generator import Generator
from .images import make_grid, to_uint8
from .jobs import Job, default_layout, job_for, parse_shard, plan
from .npz import write_npz
from .seeds import SeedRanges, latent_for_seed, latents_for_seeds, parse_seeds
from .writers import WriteResult, write_folder, write_grid

__all__ = [
    "Generator",
    "ModelInfo",
    "GankitError",
    "Interrupted",
    "SeedRanges",
    "write_grid",
    "Job",
    "plan",
    "job_for",
    "default_layout",
    "parse_shard",
    "parse_seeds",
    "latent_for_seed",
    "latents_for_seeds",
    "to_uint8",
    "make_grid",
    "write_folder",
    "write_npz",
    "WriteResult",
    "__version__",
]
