"""gankit's training side (PyTorch): models, data, the training loop, checkpoints and ONNX export."""

__version__ = "0.2.0"
