"""The training loop: Algorithm 1 of Goodfellow et al. (2014), with k discriminator steps per
generator step, and each network frozen while the other one learns.

Everything random after initialisation comes from two sources whose state is in the checkpoint
or derived from it: the data order of epoch e is a permutation seeded by (seed, e), and the noise
comes from one torch.Generator. So a run stopped and resumed ends with the very same weights
(on CPU) as a run never interrupted.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gankit_runtime import GankitError, make_grid
from gankit_runtime.files import atomic_path
from gankit_runtime.images import save_png

from . import __version__
from .checkpoint import FILENAME, load_checkpoint, save_checkpoint
from .config import ModelConfig, TrainConfig, default_data_dir
from .data import Dataset, load_dataset, to_model_range
from .models import build_models, sample_uint8
from .monitor import FailureWatch
from .progress import Progress

EMA_RAMPUP = 0.05  # the EMA half-life is at most 5% of the images seen so far (StyleGAN's ramp-up)
SAMPLE_SEEDS = range(64)  # the sample grid shows seeds 0-63: the same images `generate --seeds 0-63` gives
SAMPLE_COLUMNS = 8  # conditional grids: one row per class, seeds 0-7


@dataclass
class StepStats:
    loss_d: float
    loss_g: float
    d_real: float  # mean D(x) over the last D step's real batch
    d_fake: float  # mean D(G(z)) over the last D step's fake batch


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    # BCE with label 1 (or 1 - smoothing) on real and 0 on fake: -log D(x) - log(1 - D(G(z))), as logits.
    real = F.softplus(-logits_real) if not smoothing else \
        (1 - smoothing) * F.softplus(-logits_real) + smoothing * F.softplus(logits_real)
    return real.mean() + F.softplus(logits_fake).mean()


def generator_loss(logits_fake: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "non-saturating":
        return F.softplus(-logits_fake).mean()  # -log D(G(z)): strong gradients early on
    return -F.softplus(logits_fake).mean()  # minimax: log(1 - D(G(z))), the original form


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))


class Trainer:
    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, data: Dataset, device: str = "cpu"):
        self.model_cfg, self.cfg, self.data, self.device = model_cfg, train_cfg, data, torch.device(device)
        if model_cfg.conditional and (data.labels is None or len(data.classes) != model_cfg.num_classes):
            raise GankitError(f"a conditional model with {model_cfg.num_classes} classes needs data with as many "
                              f"classes; {data.name} has {len(data.classes) if data.labels is not None else 'no'} "
                              "(an image folder's classes are its sub-folders)")
        torch.manual_seed(train_cfg.seed)
        # Convolutions run 34% faster in channels_last on a 2-core Zen 3 (DCGAN-28: 619 against 462 img/s; torch.compile
        # gained 13% alone and nothing on top of it, so it is not used). The MLP has no use for it.
        self.memory_format = torch.channels_last if model_cfg.kind == "dcgan" else torch.contiguous_format
        self.G, self.D = (m.to(self.device, memory_format=self.memory_format) for m in build_models(model_cfg))
        # On CUDA: bf16 autocast (no loss scaling needed) and real batches staged in pinned memory.
        self.cuda = self.device.type == "cuda"
        self._staging = self._copied = None
        if self.cuda:
            b, shape = train_cfg.batch_size, tuple(data.images.shape[1:])
            self._staging = torch.empty((b, *shape), dtype=torch.uint8).pin_memory()
            self._copied = torch.cuda.Event()
        betas = (train_cfg.beta1, train_cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=train_cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=train_cfg.lr_d, betas=betas)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if train_cfg.ema_kimg > 0 else None
        self.noise = torch.Generator().manual_seed(train_cfg.seed + 1)
        self.step = 0
        self.steps_per_epoch = len(data) // train_cfg.batch_size // train_cfg.d_steps
        if self.steps_per_epoch < 1:
            raise GankitError(f"the data has {len(data)} images, fewer than one generator step needs "
                              f"(batch size {train_cfg.batch_size} x {train_cfg.d_steps} D steps)")
        self._order: tuple[int, torch.Tensor] | None = None

    # ------------------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "model_config": self.model_cfg.to_dict(), "train_config": self.cfg.to_dict(),
            "generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
            **({"generator_ema": self.G_ema.state_dict()} if self.G_ema is not None else {}),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "step": self.step, "epoch": self.step // self.steps_per_epoch,
            "rng": {"noise": self.noise.get_state(), "torch": torch.get_rng_state()},
            "dataset": self.data.name, "classes": list(self.data.classes),
            "package_version": __version__, "torch_version": str(torch.__version__),
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            self.G.load_state_dict(state["generator"])
            if self.G_ema is not None:
                self.G_ema.load_state_dict(state["generator_ema"])
            self.D.load_state_dict(state["discriminator"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.noise.set_state(state["rng"]["noise"])
            torch.set_rng_state(state["rng"]["torch"])
            self.step = int(state["step"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise GankitError(f"checkpoint does not fit its model config: {str(e).splitlines()[0][:200]}") from None

    # ------------------------------------------------------------------------------ one step
    def _real_batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The index-th batch of the current epoch's order: images, and labels for a conditional model."""
        epoch = self.step // self.steps_per_epoch
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.cfg.seed, epoch, len(self.data)))
        b = self.cfg.batch_size
        idx = self._order[1][index * b:(index + 1) * b]
        labels = self.data.labels[idx].to(self.device) if self.model_cfg.conditional else None
        if self.cuda:  # gather into pinned memory, copy asynchronously, scale on the GPU
            self._copied.synchronize()  # the previous copy out of the staging buffer is done
            torch.index_select(self.data.images, 0, idx, out=self._staging)
            batch = self._staging.to(self.device, non_blocking=True)
            self._copied.record()
            return to_model_range(batch).contiguous(memory_format=self.memory_format), labels
        return to_model_range(self.data.images[idx]).contiguous(memory_format=self.memory_format), labels

    def _z(self) -> torch.Tensor:
        # Drawn on the CPU generator and moved: the same noise on every device.
        return torch.randn(self.cfg.batch_size, self.model_cfg.z_dim, generator=self.noise).to(self.device)

    def train_step(self) -> StepStats:
        """k discriminator steps with G frozen, then one generator step with D frozen.

        Conditional models: the fakes take the labels of the real batch beside them, so D sees the same
        label distribution on both sides and only the images tell them apart; the G step reuses the last ones.
        """
        k = self.cfg.d_steps
        first = (self.step % self.steps_per_epoch) * k
        for j in range(k):
            real, labels = self._real_batch(first + j)
            with torch.no_grad(), self._autocast():
                fake = self.G(self._z(), labels)
            with self._autocast():
                logits_real, logits_fake = self.D(real, labels).float(), self.D(fake, labels).float()
            loss_d = discriminator_loss(logits_real, logits_fake, self.cfg.label_smoothing)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()

        self.D.requires_grad_(False)  # D's weights get no gradient from the generator's loss
        with self._autocast():
            logits = self.D(self.G(self._z(), labels), labels).float()
        loss_g = generator_loss(logits, self.cfg.g_loss)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.step += 1
        if self.G_ema is not None:
            self._update_ema()
        return StepStats(loss_d.item(), loss_g.item(), torch.sigmoid(logits_real).mean().item(),
                         torch.sigmoid(logits_fake).mean().item())

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda)

    @torch.no_grad()
    def _update_ema(self) -> None:
        images_seen = self.step * self.cfg.batch_size
        half_life = min(self.cfg.ema_kimg * 1000, images_seen * EMA_RAMPUP)
        beta = 0.5 ** (self.cfg.batch_size / max(half_life, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.lerp_(p, 1.0 - beta)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)  # batch-norm statistics are taken as they are, not averaged

    # ------------------------------------------------------------------------------ outputs
    @property
    def G_out(self) -> torch.nn.Module:
        """The generator to show, evaluate and export: the EMA one when there is one."""
        return self.G_ema if self.G_ema is not None else self.G

    def sample_grid(self) -> np.ndarray:
        cfg = self.model_cfg
        if not cfg.conditional:
            return make_grid(sample_uint8(self.G_out, SAMPLE_SEEDS, cfg.z_dim, self.device), columns=8)
        # One row per class, seeds 0-7: `generate --seeds 0-7` gives the same images.
        seeds = list(range(SAMPLE_COLUMNS)) * cfg.num_classes
        labels = np.repeat(np.arange(cfg.num_classes), SAMPLE_COLUMNS)
        return make_grid(sample_uint8(self.G_out, seeds, cfg.z_dim, self.device, labels=labels), columns=SAMPLE_COLUMNS)


def train(out: Path, model_cfg: ModelConfig | None, train_cfg: TrainConfig | None, *, resume: bool = False,
          epochs: int | None = None, max_steps: int | None = None, device: str = "cpu",
          conditional: bool = False, log=None) -> Path:
    """Train into run folder `out` (checkpoint.pt, metrics.jsonl, samples/); returns the checkpoint path.

    resume: continue the run in `out` with its own configs; `epochs` and `max_steps` may be raised.
    max_steps: stop after this many generator steps in all (counting those of a resumed run).
    conditional: a class-conditional model, with as many classes as the data has.
    """
    log = log or sys.stderr
    out = Path(out)
    ckpt = out / FILENAME
    if device != "cpu" and not torch.cuda.is_available():
        raise GankitError(f"device {device} requested but torch sees no CUDA GPU")
    if resume:
        state = load_checkpoint(ckpt)
        model_cfg = ModelConfig.from_dict(state["model_config"])
        train_cfg = TrainConfig.from_dict({**state["train_config"], **({"epochs": epochs} if epochs else {})})
    elif ckpt.exists():
        raise GankitError(f"{out} already holds a run; continue it with --resume or choose another --out")
    if out.exists() and not out.is_dir():
        raise GankitError(f"output {out} exists and is not a folder")
    data_dir = Path(train_cfg.data_dir) if train_cfg.data_dir else default_data_dir()
    data = load_dataset(train_cfg.data, model_cfg.size, model_cfg.channels, data_dir)
    if conditional and not resume:
        if data.labels is None or len(data.classes) < 2:
            raise GankitError(f"--conditional needs labelled data: {train_cfg.data} has no classes (give an image "
                              "folder with one sub-folder per class, at least two)")
        model_cfg = replace(model_cfg, num_classes=len(data.classes))
    trainer = Trainer(model_cfg, train_cfg, data, device)
    if resume:
        trainer.load_state_dict(state)
    try:
        (out / "samples").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GankitError(f"cannot write to {out}: {e.strerror or e}") from None

    watch = FailureWatch(log)
    monitor = None
    if train_cfg.eval_every:
        if (data.name, model_cfg.channels, model_cfg.size) != ("mnist", 1, 28):
            raise GankitError("--eval-every scores samples with the MNIST classifier: it needs --data mnist at 28x28x1")
        from .monitor import Monitor

        monitor = Monitor(out, data_dir, train_cfg.eval_samples, log)
        watch = monitor.watch

    spe = trainer.steps_per_epoch
    last = train_cfg.epochs * spe if max_steps is None else min(max_steps, train_cfg.epochs * spe)
    images_per_step = train_cfg.batch_size * train_cfg.d_steps
    kind = f"conditional {model_cfg.kind} ({model_cfg.num_classes} classes)" if model_cfg.conditional else model_cfg.kind
    print(f"training {kind} on {data.name}: {len(data)} images {tuple(data.images.shape[1:])}, "
          f"{spe} steps per epoch, step {trainer.step} -> {last}, device {device}, "
          f"{torch.get_num_threads()} threads", file=log)
    progress = Progress(log)
    sums, count, started = np.zeros(4), 0, time.perf_counter()
    while trainer.step < last:
        s = trainer.train_step()
        sums += (s.loss_d, s.loss_g, s.d_real, s.d_fake)
        count += 1
        watch.step(s.d_fake)
        epoch, in_epoch = divmod(trainer.step, spe)
        if monitor and trainer.step % train_cfg.eval_every == 0:
            paused = time.perf_counter()
            _evaluate(trainer, monitor, out, progress)
            started += time.perf_counter() - paused  # eval time is not training time
        seconds = time.perf_counter() - started
        mean = sums / count
        figures = (f"loss_D {mean[0]:.3f} loss_G {mean[1]:.3f} D(x) {mean[2]:.3f} D(G(z)) {mean[3]:.3f} "
                   f"{count * images_per_step / seconds:.0f} img/s")
        progress.update(f"epoch {epoch + 1}/{train_cfg.epochs} {figures}", in_epoch, spe)
        if in_epoch == 0 or trainer.step == last:  # end of an epoch, or the requested stop
            name = f"epoch_{epoch:03d}.png" if in_epoch == 0 else f"step_{trainer.step:07d}.png"
            save_png(trainer.sample_grid(), out / "samples" / name, compress_level=6)
            save_checkpoint(trainer.state_dict(), ckpt)
            _append(out, {"step": trainer.step, "epoch": trainer.step / spe, "loss_d": mean[0], "loss_g": mean[1],
                          "d_real": mean[2], "d_fake": mean[3], "images_per_s": count * images_per_step / seconds,
                          "seconds": seconds, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
            _plot(out)
            progress.end(f"step {trainer.step} (epoch {trainer.step / spe:.2f}) {figures}")
            sums, count, started = np.zeros(4), 0, time.perf_counter()
    return ckpt


def _evaluate(trainer: Trainer, monitor, out: Path, progress: Progress) -> None:
    """--eval-every: score the generator, checkpoint, and keep best.pt when FD is the lowest so far."""
    f = monitor.evaluate(trainer.G_out, trainer.model_cfg, trainer.device)
    best = monitor.is_best(f["fd"])
    save_checkpoint(trainer.state_dict(), out / FILENAME)
    if best:
        with atomic_path(out / "best.pt") as tmp:
            shutil.copyfile(out / FILENAME, tmp)
    _append(out, {"step": trainer.step, "epoch": trainer.step / trainer.steps_per_epoch, "eval": f, "best": best})
    accuracy = f" label accuracy {f['label_accuracy']:.2%}" if "label_accuracy" in f else ""
    progress.end(f"step {trainer.step} eval: FD {f['fd']:.3f} confident {f['confident']:.1%} recall {f['recall']:.3f} "
                 f"classes {f['class_share_min']:.1%}-{f['class_share_max']:.1%}{accuracy}{' (best)' if best else ''}")
    _plot(out)


def _append(run: Path, record: dict) -> None:
    # One write of one whole line: a crash cannot leave half a record.
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def _plot(run: Path) -> None:
    try:
        from .monitor import plot_run

        plot_run(run)
    except ImportError:  # matplotlib is optional: the numbers are in metrics.jsonl
        pass
