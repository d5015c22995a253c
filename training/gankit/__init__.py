"""gankit's training side (PyTorch): models, data, the training loop, checkpoints and ONNX export."""

from gankit_runtime._version import __version__  # one version for both packages

__all__ = ["__version__"]
