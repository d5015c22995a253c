"""The training run: a Trainer (gankit.trainer) stepped until the requested stop, with checkpoints at epoch
ends, on a timer, at evals and on Ctrl-C / SIGTERM / SIGHUP, under one process or torchrun's several."""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from gankit_runtime import GankitError, Interrupted
from gankit_runtime.contract import parse_device
from gankit_runtime.files import atomic_path
from gankit_runtime.images import save_png
from gankit_runtime.progress import Progress

from .checkpoint import FILENAME, load_checkpoint, save_checkpoint
from .config import (
    CHECKPOINT_MINUTES,
    ModelConfig,
    TrainConfig,
    check_class_options,
    check_together,
    default_data_dir,
    option_name,
)
from .data import Dataset, load_dataset
from .distributed import World, any_rank, average, leave, world_from_env
from .monitor import FailureWatch
from .runfolder import append_metrics, plot, prepare_run_folder, release_run_folder
from .trainer import Trainer, discriminator_loss, epoch_order, generator_loss  # noqa: F401  (gankit.train's API)
from .transfer import fit_class_latent


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
        saved = (
            model_cfg.conditional
            if key == "conditional"
            else getattr(model_cfg, key)
            if hasattr(model_cfg, key)
            else getattr(train_cfg, key)
        )
        if value != saved:
            allowed = ", ".join(f"--{k.replace('_', '-')}" for k in TrainConfig.CHANGEABLE_ON_RESUME)
            raise GankitError(
                f"--{option_name(key)} {value} differs from the run's {saved}: a resumed run keeps "
                f"its settings (it may change {allowed}, --steps, --device, --threads); "
                "to change it, start a new run with another --out"
            )
    return model_cfg, replace(train_cfg, **changes)


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


def train(
    out: Path,
    model_cfg: ModelConfig | None,
    train_cfg: TrainConfig | None,
    *,
    resume: bool = False,
    given: dict | None = None,
    max_steps: int | None = None,
    device: str = "cpu",
    conditional: bool = False,
    log=None,
) -> Path:
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
        raise GankitError(
            f"out of {'GPU ' if str(device).startswith('cuda') else ''}memory training this model: lower "
            "--batch-size (or --width, --image-size); checkpoints written so far are kept"
        ) from None
    except RuntimeError as e:  # a collective failed: another rank stopped or its machine went away
        if not world.active:
            raise
        reason = " ".join(str(e).split())
        reason = reason if len(reason) <= 160 else reason[:160].rsplit(" ", 1)[0] + " ..."
        raise GankitError(
            f"rank {world.rank}: lost the other processes ({reason}); the last checkpoint in {out} "
            "is whole: run the same command with --resume"
        ) from None
    finally:
        release_run_folder(out)
        leave(world, together)


