"""The classifiers whose features measure generated images: one for MNIST, one for Fashion-MNIST.

Inception features say little about 28x28 grey images, so each feature space is a small CNN trained here on
the data set's training split and exported to ONNX: input `images` float32 [N, 1, 28, 28] in [-1, 1] (the
generator's range), outputs `logits` [N, 10] and `features` [N, 128] (the penultimate layer).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from gankit_runtime import GankitError
from gankit_runtime.evaluation.datasets import load_mnist_like
from gankit_runtime.files import atomic_path
from torch import nn

from .config import default_data_dir

FEATURES = 128


class DigitClassifier(nn.Module):
    """Two conv blocks and a 128-feature layer: eval's feature space on 28x28 grey (the defaults), and the fixed
    classifier that bench/ and check-augmentation train on other sizes (height size, width width) and channels."""

    def __init__(self, classes: int = 10, channels: int = 1, size: int = 28, width: int | None = None):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 7x7
            nn.Flatten(),
            nn.Linear(64 * (size // 4) * ((width or size) // 4), FEATURES),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURES, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(self.dropout(features)), features


def _scaled(x: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] (grey) or [N, H, W, C] -> float32 [N, C, H, W] in [-1, 1]."""
    t = torch.from_numpy(x)
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    return t.float().div_(127.5).sub_(1.0).contiguous()


def _shift(batch: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translations of up to max_shift pixels (padding with background): cheap augmentation."""
    h, w = batch.shape[-2:]
    pad = F.pad(batch, (max_shift,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=gen).tolist()
    return pad[:, :, dy : dy + h, dx : dx + w]


def predict(model: nn.Module, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """The class of each uint8 image x [N, H, W] or [N, H, W, C]: int64 [N]."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits, _ = model(_scaled(x[i : i + batch]))
            out.append(logits.argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    return float((predict(model, x, batch) == y).mean())


def fit(
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    batch_size: int = 128,
    seed: int = 0,
    on_epoch=None,
    class_weight: np.ndarray | None = None,
    classes: int = 10,
    on_step=None,
    sample_weight: np.ndarray | None = None,
) -> nn.Module:
    """Train a fresh DigitClassifier on uint8 images x [N, 28, 28] and labels y [N] for a fixed number of
    steps (Adam, one-cycle schedule, random 2-pixel shifts); returns it in eval mode.

    A fixed step budget, whatever N: what the augmentation benchmark compares data sets with.
    on_epoch(model, epoch, loss) is called after each pass over the data, on_step(step, steps) after each step.
    class_weight [classes]: weights of the cross-entropy per class (the usual remedy for imbalance, to compare
    generated data with). sample_weight [N]: a weight per image instead, normalised over each batch as torch
    normalises class weights (sum of weight x loss over sum of weight), so class_weight[y] gives the same loss.
    """
    if class_weight is not None and sample_weight is not None:
        raise GankitError("give class_weight or sample_weight, not both")
    if sample_weight is not None and (len(sample_weight) != len(x) or not np.all(np.asarray(sample_weight) > 0)):
        raise GankitError(f"sample_weight needs one positive weight per image ({len(x)})")
    if len(x) < batch_size:
        raise GankitError(f"{len(x)} training images are fewer than one batch of {batch_size}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DigitClassifier(classes, channels=1 if x.ndim == 3 else x.shape[3], size=x.shape[1], width=x.shape[2])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    images, labels = _scaled(x), torch.from_numpy(y.astype(np.int64))
    weight = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
    per_image = None if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float32)
    step, epoch = 0, 0
    while step < steps:
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(len(x) // batch_size):
            idx = order[i * batch_size : (i + 1) * batch_size]
            logits, _ = model(_shift(images[idx], gen))
            if per_image is None:
                loss = F.cross_entropy(logits, labels[idx], weight=weight)
            else:
                w = per_image[idx]
                loss = (F.cross_entropy(logits, labels[idx], reduction="none") * w).sum() / w.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if on_step:
                on_step(step, steps)
            if step == steps:
                break
        epoch += 1
        if on_epoch:
            on_epoch(model, epoch, loss.item())
    return model.eval()


def train_classifier(
    data: str = "mnist", epochs: int = 4, batch_size: int = 128, seed: int = 0, data_dir: Path | None = None, log=None
) -> tuple[nn.Module, float]:
    """Train on the 60k training images of `data` (mnist or fashion-mnist); returns (model in eval mode,
    test accuracy)."""
    log = log or sys.stderr
    arrays = load_mnist_like(data, data_dir or default_data_dir())
    x, y = arrays["x_train"], arrays["y_train"]
    started = [time.perf_counter()]

    def report(model, epoch, loss):
        acc = accuracy(model, arrays["x_test"], arrays["y_test"])
        print(
            f"classifier epoch {epoch}/{epochs}: loss {loss:.4f}, test accuracy {acc:.4f} "
            f"({time.perf_counter() - started[0]:.0f} s)",
            file=log,
        )
        started[0] = time.perf_counter()

    model = fit(x, y, epochs * (len(x) // batch_size), batch_size, seed, on_epoch=report)
    return model, accuracy(model, arrays["x_test"], arrays["y_test"])


def export_classifier(model: nn.Module, out: Path, test_accuracy: float, dataset: str = "mnist") -> None:
    """One self-contained ONNX file with a dynamic batch, outputs logits and features."""
    from .export import onnx_program

    program = onnx_program(
        model,
        (torch.zeros(2, 1, 28, 28),),
        ["images"],
        ["logits", "features"],
        {
            "gankit.format": "classifier-1",
            "dataset": dataset,
            "test_accuracy": f"{test_accuracy:.4f}",
            "input_range": "-1,1",
        },
    )
    try:
        with atomic_path(Path(out)) as tmp:
            program.save(str(tmp), external_data=False)
    except OSError as e:
        raise GankitError(f"could not write {out}: {e.strerror or e}") from None
