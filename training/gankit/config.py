"""Dataclass configs. A ModelConfig is everything needed to rebuild a network from its weights."""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields

from gankit_runtime import GankitError
from gankit_runtime.evaluation.datasets import default_data_dir  # noqa: F401  (part of gankit.config's API)

MODEL_KINDS = ("vanilla", "dcgan")
D_NORMS = ("batch", "spectral")
D_CONDITIONS = ("projection", "concat")
G_LOSSES = ("non-saturating", "minimax")
LOSSES = ("bce", "hinge")
MAX_SEED = 2**32 - 1  # every --seed: numpy's and torch's generators both take it
BUILTIN_DATA = ("mnist", "fashion-mnist")
AUGMENT_MODES = ("off", "fixed", "ada")
MODE_LEARNING = ("infogan", "self-conditioned")
TRANSFERS = ("none", "latent")

# Bounds on what a config may ask for. Configs come from the command line and from checkpoints, which may
# be crafted: a width of 10**9 must be one clear line, not an attempt to allocate petabytes.
MAX_SIZE = 1024
MAX_WIDTH = 4096
MAX_Z_DIM = 4096
MAX_HIDDEN = 65536
MAX_CLASSES = 100_000


def _check_types(config) -> None:
    """Every field has its default's type (a float field takes an int; bool is never a number). Checkpoints
    are untrusted input: a string where a number belongs is one clear line, not a TypeError deep inside."""
    for f in fields(config):
        value, default = getattr(config, f.name), f.default
        if default is MISSING:
            continue
        want = type(default)
        if want is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif want is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif want is tuple:
            ok = isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        else:
            ok = isinstance(value, want)
        if not ok:
            raise GankitError(
                f"config field {f.name!r} must be {want.__name__}, got {type(value).__name__} {str(value)[:40]!r}"
            )
        if want is float and not math.isfinite(value):
            raise GankitError(f"{f.name.replace('_', '-')} must be a finite number, got {value}")


