"""--transfer latent: rare classes that borrow variety from the common ones (after BAGAN, Mariani et al. 2018).

A conditional G learns each class from that class's images, so a class of 20 images can vary only as those 20 do.
Here, before the GAN's first step:
  1. an autoencoder learns all the images together: an encoder (D's convolutions and one linear layer to z_dim)
     and G's own layers after its input as the decoder;
  2. each class becomes a Gaussian in the autoencoder's latent space: its own mean, and one covariance pooled over
     the within-class spreads of all classes (dominated by the common ones, which have the images to show it);
  3. G's input is fixed to w = mean[y] + L z (L: the pooled covariance's Cholesky factor; models.ClassLatent), and
     the GAN fine-tunes G from the decoder's weights.
So a rare class is drawn with the common classes' variation (slant, stroke, size) around its own mean. The means
and L are buffers of G: checkpointed, copied to the EMA and exported inside the graph (inputs stay z and label).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from gankit_runtime import GankitError
from gankit_runtime.progress import Progress
from torch import nn

from .config import ModelConfig
from .data import to_model_range
from .models import DCGANDiscriminator, MLPDiscriminator

AE_LR = 1e-3  # Adam's rate for the autoencoder (betas 0.9, 0.999): a plain reconstruction, not a game
ENCODE_BATCH = 500
JITTER = 1e-4  # added to the covariance's diagonal, times its mean variance: a Cholesky factor always exists


class Encoder(nn.Module):
    """Image -> latent (z_dim): the discriminator's convolutions (or MLP) of an unconditional twin of the model,
    then one linear layer."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        plain = ModelConfig(**{**cfg.to_dict(), "num_classes": 0, "transfer": "none"})
        self.net = (DCGANDiscriminator if cfg.kind == "dcgan" else MLPDiscriminator)(plain).net
        with torch.no_grad():
            width = self.net(torch.zeros(2, cfg.channels, cfg.size, cfg.size)).flatten(1).shape[1]
        self.out = nn.Linear(width, cfg.z_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(x).flatten(1))


def fit_class_latent(trainer, log) -> None:
    """Steps 1-3 above on the trainer's data, into trainer.G (and its EMA copy). Every rank computes the same fit
    from the same data and seed; under torchrun rank 0's result is then broadcast, so GPU non-determinism cannot
    leave the ranks with different generators."""
    cfg, tcfg, G = trainer.model_cfg, trainer.cfg, trainer.G
    # Module.to takes memory_format, which torch's overloads of it do not declare
    encoder = Encoder(cfg).to(trainer.device, memory_format=trainer.memory_format)  # type: ignore[call-overload]
    optimiser = torch.optim.Adam([*encoder.parameters(), *G.parameters()], lr=AE_LR)
    picks = torch.Generator().manual_seed(tcfg.seed + 3)
    progress, n = Progress(log), len(trainer.data)
    for step in range(tcfg.transfer_steps):
        idx = torch.randint(n, (tcfg.batch_size,), generator=picks).to(trainer.images.device)
        x = to_model_range(trainer.images[idx].to(trainer.device)).contiguous(memory_format=trainer.memory_format)
        with trainer._autocast():
            loss = F.mse_loss(G.decode(encoder(x)).float(), x)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if (step + 1) % 50 == 0 or step + 1 == tcfg.transfer_steps:
            progress.update(f"transfer: autoencoder loss {loss.item():.4f}", step + 1, tcfg.transfer_steps)
    means, scale = class_gaussians(encode(encoder, trainer), trainer.labels.to(trainer.device), cfg.num_classes)
    with torch.no_grad():
        G.join.means.copy_(means)
        G.join.scale.copy_(scale)
        if trainer.world.active:
            for t in G.state_dict().values():
                dist.broadcast(t, 0)
        if trainer.G_ema is not None:
            trainer.G_ema.load_state_dict(G.state_dict())
    progress.end(
        f"transfer: autoencoder {tcfg.transfer_steps} steps, reconstruction MSE {loss.item():.4f}; "
        f"{cfg.num_classes} class means, within-class spread {scale.diagonal().square().mean().sqrt().item():.3f} "
        f"(pooled over {n} images)"
    )


@torch.no_grad()
def encode(encoder: Encoder, trainer) -> torch.Tensor:
    """The latent code of every training image (float32 [N, z_dim]), with the encoder in eval mode."""
    encoder.eval()
    codes = []
    for start in range(0, len(trainer.data), ENCODE_BATCH):
        x = to_model_range(trainer.images[start : start + ENCODE_BATCH].to(trainer.device))
        codes.append(encoder(x.contiguous(memory_format=trainer.memory_format)).float())
    return torch.cat(codes)


def class_gaussians(codes: torch.Tensor, labels: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(each class's mean [classes, d], the Cholesky factor of the pooled within-class covariance [d, d]): the
    covariance of each code around its own class's mean, over all codes (N - classes degrees of freedom)."""
    counts = torch.bincount(labels, minlength=classes)
    if int(counts.min()) < 1:
        raise GankitError("--transfer latent needs at least one image of every class")
    d = codes.shape[1]
    means = torch.zeros(classes, d, device=codes.device).index_add_(0, labels, codes) / counts[:, None]
    spread = codes - means[labels]
    covariance = spread.T @ spread / max(1, len(codes) - classes)
    covariance += JITTER * covariance.diagonal().mean().clamp_min(1e-12) * torch.eye(d, device=codes.device)
    return means, torch.linalg.cholesky(covariance)