def _train(out, model_cfg, train_cfg, resume, given, max_steps, device, conditional, log, world: World) -> Path:
    log = log if world.is_main else open(os.devnull, "w")  # one voice: rank 0 reports for the group
    log = log or sys.stderr
    out = Path(out)
    check_device(device)
    state = None
    if resume:
        state = _shared(lambda: load_checkpoint(out / FILENAME), world)
        model_cfg, train_cfg = resume_configs(state, given)
    elif (out / FILENAME).exists():
        raise GankitError(f"{out} already holds a run; continue it with --resume or choose another --out")
    if out.exists() and not out.is_dir():
        raise GankitError(f"output {out} exists and is not a folder")
    data_dir = Path(train_cfg.data_dir) if train_cfg.data_dir else default_data_dir()
    if data_dir.exists() and not data_dir.is_dir():
        raise GankitError(f"the data cache {data_dir} (--data-dir or GANKIT_DATA) is a file; give a folder")
    check_together(model_cfg, train_cfg)  # before the data set loads
    check_class_options(model_cfg, conditional or model_cfg.conditional)
    data = _load_data(train_cfg, model_cfg, data_dir, world)
    if conditional and not resume:
        if data.labels is None or len(data.classes) < 2:
            raise GankitError(
                f"--conditional needs labelled data: {train_cfg.data} has no classes (give an image "
                "folder with one sub-folder per class, at least two)"
            )
        model_cfg = replace(model_cfg, num_classes=len(data.classes))
    trainer = Trainer(model_cfg, train_cfg, data, device, world)
    if max_steps is not None and not resume and given is not None and "epochs" not in given:
        # --steps alone decides a new run's length: the epochs it needs are recorded, so that --resume knows them
        trainer.cfg = replace(trainer.cfg, epochs=max(1, math.ceil(max_steps / trainer.steps_per_epoch)))
    if state is not None:
        trainer.load_state_dict(state)
        del state
    elif model_cfg.transfer == "latent":  # a new run: the class latent is fitted before the GAN's first step
        fit_class_latent(trainer, log)
    last, limit = _last_step(trainer, max_steps, out, log)
    monitor = _monitor(trainer, out, data_dir, log)
    made_out, made_samples = not out.exists(), not os.path.lexists(out / "samples")
    if world.is_main:
        prepare_run_folder(out, data.digests)
    _announce(trainer, last, limit, device, log)
    loop = _Loop(trainer, out, last, monitor, log)
    try:
        with StopSignal() as stop:
            loop.run(stop)
    except BaseException:
        if world.is_main and loop.saved_step is None and made_samples:  # a run that never checkpointed: no trace
            shutil.rmtree(out if made_out else out / "samples", ignore_errors=True)
        raise
    return out / FILENAME


def _last_step(trainer: Trainer, max_steps: int | None, out: Path, log) -> tuple[int, str]:
    """The step the run stops at, and which limit sets it (--steps or --epochs); a run already there is refused."""
    cfg, spe = trainer.cfg, trainer.steps_per_epoch
    last = cfg.epochs * spe if max_steps is None else min(max_steps, cfg.epochs * spe)
    limit = f"--steps {max_steps}" if last == max_steps else f"--epochs {cfg.epochs}"
    if max_steps is not None and max_steps > last:
        print(
            f"note: --epochs {cfg.epochs} ({last} steps) stops the run before --steps {max_steps}: "
            "give a larger --epochs to go further",
            file=log,
        )
    if last <= trainer.step:
        asked = (
            f"--steps {max_steps}"
            if max_steps is not None and max_steps <= cfg.epochs * spe
            else f"{cfg.epochs} epochs ({cfg.epochs * spe} steps)"
        )
        raise GankitError(
            f"the run in {out} is already at step {trainer.step}, {asked} asks for no more: "
            "give a larger --epochs or --steps to continue it"
        )
    return last, limit


def _monitor(trainer: Trainer, out: Path, data_dir: Path, log):
    """--eval-every: the Monitor that scores samples (rank 0), or None."""
    cfg, model_cfg = trainer.cfg, trainer.model_cfg
    if not cfg.eval_every:
        return None
    if trainer.data.name not in ("mnist", "fashion-mnist") or (model_cfg.channels, model_cfg.size) != (1, 28):
        raise GankitError(
            "--eval-every scores samples with a shipped classifier: it needs --data mnist or fashion-mnist at 28x28x1"
        )
    if not trainer.world.is_main:
        return None
    from .monitor import Monitor

    return Monitor(out, data_dir, cfg.eval_samples, trainer.data.name, log)


def _announce(trainer: Trainer, last: int, limit: str, device: str, log) -> None:
    world, cfg, model_cfg, data = trainer.world, trainer.cfg, trainer.model_cfg, trainer.data
    kind = model_cfg.description
    if world.active:
        print(
            f"torchrun: {world.size} processes, backend {world.backend}, global batch {cfg.batch_size} "
            f"({cfg.batch_size // world.size} per process), batch norm "
            f"{'synchronised (--sync-bn)' if cfg.sync_bn else 'per process'}; rank 0 writes",
            file=log,
        )
    print(
        f"training {kind} on {data.name}: {len(data)} images {tuple(data.images.shape[1:])}, "
        f"{trainer.steps_per_epoch} steps per epoch, step {trainer.step} -> {last} ({limit}), device {device}, "
        f"{torch.get_num_threads()} threads",
        file=log,
    )


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
    box: list = [None]
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
    kind, index = parse_device(device)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise GankitError(f"device {device} requested but torch sees no CUDA GPU")
        if (index or 0) >= torch.cuda.device_count():
            raise GankitError(f"device {device} requested but torch sees {torch.cuda.device_count()} CUDA GPU(s)")


