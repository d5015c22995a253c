"""Generators and discriminators: the vanilla MLP GAN and DCGAN, unconditional or class-conditional.

Every discriminator returns one logit per image (no sigmoid): the loss uses BCE with logits,
which is the same objective as BCE on D's probability but numerically stable.
Conditional models take `labels` (int64 [N]) as a second argument: G joins a label embedding to z;
D uses projection or concatenation (ModelConfig.d_condition).
With --transfer latent, G's class enters as a class mean in a learned latent space instead (ClassLatent).
Unconditional models with discrete modes (ModelConfig.modes) take z alone: G reads its mode from z (mode_of) and
joins that mode's embedding; D takes the mode as a label when self-conditioned, and has a head Q that predicts the
mode (`D(x, code=True)`) under InfoGAN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from gankit_runtime import GankitError
from torch import nn

from .config import ModelConfig, resolution_chain


# ---------------------------------------------------------------- conditioning
def mode_of(z: torch.Tensor, modes: int) -> torch.Tensor:
    """The discrete mode of each latent: the index of the largest of its first `modes` coordinates. For a standard
    normal z every mode is equally likely; truncation (psi * z) keeps it; ONNX has it as one ArgMax."""
    return z[:, :modes].argmax(dim=1)


def code_width(cfg: ModelConfig) -> int:
    """The outputs of D's second head: InfoGAN's Q (one per mode), AC-GAN's class head (one per class), or none."""
    return cfg.modes if cfg.infogan else cfg.num_classes if cfg.class_head else 0


def d_label_classes(cfg: ModelConfig) -> int:
    """How many labels D is conditioned on: the classes, or the modes of a self-conditioned model, else 0."""
    return cfg.num_classes or (cfg.modes if cfg.self_conditioned else 0)


class LabelJoin(nn.Module):
    """G's input: z alone, or z joined to a learned embedding of the label (or of z's own mode)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        classes = cfg.num_classes or cfg.modes  # a conditional model's classes, or a moded one's modes
        self.modes = cfg.modes
        self.embed = nn.Embedding(classes, cfg.label_dim) if classes else None
        self.width = cfg.z_dim + (cfg.label_dim if classes else 0)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.embed is None:
            return z
        if self.modes:
            labels = mode_of(z, self.modes)
        return torch.cat([z, self.embed(labels)], dim=1)


class ClassLatent(nn.Module):
    """G's input under --transfer latent: each class a Gaussian in an autoencoder's latent space, with its own mean
    and one covariance shared by all classes, w = means[y] + scale @ z (scale: the shared covariance's Cholesky
    factor). A rare class gets the common classes' variation around its own mean (BAGAN, Mariani et al. 2018, with
    the within-class covariance pooled). Fitted before the GAN starts (gankit.transfer), then fixed; in the exported
    graph it is one Gather and one MatMul, so the model's inputs stay z and the label."""

    means: torch.Tensor  # [classes, z_dim]
    scale: torch.Tensor  # [z_dim, z_dim], lower triangular

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not cfg.conditional:  # a config from a checkpoint may say so
            raise GankitError("--transfer latent is for a conditional model: this config has no classes")
        self.register_buffer("means", torch.zeros(cfg.num_classes, cfg.z_dim))
        self.register_buffer("scale", torch.eye(cfg.z_dim))
        self.width = cfg.z_dim

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            raise ValueError("a conditional generator needs labels")
        return self.means[labels] + z @ self.scale.T


def latent_input(cfg: ModelConfig) -> LabelJoin | ClassLatent:
    """What G makes of (z, label) before its first layer."""
    return ClassLatent(cfg) if cfg.transfer == "latent" else LabelJoin(cfg)


