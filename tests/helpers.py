"""Building blocks the tests share: tiny models, trained for a few steps on synthetic data."""

import io

import torch
from gankit.config import ModelConfig, TrainConfig
from gankit.data import Dataset
from gankit.train import Trainer
from gankit.transfer import fit_class_latent

# The three generators of the course projects; the 64x64 one is the DCGAN paper's (1024 at 4x4).
CONFIGS = {
    "vanilla": ModelConfig(kind="vanilla"),
    "dcgan28": ModelConfig(kind="dcgan", size=28, channels=1, width=32),
    "dcgan64rgb": ModelConfig(kind="dcgan", size=64, channels=3, width=128),
    # Class-conditional: G joins a label embedding to z; D by projection (dcgan) or concatenation (vanilla).
    "vanilla-cond": ModelConfig(kind="vanilla", num_classes=10, d_condition="concat"),
    "dcgan28-cond": ModelConfig(kind="dcgan", size=28, channels=1, width=32, num_classes=10),
    "dcgan28-concat": ModelConfig(kind="dcgan", size=28, channels=1, width=8, num_classes=10, d_condition="concat"),
    # Unconditional with modes read from z (argmax of z[:modes]): the model still takes z alone.
    "dcgan28-infogan": ModelConfig(kind="dcgan", size=28, channels=1, width=8, modes=10),
    "vanilla-selfcond": ModelConfig(kind="vanilla", hidden=(64, 128, 256), modes=4, mode_learning="self-conditioned"),
    # --transfer latent: G's input is its class's mean plus a shared Cholesky factor times z (fitted in trainer())
    "dcgan28-transfer": ModelConfig(kind="dcgan", size=28, channels=1, width=8, num_classes=10, transfer="latent"),
}


def synthetic_data(cfg: ModelConfig, n: int = 32, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, cfg.channels, cfg.size, cfg.size), generator=g, dtype=torch.uint8)
    if not cfg.conditional:
        return Dataset("synthetic", images, None, [])
    labels = torch.arange(n) % cfg.num_classes
    return Dataset("synthetic", images, labels, [f"c{i}" for i in range(cfg.num_classes)])


def trainer(cfg: ModelConfig, steps: int = 0, batch_size: int = 8, **train_kw) -> Trainer:
    if cfg.transfer != "none":
        train_kw.setdefault("transfer_steps", 30)  # enough for the decoder to draw distinct images per seed
    t = Trainer(cfg, TrainConfig(batch_size=batch_size, **train_kw), synthetic_data(cfg, n=4 * batch_size))
    if cfg.transfer != "none":  # what gankit.train does before a new run's first step
        fit_class_latent(t, io.StringIO())
    for _ in range(steps):
        t.train_step()
    return t