class _Loop:
    """The step loop of train(): steps, the progress line, and what happens at epoch ends, evals,
    checkpoints, divergence and interruption."""

    def __init__(self, trainer: Trainer, out: Path, last: int, monitor, log):
        self.t, self.out, self.last, self.monitor, self.log = trainer, out, last, monitor, log
        self.watch = monitor.watch if monitor else FailureWatch(log)
        self.watch.g_loss = trainer.cfg.g_loss
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
            # decided by all ranks together: a stop asked of one rank is a stop for all; rank 0's clock decides
            stop_now, overdue = any_rank([stop.received is not None, overdue and main], t.world, t.device)
            save_now = save_now or overdue
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
            if stop_now:
                self._save()
                self.progress.end("")
                raise Interrupted(
                    f"interrupted at step {t.step}: checkpoint saved in {self.out}; continue with "
                    f"gankit train --out {self.out} --resume",
                    stop.received or signal.SIGTERM,
                )

    def _read_stats(self) -> None:
        """Fold the steps' statistics into the window: one wait for the device per group of steps (every
        step on the CPU, where it costs nothing), averaged over the ranks so that every rank decides alike.
        Non-finite losses stop the run here, before any save."""
        values = average(torch.stack(self.pending).to(self.t.device), self.t.world).cpu().numpy()
        first = self.t.step - len(values) + 1
        self.pending = []
        for k, (loss_d, loss_g, _d_real, d_fake) in enumerate(values):
            if not (math.isfinite(loss_d) and math.isfinite(loss_g)):
                self.progress.end("")
                kept = (
                    f"the last good checkpoint (step {self.saved_step}) is kept"
                    if self.saved_step
                    else "no checkpoint was written"
                )
                raise Diverged(
                    f"training diverged at step {first + k}: loss_D {loss_d} loss_G {loss_g} are not "
                    f"finite; {kept}. Lower the learning rates (--lr-g, --lr-d) and start a new run"
                )
            self.watch.step(float(d_fake))
        self.sums += values.sum(axis=0)
        self.count += len(values)

    def _reset_window(self) -> None:
        self.sums, self.count, self.started = np.zeros(4), 0, time.perf_counter()

    def _figures(self) -> str:
        mean = self.sums / max(self.count, 1)
        rate = self.count * self.images_per_step / max(time.perf_counter() - self.started, 1e-9)
        return f"loss_D {mean[0]:.3f} loss_G {mean[1]:.3f} D(x) {mean[2]:.3f} D(G(z)) {mean[3]:.3f} {rate:.0f} img/s"

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
        append_metrics(
            self.out,
            {
                "step": t.step,
                "epoch": t.step / spe,
                "loss_d": mean[0],
                "loss_g": mean[1],
                "d_real": mean[2],
                "d_fake": mean[3],
                **({"augment_p": float(t.augment.p)} if t.augment.active else {}),
                "images_per_s": self.count * self.images_per_step / seconds,
                "seconds": seconds,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
        plot(self.out)
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
    append_metrics(
        out, {"step": trainer.step, "epoch": trainer.step / trainer.steps_per_epoch, "eval": f, "best": best}
    )
    accuracy = f" label accuracy {f['label_accuracy']:.2%}" if "label_accuracy" in f else ""
    progress.end(
        f"step {trainer.step} eval: FD {f['fd']:.3f} confident {f['confident']:.1%} recall {f['recall']:.3f} "
        f"classes {f['class_share_min']:.1%}-{f['class_share_max']:.1%}{accuracy}{' (best)' if best else ''}"
    )
    plot(out)
