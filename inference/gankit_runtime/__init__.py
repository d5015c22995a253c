"""gankit's torch-free runtime: exported ONNX generators -> uint8 images."""

from .errors import GankitError
from .generator import Generator, ModelInfo
from .images import make_grid, to_uint8
from .seeds import latent_for_seed, latents_for_seeds, parse_seeds
from .writers import write_npz, write_pngs

__version__ = "0.1.0"
__all__ = ["Generator", "ModelInfo", "GankitError", "parse_seeds", "latent_for_seed", "latents_for_seeds",
           "to_uint8", "make_grid", "write_pngs", "write_npz", "__version__"]
