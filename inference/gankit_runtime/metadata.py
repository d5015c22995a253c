"""The keys an exported generator carries in its ONNX metadata_props (all values are strings).

The graph itself states the shapes (input z [N, z_dim], for a conditional generator a second input
labels int64 [N]; output images float32 [N, C, H, W], and from format 2 on a second output pixels uint8
[N, H, W, C]) so that tools which cannot read metadata (onnxruntime-node and -web, for two) can still use the
model; metadata adds what the graph cannot say. docs/design.md writes the contract down.
"""

FORMAT = "gankit.format"  # "2": images and pixels; "1": images alone (still read)
MODEL_KIND = "model_kind"  # vanilla | dcgan
Z_DIM = "z_dim"
CHANNELS = "channels"
HEIGHT = "height"
WIDTH = "width"
OUTPUT_RANGE = "output_range"  # "-1,1": tanh output, NCHW float32
LATENT = "latent"  # the seed formula, in words
DATASET = "dataset"
TRAINING_STEPS = "training_steps"
PACKAGE_VERSION = "package_version"
CHECKPOINT_SHA256 = "checkpoint_sha256"
CONFIG = "config"  # the model config as JSON
CLASSES = "classes"  # conditional generators: JSON list of class names; label i is classes[i]

FORMAT_VERSION = "2"
LATENT_FORMULA = "numpy.random.RandomState(seed).randn(z_dim).astype(numpy.float32)"

MAX_CLASS_NAME = 100


def class_name_problem(name: str) -> str | None:
    """Why `name` cannot be a class name, or None. Class names come from a model file (untrusted) and become
    folder names (imagefolder layout) and metadata values, so they must be safe as one path component."""
    if not 1 <= len(name) <= MAX_CLASS_NAME:
        return f"must have 1 to {MAX_CLASS_NAME} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "holds control characters"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if name.startswith(".") or name != name.strip():
        return "starts with '.' or has spaces around it"
    return None
