"""Generators and discriminators: the vanilla MLP GAN and DCGAN.

Every discriminator returns one logit per image (no sigmoid): the loss uses BCE with logits,
which is the same objective as BCE on D's probability but numerically stable.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig, resolution_chain


# ---------------------------------------------------------------- vanilla GAN (course project 01)
class MLPGenerator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.out_shape = (cfg.channels, cfg.size, cfg.size)
        layers, width = [], cfg.z_dim
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers += [nn.Linear(width, math.prod(self.out_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers, width = [nn.Flatten()], cfg.channels * cfg.size * cfg.size
        # Mirror of the generator without its widest layer: 784 -> 512 -> 256 -> 1 by default.
        for h in reversed(cfg.hidden[:-1] or cfg.hidden):
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


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
        self.project = nn.Sequential(
            nn.Linear(cfg.z_dim, depths[0] * 16, bias=False),
            nn.Unflatten(1, (depths[0], 4, 4)),
            nn.BatchNorm2d(depths[0]),
            nn.ReLU(True),
        )
        blocks = []
        for i in range(len(depths)):
            k = _kernel(chain[i], chain[i + 1])
            if i + 1 < len(depths):
                blocks += [nn.ConvTranspose2d(depths[i], depths[i + 1], k, 2, 1, bias=False),
                           nn.BatchNorm2d(depths[i + 1]), nn.ReLU(True)]
            else:
                blocks += [nn.ConvTranspose2d(depths[i], cfg.channels, k, 2, 1), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.project(z))


class DCGANDiscriminator(nn.Module):
    """Strided convs (mirror of G), LeakyReLU(0.2), batch norm on all but the first layer, one logit."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        chain, depths = resolution_chain(cfg.size)[::-1], _dcgan_depths(cfg)[::-1]
        layers, cin = [], cfg.channels
        for i, cout in enumerate(depths):
            layers.append(nn.Conv2d(cin, cout, _kernel(chain[i + 1], chain[i]), 2, 1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, True))
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 4, 1, 0))  # 4x4 -> 1x1: the logit
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def _dcgan_init(m: nn.Module) -> None:
    # DCGAN paper: weights from N(0, 0.02); batch-norm scale from N(1, 0.02).
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


@torch.no_grad()
def sample_uint8(g: nn.Module, seeds, z_dim: int, device, batch_size: int = 500):
    """uint8 [N, H, W, C] images of seeds from a torch generator in eval mode: what the runtime gives
    for the same seeds after export (the same seed formula and pixel conversion)."""
    import numpy as np

    from gankit_runtime import latents_for_seeds, to_uint8

    was_training = g.training
    g.eval()
    seeds = list(seeds)
    out = []
    for start in range(0, len(seeds), batch_size):
        z = torch.from_numpy(latents_for_seeds(seeds[start:start + batch_size], z_dim)).to(device)
        out.append(to_uint8(g(z).float().cpu().numpy()))
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
