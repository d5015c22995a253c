"""The training loop: Algorithm 1 of Goodfellow et al. (2014), with k discriminator steps per
generator step, and each network frozen while the other one learns.

Everything random after initialisation comes from two sources whose state is in the checkpoint
or derived from it: the data order of epoch e is a permutation seeded by (seed, e), and the noise
comes from one torch.Generator. So a run stopped and resumed ends with the very same weights
(on CPU) as a run never interrupted.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from gankit_runtime import GankitError, Interrupted, make_grid
from gankit_runtime.files import atomic_path
from gankit_runtime.images import save_png

from . import __version__
from .checkpoint import FILENAME, load_checkpoint, save_checkpoint
from .config import CHECKPOINT_MINUTES, ModelConfig, TrainConfig, default_data_dir
from .augment import Augment
from .data import Dataset, load_dataset, to_model_range
from .distributed import World, any_rank, average, leave, sync_batch_norm, world_from_env
from .models import build_models, sample_uint8
from .monitor import FailureWatch
from .progress import Progress

EMA_RAMPUP = 0.05  # the EMA half-life is at most 5% of the images seen so far (StyleGAN's ramp-up)
SAMPLE_SEEDS = range(64)  # the sample grid shows seeds 0-63: the same images `generate --seeds 0-63` gives
SAMPLE_COLUMNS = 8  # conditional grids: one row per class, seeds 0-7


@dataclass
class StepStats:
    """0-d tensors on the training device: reading them waits for the GPU, so the loop reads them in groups."""
    loss_d: torch.Tensor
    loss_g: torch.Tensor
    d_real: torch.Tensor  # mean D(x) over the last D step's real batch
    d_fake: torch.Tensor  # mean D(G(z)) over the last D step's fake batch

    def stacked(self) -> torch.Tensor:
        return torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in
                            (self.loss_d, self.loss_g, self.d_real, self.d_fake)])


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
    """One training run's state and step. world: the process group (gankit.distributed); each rank takes its
    slice of every global batch, and DDP averages the gradients."""

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, data: Dataset, device: str = "cpu",
                 world: World = World()):
        self.model_cfg, self.cfg, self.data, self.device = model_cfg, train_cfg, data, torch.device(device)
        self.world = world
        if train_cfg.batch_size % world.size:
            raise GankitError(f"--batch-size {train_cfg.batch_size} is the global batch: it must divide evenly among "
                              f"{world.size} processes")
        if model_cfg.conditional and (data.labels is None or len(data.classes) != model_cfg.num_classes):
            raise GankitError(f"a conditional model with {model_cfg.num_classes} classes needs data with as many "
                              f"classes; {data.name} has {len(data.classes) if data.labels is not None else 'no'} "
                              "(an image folder's classes are its sub-folders)")
        torch.manual_seed(train_cfg.seed)
        # Convolutions run 34% faster in channels_last on a 2-core Zen 3 (DCGAN-28: 619 against 462 img/s; torch.compile
        # gained 13% alone and nothing on top of it, so it is not used). The MLP has no use for it.
        self.memory_format = torch.channels_last if model_cfg.kind == "dcgan" else torch.contiguous_format
        self.G, self.D = (m.to(self.device, memory_format=self.memory_format) for m in build_models(model_cfg))
        if world.active and train_cfg.sync_bn:  # batch statistics of the global batch, not of each rank's slice
            self.G, self.D = sync_batch_norm(self.G), sync_batch_norm(self.D)
        # What takes gradients in each step: DDP wrappers under torchrun (they average gradients in backward),
        # the modules themselves otherwise. Everything else (G under no_grad, D frozen in G's step, samples)
        # uses the modules directly.
        self.G_train, self.D_train = self.G, self.D
        if world.active:  # buffers (batch-norm statistics) stay each rank's own, or global with --sync-bn
            ids = [self.device.index] if self.device.type == "cuda" else None
            no_buffer_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in \
                inspect.signature(DDP.__init__).parameters else {"broadcast_buffers": False}  # torch < 2.12
            self.G_train = DDP(self.G, device_ids=ids, **no_buffer_sync)
            self.D_train = DDP(self.D, device_ids=ids, **no_buffer_sync)
        # On CUDA: bf16 autocast (no loss scaling needed); the data set lives on the GPU when it takes at most a
        # quarter of its memory (MNIST: 47 MB, 200k 64x64 faces: 2.5 GB), else real batches are staged through
        # pinned memory. Noise is drawn on the device. Nothing in a step waits for the GPU (no host syncs).
        self.cuda = self.device.type == "cuda"
        self._staging = self._copied = None
        self.images, self.labels = data.images, data.labels
        if self.cuda:
            if data.images.numel() <= torch.cuda.get_device_properties(self.device).total_memory // 4:
                self.images = data.images.to(self.device)
                self.labels = None if data.labels is None else data.labels.to(self.device)
            else:
                b, shape = train_cfg.batch_size, tuple(data.images.shape[1:])
                self._staging = torch.empty((b, *shape), dtype=torch.uint8).pin_memory()
                self._copied = torch.cuda.Event()
        betas = (train_cfg.beta1, train_cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=train_cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=train_cfg.lr_d, betas=betas)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if train_cfg.ema_kimg > 0 else None
        self.augment = Augment(train_cfg.augment, train_cfg.augment_p, train_cfg.seed + 2, train_cfg.batch_size,
                               world.slice(train_cfg.batch_size) if world.active else slice(None), self.device)
        self.noise = torch.Generator(self.device).manual_seed(train_cfg.seed + 1)
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
            "rng": {"noise": self.noise.get_state(), "noise_device": self.device.type, "torch": torch.get_rng_state()},
            **({"augment": self.augment.state_dict()} if self.augment.active else {}),
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
            if state["rng"].get("noise_device", "cpu") == self.device.type:
                self.noise.set_state(state["rng"]["noise"])
            else:  # CPU and CUDA generators differ: the noise goes on from a seed of (seed, step) instead
                self.noise.manual_seed(self.cfg.seed + 1 + 1000003 * int(state["step"]))
            torch.set_rng_state(state["rng"]["torch"])
            if self.augment.active:
                self.augment.load_state_dict(state["augment"])
            self.step = int(state["step"])
            if self.step < 0:
                raise ValueError(f"negative step {self.step}")
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise GankitError(f"checkpoint does not fit its model config: {str(e).splitlines()[0][:200]}") from None

    # ------------------------------------------------------------------------------ one step
    def _real_batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The index-th batch of the current epoch's order: images, and labels for a conditional model."""
        epoch = self.step // self.steps_per_epoch
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.cfg.seed, epoch, len(self.data)))
        b = self.cfg.batch_size
        idx = self._order[1][index * b:(index + 1) * b][self.world.slice(b)]
        if self._staging is None:  # CPU, or the data set on the GPU
            if self.images.device != idx.device:
                idx = idx.to(self.images.device, non_blocking=True)
            labels = self.labels[idx] if self.model_cfg.conditional else None
            return to_model_range(self.images[idx]).contiguous(memory_format=self.memory_format), labels
        # CUDA with the data in host memory: gather into pinned memory, copy asynchronously, scale on the GPU
        labels = self.labels[idx].to(self.device) if self.model_cfg.conditional else None
        self._copied.synchronize()  # the previous copy out of the staging buffer is done
        torch.index_select(self.images, 0, idx, out=self._staging)
        batch = self._staging.to(self.device, non_blocking=True)
        self._copied.record()
        return to_model_range(batch).contiguous(memory_format=self.memory_format), labels

    def _z(self) -> torch.Tensor:
        # Drawn on the device by the run's own generator (its state is in the checkpoint).
        # Every rank draws the whole global batch's noise and keeps its slice: the noise of one process's run.
        z = torch.randn(self.cfg.batch_size, self.model_cfg.z_dim, generator=self.noise, device=self.device)
        return z[self.world.slice(self.cfg.batch_size)] if self.world.active else z

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
            with self._autocast():  # D sees real and fake through the same augmentation (none unless --augment)
                logits_real = self.D_train(self.augment(real), labels).float()
                logits_fake = self.D_train(self.augment(fake), labels).float()
            self.augment.observe(logits_real)
            loss_d = discriminator_loss(logits_real, logits_fake, self.cfg.label_smoothing)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()

        self.D.requires_grad_(False)  # D's weights get no gradient from the generator's loss
        with self._autocast():
            logits = self.D(self.augment(self.G_train(self._z(), labels)), labels).float()
        loss_g = generator_loss(logits, self.cfg.g_loss)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.step += 1
        self.augment.adjust(self.step, self.cfg.batch_size * k, self._sum_over_ranks if self.world.active else None)
        if self.G_ema is not None:
            self._update_ema()
        return StepStats(loss_d.detach(), loss_g.detach(), torch.sigmoid(logits_real.detach()).mean(),
                         torch.sigmoid(logits_fake.detach()).mean())

    @staticmethod
    def _sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t)
        return t

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda)

    @torch.no_grad()
    def _update_ema(self) -> None:
        images_seen = self.step * self.cfg.batch_size
        half_life = min(self.cfg.ema_kimg * 1000, images_seen * EMA_RAMPUP)
        beta = 0.5 ** (self.cfg.batch_size / max(half_life, 1e-8))
        # One fused update for all tensors (one kernel launch per group on CUDA, not one per tensor)
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - beta)
        buffers = list(self.G_ema.buffers())
        if buffers:  # batch-norm statistics are taken as they are, not averaged
            torch._foreach_copy_(buffers, list(self.G.buffers()))

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


