"""Watching a run: eval figures every N steps, the best checkpoint by FD, a plot, failure warnings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from gankit_runtime.evaluation.datasets import load_mnist_like
from gankit_runtime.evaluation.evaluate import CLASSIFIERS, FeatureExtractor, eval_labels, figures
from gankit_runtime.evaluation.metrics import knn_radii
from gankit_runtime.files import atomic_path

from .config import ModelConfig
from .models import sample_uint8

D_FAKE_FLOOR = 0.02  # D(G(z)) below this for long: D wins outright, G's gradient carries nothing
D_FAKE_PATIENCE = 500  # generator steps
COLLAPSE_SHARE = 0.3  # one class above this share of samples (10% each in MNIST): mode collapse


class FailureWatch:
    """Warns once, on the log, when training fails in a way that has a name."""

    def __init__(self, log=None):
        self.log = log or sys.stderr
        self.low_d_fake_steps = 0
        self.warned: set[str] = set()
        self.g_loss = "non-saturating"  # the run's (set by the training loop): what the advice may suggest

    def step(self, d_fake: float) -> None:
        self.low_d_fake_steps = self.low_d_fake_steps + 1 if d_fake < D_FAKE_FLOOR else 0
        if self.low_d_fake_steps == D_FAKE_PATIENCE:
            advice = "--g-loss non-saturating" if self.g_loss == "minimax" else "--r1 1 (an R1 penalty on D)"
            self.warn(
                "d_wins",
                f"warning: D(G(z)) has stayed below {D_FAKE_FLOOR} for {D_FAKE_PATIENCE} steps: "
                "the discriminator wins outright and the generator learns nothing "
                f"(try a lower --lr-d, or {advice})",
            )

    def classes(self, figures: dict) -> None:
        if figures["class_share_max"] > COLLAPSE_SHARE:
            self.warn(
                "collapse",
                f"warning: {figures['class_share_max']:.0%} of samples are one class "
                f"(counts {figures['class_counts']}): the generator is collapsing to few modes",
            )

    def warn(self, key: str, text: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            print(text, file=self.log)


class Scorer:
    """eval's figures for a torch generator in training: its samples against a data set's test split, in the
    features of that data set's shipped classifier unless another classifier is given."""

    def __init__(self, data_dir: Path, samples: int, classifier: Path | None = None, data: str = "mnist"):
        self.samples = samples
        self.extract = FeatureExtractor(classifier or CLASSIFIERS[data])
        self.real, _ = self.extract(load_mnist_like(data, data_dir)["x_test"][..., None])
        self.real_radii = knn_radii(self.real)  # the real manifold's balls, the same at every evaluation

    def evaluate(self, g: torch.nn.Module, cfg: ModelConfig, device) -> dict:
        labels = eval_labels(self.samples, cfg.num_classes)
        images = sample_uint8(g, range(self.samples), cfg.z_dim, device, labels=labels)
        return figures(*self.extract(images), self.real, labels, self.real_radii)


class Monitor:
    """--eval-every: scores the run's generator, tracks the best FD, warns on collapse."""

    def __init__(self, out: Path, data_dir: Path, samples: int, data: str = "mnist", log=None):
        self.scorer = Scorer(data_dir, samples, data=data)
        self.watch = FailureWatch(log)
        # A resumed run keeps its best so far, so best.pt is never replaced by a worse generator.
        past = read_metrics(out)
        self.best_fd = min(
            (
                r["eval"]["fd"]
                for r in past
                if isinstance(r.get("eval"), dict) and isinstance(r["eval"].get("fd"), (int, float))
            ),
            default=float("inf"),
        )

    def evaluate(self, g: torch.nn.Module, cfg: ModelConfig, device) -> dict:
        result = self.scorer.evaluate(g, cfg, device)
        self.watch.classes(result)
        return result

    def is_best(self, fd: float) -> bool:
        if fd < self.best_fd:
            self.best_fd = fd
            return True
        return False


def read_metrics(run: Path) -> list[dict]:
    """metrics.jsonl's records; a line cut short by a crash, or any line that is not a JSON object, is
    skipped (the file is appended to, one line per write)."""
    path = run / "metrics.jsonl"
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict):
            records.append(r)
    return records


def plot_run(run: Path) -> None:
    """plot.png beside metrics.jsonl: losses, D(x), D(G(z)) and, when present, the eval figures over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run)
    train = [r for r in records if "loss_d" in r]
    evals = [r for r in records if "eval" in r]
    panels = 3 if evals else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6))
    steps = [r["step"] for r in train]
    dots = {"marker": "o"} if len(steps) < 20 else {}  # a short run has a few records: a line alone would not show
    axes[0].plot(steps, [r["loss_d"] for r in train], label="loss D", **dots)
    axes[0].plot(steps, [r["loss_g"] for r in train], label="loss G", **dots)
    axes[1].plot(steps, [r["d_real"] for r in train], label="D(x)", **dots)
    axes[1].plot(steps, [r["d_fake"] for r in train], label="D(G(z))", **dots)
    axes[1].set_ylim(0, 1)
    if evals:
        es = [r["step"] for r in evals]
        axes[2].plot(es, [r["eval"]["fd"] for r in evals], "o-", label="FD")
        axes[2].set_yscale("log")
        twin = axes[2].twinx()
        twin.plot(es, [r["eval"]["confident"] for r in evals], "s--", color="tab:green", label="confident")
        twin.plot(es, [r["eval"]["recall"] for r in evals], "^--", color="tab:red", label="recall")
        twin.set_ylim(0, 1)
        twin.legend(loc="center right", fontsize=8)
    for ax in axes:
        ax.set_xlabel("generator step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(run / "plot.png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