class LabelPlanes(nn.Module):
    """D's input: the image alone, or, when D is concatenation-conditioned, with one constant plane per class
    (1 for its label, 0 elsewhere)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.classes = cfg.num_classes if cfg.conditional and cfg.d_condition == "concat" else 0

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if not self.classes or labels is None:
            return x
        planes = F.one_hot(labels, self.classes).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])
        return torch.cat([x, planes], dim=1)


class ConditionalHead(nn.Module):
    """The last layer of D, plus the projection term <embed(y), features> when D is projection-conditioned (a
    self-conditioned model's D always is), plus InfoGAN's Q (`code`) when there is one."""

    def __init__(self, last: nn.Module, cfg: ModelConfig, features: int, code: nn.Module | None = None):
        super().__init__()
        self.last, self.code = last, code
        project = d_label_classes(cfg) and (cfg.d_condition == "projection" or not cfg.conditional)
        self.embed = nn.Embedding(d_label_classes(cfg), features) if project else None
        if self.embed is not None:  # starts near 0: the projection term grows from nothing next to the logit
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(
        self, h: torch.Tensor, labels: torch.Tensor | None, code: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logit = self.last(h).view(-1)
        if self.embed is not None:
            logit = logit + (self.embed(labels) * pooled(h)).sum(dim=1)
        if not code:
            return logit
        if self.code is None:
            raise ValueError("this discriminator has no code head")
        return logit, self.code(h).flatten(1)


def pooled(h: torch.Tensor) -> torch.Tensor:
    """D's last features as one vector per image: conv features summed over space."""
    return h.sum(dim=(2, 3)) if h.dim() == 4 else h


# ---------------------------------------------------------------- vanilla GAN (course project 01)
class MLPGenerator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.out_shape = (cfg.channels, cfg.size, cfg.size)
        self.join = latent_input(cfg)
        layers, width = [], self.join.width
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers += [nn.Linear(width, math.prod(self.out_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.join(z, labels))

    def decode(self, w: torch.Tensor) -> torch.Tensor:
        """The image of G's joined input w (the autoencoder's decoder under --transfer latent)."""
        return self.net(w).view(w.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.planes = LabelPlanes(cfg)
        layers: list[nn.Module] = [nn.Flatten()]
        width = (cfg.channels + self.planes.classes) * cfg.size * cfg.size
        # Mirror of the generator without its widest layer: 784 -> 512 -> 256 -> 1 by default.
        for h in reversed(cfg.hidden[:-1] or cfg.hidden):
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        self.net = nn.Sequential(*layers)
        code = nn.Linear(width, code_width(cfg)) if code_width(cfg) else None
        self.head = ConditionalHead(nn.Linear(width, 1), cfg, width, code)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, code: bool = False):
        return self.head(self.net(self.planes(x, labels)), labels, code)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return pooled(self.net(x))


# ---------------------------------------------------------------- DCGAN (course projects 02 and 03)
def _kernel(small: int, large: int) -> int:
    # stride 2, padding 1: kernel 4 maps s <-> 2s, kernel 3 maps s <-> 2s - 1 (MNIST's 4 -> 7).
    return 4 if large == 2 * small else 3


def _dcgan_depths(cfg: ModelConfig) -> list[int]:
    """Channel depth at each resolution of the chain below the image: 8w, 4w, 2w, w, ..."""
    stages = len(resolution_chain(cfg.size)) - 1
    return [max(8 * cfg.width >> i, 1) for i in range(stages)]


class DCGANGenerator(nn.Module):
    """z -> fully connected 4x4x(8w) -> transposed convs (halve depth, double size) -> tanh image.

    Batch norm after every layer but the output, ReLU inside, no pooling (Radford et al. 2015).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        chain, depths = resolution_chain(cfg.size), _dcgan_depths(cfg)
        self.join = latent_input(cfg)
        self.project = nn.Sequential(
            nn.Linear(self.join.width, depths[0] * 16, bias=False),
            nn.Unflatten(1, (depths[0], 4, 4)),
            nn.BatchNorm2d(depths[0]),
            nn.ReLU(True),
        )
        blocks = []
        for i in range(len(depths)):
            k = _kernel(chain[i], chain[i + 1])
            if i + 1 < len(depths):
                blocks += [
                    nn.ConvTranspose2d(depths[i], depths[i + 1], k, 2, 1, bias=False),
                    nn.BatchNorm2d(depths[i + 1]),
                    nn.ReLU(True),
                ]
            else:
                blocks += [nn.ConvTranspose2d(depths[i], cfg.channels, k, 2, 1), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.join(z, labels))

    def decode(self, w: torch.Tensor) -> torch.Tensor:
        """The image of G's joined input w (the autoencoder's decoder under --transfer latent)."""
        return self.blocks(self.project(w))


class DCGANDiscriminator(nn.Module):
    """Strided convs (mirror of G), LeakyReLU(0.2), batch norm on all but the first layer, one logit.
    With d_norm="spectral": spectral norm on every conv and no batch norm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        chain, depths = resolution_chain(cfg.size)[::-1], _dcgan_depths(cfg)[::-1]
        spectral = cfg.d_norm == "spectral"
        sn = nn.utils.parametrizations.spectral_norm if spectral else (lambda m: m)
        self.planes = LabelPlanes(cfg)
        layers, cin = [], cfg.channels + self.planes.classes
        for i, cout in enumerate(depths):
            layers.append(sn(nn.Conv2d(cin, cout, _kernel(chain[i + 1], chain[i]), 2, 1, bias=i == 0 or spectral)))
            if i > 0 and not spectral:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, True))
            cin = cout
        self.net = nn.Sequential(*layers)
        # 4x4 -> 1x1: the logit; Q (or the class head) reads the same 4x4 features (a conv over all of them: a linear
        # map, as InfoGAN's)
        code = nn.Conv2d(cin, code_width(cfg), 4, 1, 0) if code_width(cfg) else None
        self.head = ConditionalHead(sn(nn.Conv2d(cin, 1, 4, 1, 0)), cfg, cin, code)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, code: bool = False):
        return self.head(self.net(self.planes(x, labels)), labels, code)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """D's last features, pooled: what a self-conditioned run clusters the real images by."""
        return pooled(self.net(x))