def resume_configs(state: dict, given: dict | None = None) -> tuple[ModelConfig, TrainConfig]:
    """A resumed run's configs: its own, with the changes the user asked for. `given` maps config field
    names (ModelConfig's or TrainConfig's, plus "conditional") to values the user gave explicitly. Those in
    TrainConfig.CHANGEABLE_ON_RESUME apply; any other must equal the run's own, or it is refused in one line
    (a silently ignored --lr-g would be worse than an error)."""
    model_cfg = ModelConfig.from_dict(state.get("model_config"))
    train_cfg = TrainConfig.from_dict(state.get("train_config"))
    changes = {}
    for key, value in (given or {}).items():
        if key in TrainConfig.CHANGEABLE_ON_RESUME:
            changes[key] = value
            continue
        saved = model_cfg.conditional if key == "conditional" else \
            getattr(model_cfg, key) if hasattr(model_cfg, key) else getattr(train_cfg, key)
        if value != saved:
            allowed = ", ".join(f"--{k.replace('_', '-')}" for k in TrainConfig.CHANGEABLE_ON_RESUME)
            raise GankitError(f"--{_option_name(key)} {value} differs from the run's {saved}: a resumed run keeps "
                              f"its settings (it may change {allowed}, --steps, --device, --threads); "
                              "to change it, start a new run with another --out")
    return model_cfg, replace(train_cfg, **changes)