def resolution_chain(size: int) -> list[int]:
    """Spatial sizes of the DCGAN stages, from 4x4 up to `size`: 28 -> [4, 7, 14, 28], 64 -> [4, ..., 64].

    Each stage doubles (or doubles minus one, for odd sizes such as MNIST's 7 -> 14 -> 28 path).
    """
    chain = [size]
    while chain[-1] > 4:
        chain.append((chain[-1] + 1) // 2)
    if chain[-1] != 4 or size < 8:
        raise GankitError(
            f"image size {size} is not reachable from 4x4 by doubling "
            "(use 28, 32, 64, 128, ...; sizes s where halving, rounding up, ends at 4)"
        )
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
    # Unconditional models with discrete modes (modes > 0): G joins an embedding of the mode
    # c = argmax(z[:modes]) to z, so the mode comes from z inside the graph (uniform over the modes for a normal z)
    # and the model's only input stays z. How G learns to use c (mode_learning): "infogan", a head Q on D's
    # features that predicts c from G(z), trained on both sides (Chen et al. 2016); or "self-conditioned", D
    # projection-conditioned on c for fakes and on a k-means cluster of its own features for real images,
    # re-clustered every epoch (Liu et al. 2020).
    modes: int = 0
    mode_learning: str = "infogan"
    # How a conditional G's rare classes borrow variety from its common ones: "none" (each class from its own
    # images) or "latent" (gankit.transfer: the classes as Gaussians with one shared covariance in an autoencoder's
    # latent space, fitted on all classes before the GAN starts; G starts from the autoencoder's decoder).
    transfer: str = "none"
    # Conditional models: D also names each image's class (AC-GAN, Odena et al. 2017), learnt from the real images;
    # G is trained so that D names its images' class. A head beside the logit, as InfoGAN's Q.
    class_head: bool = False

    def __post_init__(self):
        _check_types(self)
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if self.kind not in MODEL_KINDS:
            raise GankitError(f"unknown model {self.kind!r}: choose one of {', '.join(MODEL_KINDS)}")
        if self.d_norm not in D_NORMS:
            raise GankitError(f"unknown D normalisation {self.d_norm!r}: choose one of {', '.join(D_NORMS)}")
        if self.d_condition not in D_CONDITIONS:
            raise GankitError(f"unknown D conditioning {self.d_condition!r}: choose one of {', '.join(D_CONDITIONS)}")
        if self.num_classes < 0 or self.num_classes == 1 or self.label_dim < 1:
            raise GankitError(f"a conditional model needs at least 2 classes, got {self.num_classes}")
        if self.mode_learning not in MODE_LEARNING:
            raise GankitError(f"unknown mode learning {self.mode_learning!r}: choose one of {', '.join(MODE_LEARNING)}")
        if self.transfer not in TRANSFERS:
            raise GankitError(f"unknown transfer {self.transfer!r}: choose one of {', '.join(TRANSFERS)}")
        if self.class_head and self.modes:
            raise GankitError("--class-head names the class of a --conditional model: it takes no --modes")
        if self.transfer != "none" and self.modes:
            raise GankitError("--transfer carries variety between classes: it needs --conditional, not --modes")
        if self.modes and (self.conditional or not 2 <= self.modes <= self.z_dim):
            raise GankitError(
                "--modes gives an unconditional model discrete modes chosen from z: it needs 2 to z-dim "
                f"({self.z_dim}) modes and no --conditional, got {self.modes}"
            )
        if self.channels not in (1, 3):
            raise GankitError(f"channels must be 1 or 3, got {self.channels}")
        if self.z_dim < 1 or self.width < 1 or not self.hidden or min(self.hidden) < 1:
            raise GankitError("z_dim, width and hidden sizes must be positive")
        if not 1 <= self.size <= MAX_SIZE:
            raise GankitError(f"image size must lie in [1, {MAX_SIZE}], got {self.size}")
        for name, value, cap in (
            ("width", self.width, MAX_WIDTH),
            ("z_dim", self.z_dim, MAX_Z_DIM),
            ("hidden size", max(self.hidden), MAX_HIDDEN),
            ("num_classes", self.num_classes, MAX_CLASSES),
            ("label_dim", self.label_dim, MAX_Z_DIM),
        ):
            if value > cap:
                raise GankitError(f"{name} {value} is beyond gankit's limit of {cap}")
        if self.kind == "dcgan":
            resolution_chain(self.size)

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def infogan(self) -> bool:
        return self.modes > 0 and self.mode_learning == "infogan"

    @property
    def self_conditioned(self) -> bool:
        return self.modes > 0 and self.mode_learning == "self-conditioned"

    @property
    def description(self) -> str:
        """The model in a few words, as train and export name it: "conditional dcgan (10 classes)"."""
        if self.conditional:
            transfer = f", transfer {self.transfer}" if self.transfer != "none" else ""
            return f"conditional {self.kind} ({self.num_classes} classes{transfer})"
        if self.modes:
            return f"{self.kind} ({self.modes} modes, {self.mode_learning})"
        return self.kind

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: object) -> ModelConfig:  # untrusted: a checkpoint's
        if not isinstance(d, dict):
            raise GankitError("model config is not a mapping")
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
    # bce: D minimises binary cross-entropy and G the g_loss above (the course's GAN). hinge: D minimises
    # relu(1 - D(x)) + relu(1 + D(G(z))) on logits and G maximises D(G(z)) (Lim & Ye 2017, SNGAN, BigGAN).
    loss: str = "bce"
    # R1 (Mescheder et al. 2018): r1 / 2 * |grad D(x)|^2 on real images, added to D's loss; 0: off.
    r1: float = 0.0
    # Top-k (Sinha et al. 2020): G learns from the fakes D scores highest, a share that starts at 1 and
    # shrinks by 0.9 per epoch down to this; 1: every fake.
    top_k: float = 1.0
    label_smoothing: float = 0.0  # one-sided: D's target for real images is 1 - this (Salimans et al. 2016)
    seed: int = 0
    # Exponential moving average of G's weights, as a half-life in thousands of images (StyleGAN's
    # ema_kimg), ramped up over the first images; 0 turns it off. Used for samples, eval and export.
    # On by default: it lowered FD by 4-19% at every mark of bench/time_to_quality.py.
    ema_kimg: float = 10.0
    eval_every: int = 0  # generator steps between eval figures (mnist, fashion-mnist); 0: never
    eval_samples: int = 5000
    # Checkpoint every this many generator steps, besides epoch ends and Ctrl-C; 0: every
    # CHECKPOINT_MINUTES of training instead, so that a killed run loses minutes, not an epoch.
    checkpoint_every: int = 0
    # Under torchrun: batch-norm statistics over the global batch (all ranks) instead of each rank's slice.
    sync_bn: bool = False
    # Differentiable augmentation of all D sees (gankit.augment): off, fixed (probability augment_p per
    # operation; DiffAugment is 1.0) or ada (p adapted to D's overfitting, starting at 0).
    augment: str = "off"
    augment_p: float = 1.0
    # Conditional models on imbalanced data: every epoch draws the classes uniformly (a rare class's images repeat),
    # so D and G see each class equally often (gankit.trainer.epoch_order).
    balance_classes: bool = False
    # InfoGAN's lambda (models with --modes learned by infogan): the weight of the mode-prediction loss beside the
    # GAN losses of D and G. 1 is the paper's value for a discrete code.
    info_weight: float = 1.0
    # --transfer latent: autoencoder steps (batches of batch_size, all classes) before the GAN's first step
    transfer_steps: int = 1000

    # What a resumed run may change; everything else is the run's own (see gankit.train.resume_configs).
    # info_weight: InfoGAN's lambda may be lowered once the modes have formed (docs/benchmarks.md: recall rose).
    CHANGEABLE_ON_RESUME = (
        "epochs",
        "eval_every",
        "eval_samples",
        "checkpoint_every",
        "data_dir",
        "sync_bn",
        "info_weight",
    )

    def __post_init__(self):
        _check_types(self)
        if self.augment not in AUGMENT_MODES:
            raise GankitError(f"unknown augmentation {self.augment!r}: choose one of {', '.join(AUGMENT_MODES)}")
        if not 0 <= self.augment_p <= 1:
            raise GankitError(f"augment-p must lie in [0, 1], got {self.augment_p}")
        if self.g_loss not in G_LOSSES:
            raise GankitError(f"unknown generator loss {self.g_loss!r}: choose one of {', '.join(G_LOSSES)}")
        if self.loss not in LOSSES:
            raise GankitError(f"unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.loss == "hinge" and self.g_loss != "non-saturating":
            raise GankitError("--g-loss applies to --loss bce: the hinge loss has its own generator loss")
        if self.loss == "hinge" and self.label_smoothing:
            raise GankitError("--label-smoothing sets cross-entropy's target for real images: --loss hinge has none")
        if self.r1 and self.sync_bn:
            raise GankitError(
                "--r1 with --sync-bn: R1's double backward does not pass through synchronised batch "
                "norm; give --r1 0, or drop --sync-bn"
            )
        if not 0 <= self.r1 <= MAX_R1 or not 0 < self.top_k <= 1:
            raise GankitError(f"r1 must lie in [0, {MAX_R1:g}] and top-k in (0, 1], got {self.r1:g} and {self.top_k:g}")
        if not 1 <= self.transfer_steps <= MAX_TRANSFER_STEPS:
            raise GankitError(f"transfer-steps must lie in [1, {MAX_TRANSFER_STEPS}], got {self.transfer_steps}")
        for name in ("epochs", "batch_size", "d_steps"):
            if getattr(self, name) < 1:
                raise GankitError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr_g <= 0 or self.lr_d <= 0:
            raise GankitError(f"learning rates must be positive, got {self.lr_g:g} and {self.lr_d:g}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise GankitError("Adam betas must lie in [0, 1)")
        if not 0 <= self.seed <= MAX_SEED:
            raise GankitError(f"seed must lie in [0, {MAX_SEED}], got {self.seed}")
        if not 0 <= self.label_smoothing < 0.5:
            raise GankitError(f"label smoothing must lie in [0, 0.5), got {self.label_smoothing}")
        if not 0 < self.info_weight <= MAX_INFO_WEIGHT:
            raise GankitError(f"info-weight must lie in (0, {MAX_INFO_WEIGHT:g}], got {self.info_weight:g}")
        if self.ema_kimg < 0 or self.eval_every < 0 or self.eval_samples < 10 or self.checkpoint_every < 0:
            raise GankitError("ema must be >= 0, eval-every >= 0, eval-samples >= 10 and checkpoint-every >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> TrainConfig:  # untrusted: a checkpoint's
        if not isinstance(d, dict):
            raise GankitError("train config is not a mapping")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise GankitError(f"train config has unknown keys {sorted(unknown)[:5]}")
        return cls(**d)


def default_lr(kind: str, size: int) -> float:
    """The Adam learning rate (G and D) `gankit train` uses unless told otherwise.

    DCGAN below 64x64 (the width-32 model): 1e-3, measured against the DCGAN paper's 2e-4 with
    bench/time_to_quality.py on MNIST: FD 25 instead of 60 after the images of 10 CPU-minutes, still
    improving at 30 (5e-4 landed between). Larger DCGANs (64x64 faces, width 128) and the vanilla GAN keep
    the paper's 2e-4: the only rate measured for them, and the paper found 1e-3 too high at 64x64.
    """
    return 1e-3 if kind == "dcgan" and size < 64 else 2e-4


def default_r1(kind: str, size: int) -> float:
    """The R1 weight `gankit train` uses unless told otherwise: 1 for DCGANs below 64x64, measured with
    bench/time_to_quality.py on MNIST (docs/benchmarks.md: at the images of 10 minutes, FD 16.6 against 25.4 and
    84.0% confident against 80.7%, at no measurable cost per step); 0 (off) where it was not measured."""
    return 1.0 if kind == "dcgan" and size < 64 else 0.0


MAX_R1 = 1000.0  # R1 weights in use run from 0.01 to about 100; far beyond, D's loss is the penalty alone
MAX_INFO_WEIGHT = 100.0  # InfoGAN's lambda: 1 in the paper; far beyond, the mode loss drowns the GAN's
MAX_TRANSFER_STEPS = 1_000_000

CHECKPOINT_MINUTES = 5.0  # the default checkpoint interval, in minutes of training (TrainConfig.checkpoint_every)


def new_run_configs(
    model: str = "dcgan",
    data: str = "mnist",
    image_size: int | None = None,
    channels: int | None = None,
    width: int | None = None,
    lr_g: float | None = None,
    lr_d: float | None = None,
    r1: float | None = None,
    **settings,
) -> tuple[ModelConfig, TrainConfig]:
    """The configs of a new run, with gankit's defaults for what is not given (None): 28x28 grey for
    mnist / fashion-mnist and 64x64 RGB for a folder of images; DCGAN width 32 below 64x64 and 128 from
    64x64 on (the DCGAN paper's 1024 channels at 4x4); learning rates from default_lr, R1 from default_r1. Other keyword
    arguments go to ModelConfig or TrainConfig by name (z_dim, d_norm, batch_size, seed, ...)."""
    builtin = data in BUILTIN_DATA
    size = (28 if builtin else 64) if image_size is None else image_size
    model_keys = {f.name for f in fields(ModelConfig)}
    model_cfg = ModelConfig(
        kind=model,
        size=size,
        channels=(1 if builtin else 3) if channels is None else channels,
        width=(128 if size >= 64 else 32) if width is None else width,
        **{k: v for k, v in settings.items() if k in model_keys},
    )
    rate = default_lr(model, size)
    train_cfg = TrainConfig(
        data=data,
        lr_g=rate if lr_g is None else lr_g,
        lr_d=rate if lr_d is None else lr_d,
        r1=(0.0 if settings.get("sync_bn") else default_r1(model, size)) if r1 is None else r1,
        **{k: v for k, v in settings.items() if k not in model_keys},
    )
    return model_cfg, train_cfg


def check_class_options(model_cfg: ModelConfig, conditional: bool) -> None:
    """The options that act on classes refused for a model without them (`conditional`: it has classes, or a new
    run's --conditional will give it the data's)."""
    if model_cfg.transfer != "none" and not conditional:
        raise GankitError("--transfer carries variety between classes: it needs --conditional and labelled data")
    if model_cfg.class_head and not conditional:
        raise GankitError("--class-head names the class of an image: it needs --conditional and labelled data")


def check_together(model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    """What neither config can check alone: a training setting that the model would ignore is refused."""
    if train_cfg.transfer_steps != TrainConfig.transfer_steps and model_cfg.transfer == "none":
        raise GankitError("--transfer-steps sets --transfer latent's autoencoder steps: it needs --transfer latent")
    if train_cfg.info_weight != 1.0 and not model_cfg.infogan:
        raise GankitError("--info-weight weighs InfoGAN's mode loss: it needs --modes N with --mode-learning infogan")


# train's options that are fields of the run's configs, by option name (as Python spells it) -> config field. A
# resumed run refuses any of these given with another value than the run's own (gankit.train.resume_configs).
_RENAMED = {"model": "kind", "image_size": "size", "ema": "ema_kimg"}
OPTION_FIELDS = {
    option: _RENAMED.get(option, option)
    for option in (
        "model",
        "data",
        "batch_size",
        "lr_g",
        "lr_d",
        "beta1",
        "beta2",
        "d_steps",
        "g_loss",
        "loss",
        "r1",
        "top_k",
        "image_size",
        "channels",
        "z_dim",
        "width",
        "label_smoothing",
        "d_norm",
        "conditional",
        "d_condition",
        "modes",
        "mode_learning",
        "seed",
        "ema",
        "eval_every",
        "eval_samples",
        "epochs",
        "checkpoint_every",
        "data_dir",
        "sync_bn",
        "augment",
        "augment_p",
        "balance_classes",
        "info_weight",
        "transfer",
        "transfer_steps",
        "class_head",
    )
}


def option_name(field: str) -> str:
    """The command-line option of a config field: ema_kimg -> ema, size -> image-size."""
    renamed = {f: o for o, f in _RENAMED.items()}
    return renamed.get(field, field).replace("_", "-")
