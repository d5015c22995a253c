"""Differentiable augmentation of everything D sees, for training on few images (DiffAugment, Zhao et al. 2020;
adaptive strength as in ADA, Karras et al. 2020).

A discriminator trained on a few hundred images memorises them and its verdicts stop teaching G anything.
Augmenting the real images alone would teach G to make augmented images; augmenting real and fake alike, in
D's steps and in G's step, with operations that gradients pass through, does not leak. The policy is
DiffAugment's: translation (up to 1/8 of the image, zero fill), cutout (a square of half the side), and, for RGB,
colour (brightness, saturation, contrast). Each operation is applied to each image with probability p:

  fixed   p as given (--augment-p; DiffAugment itself is p = 1)
  ada     p starts at 0 and follows ADA's overfitting heuristic r_t = E[sign(D(real))]: every ADA_INTERVAL
          steps p moves up when r_t > target (0.6) and down when below, at most by 1 per ADA_KIMG thousand images.

The random draws come from the run's own generator (its state and p are in the checkpoint, so resume stays
exact), and are drawn for the whole global batch and sliced per process, so a torchrun run augments exactly as
one process would.
"""

from __future__ import annotations

import torch

ADA_INTERVAL = 4  # generator steps between adjustments of p
ADA_KIMG = 100  # p can move from 0 to 1 in this many thousand images (ADA: 500; our runs are shorter)
ADA_TARGET = 0.6


class Augment:
    """augment(x): x [b, C, H, W] in [-1, 1], this process's slice of a global batch -> augmented, same shape."""

    def __init__(
        self, mode: str, p: float, seed: int, global_batch: int, rows: slice, device, target: float = ADA_TARGET
    ):
        self.mode, self.device, self.global_batch, self.rows, self.target = (
            mode,
            torch.device(device),
            global_batch,
            rows,
            target,
        )
        self.p = torch.tensor(p if mode == "fixed" else 0.0, device=self.device)
        self.rng = torch.Generator(self.device).manual_seed(seed)
        self.signs = torch.zeros((), device=self.device)  # sum of sign(D(real)) since the last adjustment
        self.seen = torch.zeros((), device=self.device)

    @property
    def active(self) -> bool:
        return self.mode != "off"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        n = self.global_batch
        channels, size = x.shape[1], x.shape[-1]

        def draw(*shape):  # uniform [0, 1) for the whole global batch, this process's rows
            return torch.rand((n, *shape), generator=self.rng, device=self.device)[self.rows]

        on = [draw() < self.p for _ in range(3)]  # which images get each operation
        if channels == 3:
            x = colour(x, draw(), draw(), draw(), on[0])
        x = translate(x, draw(2), on[1], max(1, size // 8))
        return cutout(x, draw(2), on[2], max(1, size // 2))

    # ----------------------------------------------------------------------------------- ADA
    def observe(self, logits_real: torch.Tensor) -> None:
        """D's raw outputs on (augmented) real images of a D step: the overfitting heuristic's input."""
        if self.mode == "ada":
            self.signs += torch.sign(logits_real.detach().float()).sum()
            self.seen += logits_real.numel()

    def adjust(self, step: int, images_per_step: int, reduce=None) -> None:
        """Every ADA_INTERVAL steps: move p toward r_t = target. `reduce` sums over processes (torchrun)."""
        if self.mode != "ada" or step % ADA_INTERVAL:
            return
        stats = torch.stack([self.signs, self.seen])
        if reduce is not None:
            stats = reduce(stats)
        r = stats[0] / stats[1].clamp(min=1)
        step_size = images_per_step * ADA_INTERVAL / (ADA_KIMG * 1000)
        self.p = (self.p + torch.sign(r - self.target) * step_size).clamp(0.0, 1.0)
        self.signs.zero_()
        self.seen.zero_()

    def state_dict(self) -> dict:
        return {
            "mode": self.mode,
            "p": self.p.detach().cpu(),
            "rng": self.rng.get_state(),
            "rng_device": self.device.type,
            "signs": self.signs.cpu(),
            "seen": self.seen.cpu(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.p = state["p"].to(self.device).float()
        if state.get("rng_device", "cpu") == self.device.type:
            self.rng.set_state(state["rng"])
        self.signs, self.seen = state["signs"].to(self.device), state["seen"].to(self.device)


def colour(
    x: torch.Tensor, brightness: torch.Tensor, saturation: torch.Tensor, contrast: torch.Tensor, on: torch.Tensor
) -> torch.Tensor:
    """DiffAugment's colour: brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5)."""
    keep = on.to(x.dtype)[:, None, None, None]
    y = x + (brightness.to(x.dtype) - 0.5)[:, None, None, None]
    mean = y.mean(dim=1, keepdim=True)
    y = (y - mean) * (saturation.to(x.dtype) * 2)[:, None, None, None] + mean
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - mean) * (contrast.to(x.dtype) + 0.5)[:, None, None, None] + mean
    return keep * y + (1 - keep) * x


def translate(x: torch.Tensor, shift: torch.Tensor, on: torch.Tensor, limit: int) -> torch.Tensor:
    """Shift each image by up to `limit` pixels in y and x (integers), filling with zeros (the range's middle)."""
    b, _, h, w = x.shape
    dy, dx = ((shift * (2 * limit + 1)).floor().long() - limit).unbind(1)
    dy, dx = dy * on, dx * on
    ys = torch.arange(h, device=x.device)[None, :] - dy[:, None]  # [b, h]: source row of each output row
    xs = torch.arange(w, device=x.device)[None, :] - dx[:, None]
    valid = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
    ys, xs = ys.clamp(0, h - 1), xs.clamp(0, w - 1)
    index = (ys[:, :, None] * w + xs[:, None, :]).view(b, 1, h * w).expand(-1, x.shape[1], -1)
    moved = x.reshape(b, x.shape[1], h * w).gather(2, index).view_as(x)  # gather passes gradients back
    return moved * valid[:, None].to(x.dtype)


def cutout(x: torch.Tensor, centre: torch.Tensor, on: torch.Tensor, side: int) -> torch.Tensor:
    """Zero a side x side square (clipped at the borders) centred anywhere in each image."""
    b, _, h, w = x.shape
    cy, cx = (centre[:, 0] * h).floor().long(), (centre[:, 1] * w).floor().long()
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    inside_y = (ys >= (cy - side // 2)[:, None]) & (ys < (cy - side // 2 + side)[:, None])
    inside_x = (xs >= (cx - side // 2)[:, None]) & (xs < (cx - side // 2 + side)[:, None])
    hole = inside_y[:, :, None] & inside_x[:, None, :] & on[:, None, None]
    return x * (~hole)[:, None].to(x.dtype)