def _option_name(field: str) -> str:
    return {"kind": "model", "size": "image-size", "ema_kimg": "ema"}.get(field, field).replace("_", "-")


class Diverged(GankitError):
    """Non-finite losses: the run stops with its last good checkpoint (every rank at the same step)."""


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class StopSignal:
    """Ctrl-C (SIGINT), SIGTERM (a scheduler's preemption, torchrun stopping a job, a dead launcher) and SIGHUP
    (a closed terminal) ask the training loop to stop at the end of the current step, where the state is whole,
    and checkpoint. A second
    Ctrl-C stops at once (the run folder keeps its previous checkpoint)."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None:  # the second one: no more waiting
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def train(out: Path, model_cfg: ModelConfig | None, train_cfg: TrainConfig | None, *, resume: bool = False,
          given: dict | None = None, max_steps: int | None = None, device: str = "cpu",
          conditional: bool = False, log=None) -> Path:
    """Train into run folder `out` (checkpoint.pt, metrics.jsonl, samples/); returns the checkpoint path.

    resume: continue the run in `out` with its own configs (model_cfg and train_cfg are ignored); `given`
    holds the settings the user gave explicitly (see resume_configs).
    max_steps: stop after this many generator steps in all (counting those of a resumed run).
    conditional: a class-conditional model, with as many classes as the data has.
    Checkpoints at each epoch end, every train_cfg.checkpoint_every steps (default: every few minutes), at
    the requested stop and on Ctrl-C / SIGTERM (then Interrupted is raised). Non-finite losses stop the run
    (GankitError) with the last good checkpoint kept. Under torchrun, trains on every process of the group
    (gankit.distributed); rank 0 writes.
    """
    world, device = world_from_env(device)
    together = False  # every rank ends here at the same step: wait for each other before leaving the group
    try:
        ckpt = _train(out, model_cfg, train_cfg, resume, given, max_steps, device, conditional, log, world)
        together = True
        return ckpt
    except (Interrupted, Diverged):
        together = True
        raise
    except (torch.cuda.OutOfMemoryError, MemoryError):
        raise GankitError(f"out of {'GPU ' if str(device).startswith('cuda') else ''}memory training this model: lower "
                          "--batch-size (or --width, --image-size); checkpoints written so far are kept") from None
    except RuntimeError as e:  # a collective failed: another rank stopped or its machine went away
        if not world.active:
            raise
        reason = " ".join(str(e).split())
        reason = reason if len(reason) <= 160 else reason[:160].rsplit(" ", 1)[0] + " ..."
        raise GankitError(f"rank {world.rank}: lost the other processes ({reason}); the last checkpoint in {out} "
                          "is whole: run the same command with --resume") from None
    finally:
        release_run_folder(out)
        leave(world, together)


def _train(out, model_cfg, train_cfg, resume, given, max_steps, device, conditional, log, world: World) -> Path:
    log = log or sys.stderr
    if not world.is_main:
        log = open(os.devnull, "w")  # one voice: rank 0 reports for the group
    out = Path(out)
    ckpt = out / FILENAME
    check_device(device)
    if resume:
        state = _shared(lambda: load_checkpoint(ckpt), world)
        model_cfg, train_cfg = resume_configs(state, given)
    elif ckpt.exists():
        raise GankitError(f"{out} already holds a run; continue it with --resume or choose another --out")
    if out.exists() and not out.is_dir():
        raise GankitError(f"output {out} exists and is not a folder")
    data_dir = Path(train_cfg.data_dir) if train_cfg.data_dir else default_data_dir()
    if data_dir.exists() and not data_dir.is_dir():
        raise GankitError(f"the data cache {data_dir} (--data-dir or GANKIT_DATA) is a file; give a folder")
    data = _load_data(train_cfg, model_cfg, data_dir, world)
    if conditional and not resume:
        if data.labels is None or len(data.classes) < 2:
            raise GankitError(f"--conditional needs labelled data: {train_cfg.data} has no classes (give an image "
                              "folder with one sub-folder per class, at least two)")
        model_cfg = replace(model_cfg, num_classes=len(data.classes))
    trainer = Trainer(model_cfg, train_cfg, data, device, world)
    if resume:
        trainer.load_state_dict(state)
        del state
    spe = trainer.steps_per_epoch
    last = train_cfg.epochs * spe if max_steps is None else min(max_steps, train_cfg.epochs * spe)
    limit = f"--steps {max_steps}" if last == max_steps else f"--epochs {train_cfg.epochs}"
    if max_steps is not None and max_steps > last:
        print(f"note: --epochs {train_cfg.epochs} ({last} steps) stops the run before --steps {max_steps}: "
              "give a larger --epochs to go further", file=log)
    if last <= trainer.step:
        asked = f"--steps {max_steps}" if max_steps is not None and max_steps <= train_cfg.epochs * spe \
            else f"{train_cfg.epochs} epochs ({train_cfg.epochs * spe} steps)"
        raise GankitError(f"the run in {out} is already at step {trainer.step}, {asked} asks for no more: "
                          "give a larger --epochs or --steps to continue it")
    monitor = None
    if train_cfg.eval_every:
        if (data.name, model_cfg.channels, model_cfg.size) != ("mnist", 1, 28):
            raise GankitError("--eval-every scores samples with the MNIST classifier: it needs --data mnist at 28x28x1")
        if world.is_main:
            from .monitor import Monitor

            monitor = Monitor(out, data_dir, train_cfg.eval_samples, log)
    made_out, made_samples = not out.exists(), not os.path.lexists(out / "samples")
    if world.is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
            claim_run_folder(out)
            refuse_links(out, ("samples", "metrics.jsonl", "best.pt", "plot.png"))
            (out / "samples").mkdir(exist_ok=True)
        except OSError as e:
            raise GankitError(f"cannot write to {out}: {e.strerror or e}") from None
    kind = f"conditional {model_cfg.kind} ({model_cfg.num_classes} classes)" if model_cfg.conditional else model_cfg.kind
    if world.active:
        print(f"torchrun: {world.size} processes, backend {world.backend}, global batch {train_cfg.batch_size} "
              f"({train_cfg.batch_size // world.size} per process), batch norm "
              f"{'synchronised (--sync-bn)' if train_cfg.sync_bn else 'per process'}; rank 0 writes", file=log)
    print(f"training {kind} on {data.name}: {len(data)} images {tuple(data.images.shape[1:])}, "
          f"{spe} steps per epoch, step {trainer.step} -> {last} ({limit}), device {device}, "
          f"{torch.get_num_threads()} threads", file=log)
    loop = _Loop(trainer, out, last, monitor, log)
    try:
        with StopSignal() as stop:
            loop.run(stop)
    except BaseException:
        if world.is_main and loop.saved_step is None and made_samples:  # a run that never checkpointed: no trace
            shutil.rmtree(out if made_out else out / "samples", ignore_errors=True)
        raise
    return ckpt


def _load_data(train_cfg: TrainConfig, model_cfg: ModelConfig, data_dir: Path, world: World) -> Dataset:
    """The training data; under torchrun rank 0 fetches and caches it first, and the others then read the cache
    (n ranks never download at once)."""
    if world.active and not world.is_main:
        dist.barrier()
    try:
        return load_dataset(train_cfg.data, model_cfg.size, model_cfg.channels, data_dir)
    finally:
        if world.active and world.is_main:
            dist.barrier()


def _shared(load, world: World):
    """Rank 0 reads (a checkpoint), every rank gets it: other machines need not see rank 0's files."""
    if not world.active:
        return load()
    box = [None]
    if world.is_main:
        try:
            box[0] = load()
        except GankitError as e:
            box[0] = e
    dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], GankitError):
        raise box[0]
    return box[0]