def _dcgan_init(m: nn.Module) -> None:
    # DCGAN paper: weights from N(0, 0.02); batch-norm scale from N(1, 0.02). Spectrally normalised layers
    # keep torch's default: their scale is divided out anyway.
    if nn.utils.parametrize.is_parametrized(m):
        return
    # G's label embedding keeps torch's N(0, 1), the scale of z beside it.
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


@torch.no_grad()
def sample_uint8(g: nn.Module, seeds, z_dim: int, device, batch_size: int = 500, labels=None, truncation: float = 1.0):
    """uint8 [N, H, W, C] images of seeds (and labels, for a conditional G) from a torch generator in
    eval mode: what the runtime gives for the same seeds after export (same seed formula, same pixels;
    truncation psi as the runtime's, z' = psi * z)."""
    import numpy as np
    from gankit_runtime import latents_for_seeds, to_uint8

    was_training = g.training
    g.eval()
    seeds = list(seeds)
    out = []
    for start in range(0, len(seeds), batch_size):
        z = torch.from_numpy(latents_for_seeds(seeds[start : start + batch_size], z_dim) * np.float32(truncation)).to(
            device
        )
        y = (
            None
            if labels is None
            else torch.as_tensor(labels[start : start + batch_size], dtype=torch.int64, device=device)
        )
        out.append(to_uint8(g(z, y).float().cpu().numpy()))
    g.train(was_training)
    return np.concatenate(out)


def build_models(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for a config, freshly initialised from torch's global RNG."""
    if cfg.kind == "vanilla":
        return MLPGenerator(cfg), MLPDiscriminator(cfg)
    g, d = DCGANGenerator(cfg), DCGANDiscriminator(cfg)
    g.apply(_dcgan_init)
    d.apply(_dcgan_init)
    return g, d
