"""Dataclass configs. A ModelConfig is everything needed to rebuild a network from its weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from gankit_runtime import GankitError

MODEL_KINDS = ("vanilla", "dcgan")
D_NORMS = ("batch", "spectral")
D_CONDITIONS = ("projection", "concat")
G_LOSSES = ("non-saturating", "minimax")


def resolution_chain(size: int) -> list[int]:
    """Spatial sizes of the DCGAN stages, from 4x4 up to `size`: 28 -> [4, 7, 14, 28], 64 -> [4, ..., 64].

    Each stage doubles (or doubles minus one, for odd sizes such as MNIST's 7 -> 14 -> 28 path).
    """
    chain = [size]
    while chain[-1] > 4:
        chain.append((chain[-1] + 1) // 2)
    if chain[-1] != 4 or size < 8:
        raise GankitError(f"image size {size} is not reachable from 4x4 by doubling "
                          "(use 28, 32, 64, 128, ...; sizes s where halving, rounding up, ends at 4)")
    return chain[::-1]


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "dcgan"
    z_dim: int = 100
    channels: int = 1
    size: int = 28
    # dcgan: the generator starts at 4x4x(8*width) and halves depth at each doubling of size;
    # the DCGAN paper's 64x64 face model is width=128 (1024 channels at 4x4).
    width: int = 32
    # vanilla: hidden layer sizes of the MLP generator; the discriminator mirrors them.
    hidden: tuple[int, ...] = (256, 512, 1024)
    # dcgan: normalisation in D. "batch" is the DCGAN paper's; "spectral" (Miyato et al. 2018) bounds each
    # layer's Lipschitz constant instead and drops batch norm from D.
    d_norm: str = "batch"
    # Class-conditional models (num_classes > 0): G joins a learned label embedding (label_dim) to z;
    # D takes the label by projection (Miyato & Koyama 2018: logit + <embed(y), features>) or by
    # concatenation (one-hot label planes beside the image, Mirza & Osindero 2014).
    num_classes: int = 0
    label_dim: int = 32
    d_condition: str = "projection"

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if self.kind not in MODEL_KINDS:
            raise GankitError(f"unknown model {self.kind!r}: choose one of {', '.join(MODEL_KINDS)}")
        if self.d_norm not in D_NORMS:
            raise GankitError(f"unknown D normalisation {self.d_norm!r}: choose one of {', '.join(D_NORMS)}")
        if self.d_condition not in D_CONDITIONS:
            raise GankitError(f"unknown D conditioning {self.d_condition!r}: choose one of {', '.join(D_CONDITIONS)}")
        if self.num_classes < 0 or self.num_classes == 1 or self.label_dim < 1:
            raise GankitError(f"a conditional model needs at least 2 classes, got {self.num_classes}")
        if self.channels not in (1, 3):
            raise GankitError(f"channels must be 1 or 3, got {self.channels}")
        if self.z_dim < 1 or self.width < 1 or not self.hidden or min(self.hidden) < 1:
            raise GankitError("z_dim, width and hidden sizes must be positive")
        if self.kind == "dcgan":
            resolution_chain(self.size)
        elif self.size < 1:
            raise GankitError(f"image size must be positive, got {self.size}")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise GankitError(f"model config has unknown keys {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class TrainConfig:
    data: str = "mnist"  # mnist | fashion-mnist | a folder of images
    data_dir: str = ""  # cache for downloaded data sets; "" means the per-user default
    epochs: int = 5
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    d_steps: int = 1  # k in Algorithm 1 of Goodfellow et al.: D steps per G step
    g_loss: str = "non-saturating"
    label_smoothing: float = 0.0  # one-sided: D's target for real images is 1 - this (Salimans et al. 2016)
    seed: int = 0
    # Exponential moving average of G's weights, as a half-life in thousands of images (StyleGAN's
    # ema_kimg), ramped up over the first images; 0 turns it off. Used for samples, eval and export.
    # On by default: it lowered FD by 4-19% at every mark of bench/time_to_quality.py.
    ema_kimg: float = 10.0
    eval_every: int = 0  # generator steps between eval figures (MNIST only); 0: never
    eval_samples: int = 5000

    def __post_init__(self):
        if self.g_loss not in G_LOSSES:
            raise GankitError(f"unknown generator loss {self.g_loss!r}: choose one of {', '.join(G_LOSSES)}")
        for name in ("epochs", "batch_size", "d_steps"):
            if getattr(self, name) < 1:
                raise GankitError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr_g <= 0 or self.lr_d <= 0:
            raise GankitError("learning rates must be positive")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise GankitError("Adam betas must lie in [0, 1)")
        if self.seed < 0:
            raise GankitError(f"seed must be non-negative, got {self.seed}")
        if not 0 <= self.label_smoothing < 0.5:
            raise GankitError(f"label smoothing must lie in [0, 0.5), got {self.label_smoothing}")
        if self.ema_kimg < 0 or self.eval_every < 0 or self.eval_samples < 2:
            raise GankitError("ema must be >= 0, eval-every >= 0 and eval-samples >= 2")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in fields(cls)}})


def default_lr(kind: str, size: int) -> float:
    """The Adam learning rate (G and D) `cli.py train` uses unless told otherwise.

    DCGAN below 64x64 (the width-32 model): 1e-3, measured against the DCGAN paper's 2e-4 with
    bench/time_to_quality.py on MNIST: FD 25 instead of 60 after the images of 10 CPU-minutes, still
    improving at 30 (5e-4 landed between). Larger DCGANs (64x64 faces, width 128) and the vanilla GAN keep
    the paper's 2e-4: the only rate measured for them, and the paper found 1e-3 too high at 64x64.
    """
    return 1e-3 if kind == "dcgan" and size < 64 else 2e-4


def default_data_dir() -> Path:
    """Per-user cache: $GANKIT_DATA, else $XDG_CACHE_HOME/gankit, else ~/.cache/gankit."""
    import os

    if os.environ.get("GANKIT_DATA"):
        return Path(os.environ["GANKIT_DATA"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gankit"