def check_device(device: str) -> None:
    """cpu, cuda or cuda:N that torch can use, or one line saying why not."""
    m = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", str(device))
    if not m or (m.group(1) == "cpu" and m.group(2)):
        raise GankitError(f"unknown device {device!r}: gankit trains on cpu, cuda or cuda:N "
                          "(other accelerators such as mps are not supported)")
    if m.group(1) == "cuda":
        if not torch.cuda.is_available():
            raise GankitError(f"device {device} requested but torch sees no CUDA GPU")
        if int(m.group(2) or 0) >= torch.cuda.device_count():
            raise GankitError(f"device {device} requested but torch sees {torch.cuda.device_count()} CUDA GPU(s)")


class _Loop:
    """The step loop of train(): steps, the progress line, and what happens at epoch ends, evals,
    checkpoints, divergence and interruption."""

    def __init__(self, trainer: Trainer, out: Path, last: int, monitor, log):
        self.t, self.out, self.last, self.monitor, self.log = trainer, out, last, monitor, log
        self.watch = monitor.watch if monitor else FailureWatch(log)
        self.progress = Progress(log)
        self.saved_step: int | None = trainer.step if trainer.step else None  # a resumed run has one already
        self.images_per_step = trainer.cfg.batch_size * trainer.cfg.d_steps
        self.pending: list[torch.Tensor] = []  # statistics of steps not yet read from the device
        self.sync_every = 32 if trainer.cuda else 1

    def run(self, stop: StopSignal) -> None:
        t, cfg, spe = self.t, self.t.cfg, self.t.steps_per_epoch
        main = t.world.is_main
        self._reset_window()
        last_save = time.monotonic()
        while t.step < self.last:
            self.pending.append(t.train_step().stacked())
            epoch, in_epoch = divmod(t.step, spe)
            eval_now = bool(cfg.eval_every) and t.step % cfg.eval_every == 0
            stretch_end = in_epoch == 0 or t.step == self.last  # end of an epoch, or the requested stop
            save_now = bool(cfg.checkpoint_every) and t.step % cfg.checkpoint_every == 0
            # Sync points fall on the same steps in every process (events of the step count, or every
            # sync_every steps); what depends on a clock or a signal is decided there, by all ranks together.
            if not (eval_now or stretch_end or save_now or len(self.pending) >= self.sync_every):
                continue
            self._read_stats()  # waits for the device; raises if the run diverged, before anything is saved
            self.progress.update(f"epoch {epoch + 1}/{cfg.epochs} {self._figures()}", in_epoch, spe)
            overdue = not cfg.checkpoint_every and time.monotonic() - last_save > CHECKPOINT_MINUTES * 60
            flags = any_rank((2 if stop.received is not None else 0) | (1 if overdue and main else 0),
                             t.world, t.device)
            save_now = save_now or bool(flags & 1)
            if eval_now and self.monitor:
                paused = time.perf_counter()
                _evaluate(t, self.monitor, self.out, self.progress)
                self.saved_step = t.step
                self.started += time.perf_counter() - paused  # eval time is not training time
            if stretch_end:
                self._end_of_stretch(in_epoch == 0)
                last_save = time.monotonic()
            elif save_now:
                self._save()
                last_save = time.monotonic()
            if flags & 2:
                self._save()
                self.progress.end("")
                raise Interrupted(f"interrupted at step {t.step}: checkpoint saved in {self.out}; continue with "
                                  f"python cli.py train --out {self.out} --resume", stop.received or signal.SIGTERM)

    def _read_stats(self) -> None:
        """Fold the steps' statistics into the window: one wait for the device per group of steps (every
        step on the CPU, where it costs nothing), averaged over the ranks so that every rank decides alike.
        Non-finite losses stop the run here, before any save."""
        values = average(torch.stack(self.pending).to(self.t.device), self.t.world).cpu().numpy()
        first = self.t.step - len(values) + 1
        self.pending = []
        for k, (loss_d, loss_g, d_real, d_fake) in enumerate(values):
            if not (math.isfinite(loss_d) and math.isfinite(loss_g)):
                self.progress.end("")
                kept = f"the last good checkpoint (step {self.saved_step}) is kept" if self.saved_step \
                    else "no checkpoint was written"
                raise Diverged(f"training diverged at step {first + k}: loss_D {loss_d} loss_G {loss_g} are not "
                                  f"finite; {kept}. Lower the learning rates (--lr-g, --lr-d) and start a new run")
            self.watch.step(float(d_fake))
        self.sums += values.sum(axis=0)
        self.count += len(values)

    def _reset_window(self) -> None:
        self.sums, self.count, self.started = np.zeros(4), 0, time.perf_counter()

    def _figures(self) -> str:
        mean = self.sums / max(self.count, 1)
        rate = self.count * self.images_per_step / max(time.perf_counter() - self.started, 1e-9)
        return (f"loss_D {mean[0]:.3f} loss_G {mean[1]:.3f} D(x) {mean[2]:.3f} D(G(z)) {mean[3]:.3f} "
                f"{rate:.0f} img/s")

    def _save(self) -> None:
        if self.t.world.is_main:
            save_checkpoint(self.t.state_dict(), self.out / FILENAME)
        self.saved_step = self.t.step

    def _end_of_stretch(self, epoch_end: bool) -> None:
        """An epoch's end or the requested stop: sample grid, checkpoint, a metrics line, the plot."""
        t, spe = self.t, self.t.steps_per_epoch
        self._save()
        if not t.world.is_main:
            self._reset_window()
            return
        name = f"epoch_{t.step // spe:03d}.png" if epoch_end else f"step_{t.step:07d}.png"
        save_png(t.sample_grid(), self.out / "samples" / name, compress_level=6)
        seconds = time.perf_counter() - self.started
        mean = self.sums / max(self.count, 1)
        _append(self.out, {"step": t.step, "epoch": t.step / spe, "loss_d": mean[0], "loss_g": mean[1],
                           "d_real": mean[2], "d_fake": mean[3],
                           **({"augment_p": float(t.augment.p)} if t.augment.active else {}),
                           "images_per_s": self.count * self.images_per_step / seconds,
                           "seconds": seconds, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        _plot(self.out)
        self.progress.end(f"step {t.step} (epoch {t.step / spe:.2f}) {self._figures()}")
        self._reset_window()


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


LOCK_FILE = ".gankit-train.lock"
_held_locks: dict = {}  # run folder -> its open lock file, held until the process ends


def claim_run_folder(out: Path) -> None:
    """Hold the run folder for this process alone (an advisory lock the kernel drops when the process ends, however
    it ends): two trainings into one folder would interleave metrics.jsonl and overwrite each other's checkpoint."""
    import fcntl

    key = str(out.resolve())
    if key in _held_locks:
        return
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise GankitError(f"another training is running in {out}: wait for it, or choose another --out") from None
    _held_locks[key] = fd


def release_run_folder(out: Path) -> None:
    fd = _held_locks.pop(str(Path(out).resolve()), None)
    if fd is not None:
        os.close(fd)


def refuse_links(out: Path, names) -> None:
    """Files and folders of a run are never written through a link: a link there could point anywhere."""
    for name in names:
        if (out / name).is_symlink():
            raise GankitError(f"{out / name} is a link: gankit never writes through links inside a run folder; "
                              "remove it")


def _append(run: Path, record: dict) -> None:
    # One write of one whole line: a crash cannot leave half a record. O_NOFOLLOW: never through a link.
    fd = os.open(run / "metrics.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "a") as f:
        f.write(json.dumps(record) + "\n")


def _plot(run: Path) -> None:
    if importlib.util.find_spec("matplotlib") is None:  # optional: the numbers are in metrics.jsonl
        return
    from .monitor import plot_run

    try:
        plot_run(run)
    except Exception as e:  # noqa: BLE001 - a plot is a convenience: training goes on without it
        print(f"warning: could not draw {run / 'plot.png'}: {(str(e).splitlines() or [repr(e)])[0][:200]}",
              file=sys.stderr)
