"""One training step of a GAN, and the state it carries: Algorithm 1 of Goodfellow et al. (2014), with k
discriminator steps per generator step, and each network frozen while the other one learns.

Everything random after initialisation comes from two sources whose state is in the checkpoint or derived from
it: the data order of epoch e is a permutation seeded by (seed, e), and the noise comes from one
torch.Generator. So a run stopped and resumed ends with the very same weights (on CPU) as a run never
interrupted.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from gankit_runtime import GankitError, make_grid
from torch.nn.parallel import DistributedDataParallel as DDP

from . import __version__
from .augment import Augment
from .config import ModelConfig, TrainConfig, check_class_options, check_together
from .data import Dataset, to_model_range
from .distributed import World, sync_batch_norm
from .models import build_models, mode_of, sample_uint8
from .modes import info_loss, kmeans, real_features

EMA_RAMPUP = 0.05  # the EMA half-life is at most 5% of the images seen so far (StyleGAN's ramp-up)
SAMPLE_SEEDS = range(64)  # the sample grid shows seeds 0-63: the same images `generate --seeds 0-63` gives
SAMPLE_COLUMNS = 8  # conditional grids: one row per class, seeds 0-7
R1_EVERY = 16  # lazy R1 (StyleGAN2): the penalty, times 16, on every 16th D step; its cost is a double backward


@dataclass
class StepStats:
    """0-d tensors on the training device: reading them waits for the GPU, so the loop reads them in groups."""

    loss_d: torch.Tensor
    loss_g: torch.Tensor
    d_real: torch.Tensor  # mean D(x) over the last D step's real batch
    d_fake: torch.Tensor  # mean D(G(z)) over the last D step's fake batch

    def stacked(self) -> torch.Tensor:
        return torch.stack(
            [torch.as_tensor(v, dtype=torch.float32) for v in (self.loss_d, self.loss_g, self.d_real, self.d_fake)]
        )


def discriminator_loss(
    logits_real: torch.Tensor, logits_fake: torch.Tensor, smoothing: float = 0.0, kind: str = "bce"
) -> torch.Tensor:
    if kind == "hinge":  # relu(1 - D(x)) + relu(1 + D(G(z))), on logits
        return F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()
    # BCE with label 1 (or 1 - smoothing) on real and 0 on fake: -log D(x) - log(1 - D(G(z))), as logits.
    real = (
        F.softplus(-logits_real)
        if not smoothing
        else (1 - smoothing) * F.softplus(-logits_real) + smoothing * F.softplus(logits_real)
    )
    return real.mean() + F.softplus(logits_fake).mean()


def generator_loss(logits_fake: torch.Tensor, kind: str, loss: str = "bce") -> torch.Tensor:
    if loss == "hinge":
        return -logits_fake.mean()
    if kind == "non-saturating":
        return F.softplus(-logits_fake).mean()  # -log D(G(z)): strong gradients early on
    return -F.softplus(logits_fake).mean()  # minimax: log(1 - D(G(z))), the original form


def r1_penalty(logits_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """|grad_x D(x)|^2 per real image, averaged: D's slope on the data, which R1 keeps near zero."""
    (grad,) = torch.autograd.grad(logits_real.sum(), real, create_graph=True)
    return grad.flatten(1).square().sum(1).mean()


TOP_K_DECAY = 0.9  # per epoch. Sinha et al. 2020 use 0.99 over hundreds of epochs; gankit's runs last tens


def top_k_share(floor: float, epoch: int) -> float:
    """The share of fakes G learns from (top-k, Sinha et al. 2020): TOP_K_DECAY ** epoch, never below `floor`."""
    return max(floor, TOP_K_DECAY**epoch)


@torch.no_grad()
def update_ema(G_ema: torch.nn.Module, G: torch.nn.Module, images_seen: int, batch_size: int, ema_kimg: float) -> None:
    """Move G_ema toward G after a step: an average whose half-life is ema_kimg thousand images (shorter early on,
    while G changes fast: at most EMA_RAMPUP of the images seen)."""
    half_life = min(ema_kimg * 1000, images_seen * EMA_RAMPUP)
    beta = 0.5 ** (batch_size / max(half_life, 1e-8))
    # One fused update for all tensors (one kernel launch per group on CUDA, not one per tensor)
    torch._foreach_lerp_(list(G_ema.parameters()), list(G.parameters()), 1.0 - beta)
    buffers = list(G_ema.buffers())
    if buffers:  # batch-norm statistics are taken as they are, not averaged
        torch._foreach_copy_(buffers, list(G.buffers()))


GPU_DATA_SHARE = 0.25  # a data set up to this share of the GPU's memory lives on it; a larger one is staged


def epoch_order(seed: int, epoch: int, n: int, labels: np.ndarray | None = None) -> torch.Tensor:
    """The order in which an epoch visits the n training images: a seeded permutation. With `labels` (--balance-classes)
    each position draws a class uniformly and then one of its images, with replacement: every class is seen equally
    often whatever its count (a rare class's images repeat), by D's real batches and so by G's labels."""
    rng = np.random.default_rng([seed, epoch])
    if labels is None:
        return torch.from_numpy(rng.permutation(n))
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    classes = rng.integers(0, len(members), n)
    picks = rng.random(n)
    order = np.empty(n, np.int64)
    for c, m in enumerate(members):
        at = classes == c
        order[at] = m[(picks[at] * len(m)).astype(np.int64)]
    return torch.from_numpy(order)


class Trainer:
    """One training run's state and step. world: the process group (gankit.distributed); each rank takes its
    slice of every global batch, and DDP averages the gradients."""

    def __init__(
        self, model_cfg: ModelConfig, train_cfg: TrainConfig, data: Dataset, device: str = "cpu", world: World = World()
    ):
        self.model_cfg, self.cfg, self.data, self.device = model_cfg, train_cfg, data, torch.device(device)
        self.world = world
        if train_cfg.batch_size % world.size:
            raise GankitError(
                f"--batch-size {train_cfg.batch_size} is the global batch: it must divide evenly among "
                f"{world.size} processes"
            )
        if model_cfg.conditional and (data.labels is None or len(data.classes) != model_cfg.num_classes):
            raise GankitError(
                f"a conditional model with {model_cfg.num_classes} classes needs data with as many "
                f"classes; {data.name} has {len(data.classes) if data.labels is not None else 'no'} "
                "(an image folder's classes are its sub-folders)"
            )
        check_class_options(model_cfg, model_cfg.conditional)
        torch.manual_seed(train_cfg.seed)
        # Convolutions run faster in channels_last, and torch.compile added nothing on top of it (docs/benchmarks.md,
        # "channels_last"). The MLP has no use for it.
        self.memory_format = torch.channels_last if model_cfg.kind == "dcgan" else torch.contiguous_format
        # Module.to takes memory_format, which torch's overloads of it do not declare
        self.G, self.D = (m.to(self.device, memory_format=self.memory_format) for m in build_models(model_cfg))  # type: ignore[call-overload]
        if world.active and train_cfg.sync_bn:  # batch statistics of the global batch, not of each rank's slice
            self.G, self.D = sync_batch_norm(self.G), sync_batch_norm(self.D)
        # What takes gradients in each step: DDP wrappers under torchrun (they average gradients in backward),
        # the modules themselves otherwise. Everything else (G under no_grad, D frozen in G's step, samples)
        # uses the modules directly.
        self.G_train, self.D_train = self.G, self.D
        if world.active:
            self._wrap_for_ddp()
        self._place_data(data)
        betas = (train_cfg.beta1, train_cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=train_cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=train_cfg.lr_d, betas=betas)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if train_cfg.ema_kimg > 0 else None
        self.augment = Augment(
            train_cfg.augment,
            train_cfg.augment_p,
            train_cfg.seed + 2,
            train_cfg.batch_size,
            world.slice(train_cfg.batch_size) if world.active else slice(None),
            self.device,
        )
        self.noise = torch.Generator(self.device).manual_seed(train_cfg.seed + 1)
        self.step = 0
        self.steps_per_epoch = len(data) // train_cfg.batch_size // train_cfg.d_steps
        if self.steps_per_epoch < 1:
            raise GankitError(
                f"the data has {len(data)} images, fewer than one generator step needs "
                f"(batch size {train_cfg.batch_size} x {train_cfg.d_steps} D steps)"
            )
        self._order: tuple[int, torch.Tensor] | None = None
        check_together(model_cfg, train_cfg)
        if train_cfg.balance_classes and (data.labels is None or not model_cfg.conditional):
            raise GankitError("--balance-classes samples the classes equally: it needs --conditional and labelled data")
        self._label_array = None if data.labels is None else data.labels.cpu().numpy()
        # Self-conditioned: each real image's cluster (its label for D), made at the start of epoch _clusters_epoch.
        self.clusters: torch.Tensor | None = None
        self._clusters_epoch = -1

    def _wrap_for_ddp(self) -> None:
        """Under torchrun: DDP wrappers take the gradients; buffers (batch-norm statistics) stay each rank's own, or
        global with --sync-bn."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        no_buffer_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
            else {"broadcast_buffers": False}
        )  # torch < 2.12
        for p in self.D.parameters():
            if p.dim() == 4 and p.shape[1] == 1:  # a convolution of one input channel (MNIST): channels_last
                # gives its weight strides its gradient does not have, and DDP warned of that on every run
                p.data = p.data.clone(memory_format=torch.contiguous_format)
        # torch 2.12 renamed broadcast_buffers to forward_sync_buffers: a keyword by name, which its hints cannot type
        self.G_train = DDP(self.G, device_ids=ids, **no_buffer_sync)  # type: ignore[arg-type]
        self.D_train = DDP(self.D, device_ids=ids, **no_buffer_sync)  # type: ignore[arg-type]

    def _place_data(self, data: Dataset) -> None:
        # On CUDA: bf16 autocast (no loss scaling needed); the data set lives on the GPU when it takes at most a
        # quarter of its memory (MNIST: 47 MB, 200k 64x64 faces: 2.5 GB), else real batches are staged through
        # pinned memory. Noise is drawn on the device. Nothing in a step waits for the GPU (no host syncs).
        self.cuda = self.device.type == "cuda"
        self._staging = self._copied = None
        self.images, self.labels = data.images, data.labels
        if self.cuda:
            if data.images.numel() <= torch.cuda.get_device_properties(self.device).total_memory * GPU_DATA_SHARE:
                self.images = data.images.to(self.device)
                self.labels = None if data.labels is None else data.labels.to(self.device)
            else:
                b, shape = self.cfg.batch_size, tuple(data.images.shape[1:])
                self._staging = torch.empty((b, *shape), dtype=torch.uint8).pin_memory()
                self._copied = torch.cuda.Event()

    # ------------------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {
            "model_config": self.model_cfg.to_dict(),
            "train_config": self.cfg.to_dict(),
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            **({"generator_ema": self.G_ema.state_dict()} if self.G_ema is not None else {}),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "rng": {"noise": self.noise.get_state(), "noise_device": self.device.type, "torch": torch.get_rng_state()},
            **({"augment": self.augment.state_dict()} if self.augment.active else {}),
            **(
                {"clusters": {"epoch": self._clusters_epoch, "labels": self.clusters.cpu()}}
                if self.clusters is not None
                else {}
            ),
            "dataset": self.data.name,
            "classes": list(self.data.classes),
            "package_version": __version__,
            "torch_version": str(torch.__version__),
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
            if self.model_cfg.self_conditioned and "clusters" in state:  # none yet: stopped before its first step
                clusters = torch.as_tensor(state["clusters"]["labels"], dtype=torch.int64)
                low, high = (int(clusters.min()), int(clusters.max())) if clusters.numel() else (-1, -1)
                if clusters.shape != (len(self.data),) or not 0 <= low <= high < self.model_cfg.modes:
                    raise ValueError(f"clusters of {tuple(clusters.shape)} do not fit {len(self.data)} images")
                self.clusters = clusters.to(self.images.device)
                self._clusters_epoch = int(state["clusters"]["epoch"])
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
            balanced = self._label_array if self.cfg.balance_classes else None
            self._order = (epoch, epoch_order(self.cfg.seed, epoch, len(self.data), balanced))
        b = self.cfg.batch_size
        idx = self._order[1][index * b : (index + 1) * b][self.world.slice(b)]
        # D's label for a real image: its class, or its cluster (self-conditioned), or none
        source = (
            self.clusters if self.model_cfg.self_conditioned else self.labels if self.model_cfg.conditional else None
        )
        if self._staging is None:  # CPU, or the data set on the GPU
            if self.images.device != idx.device:
                idx = idx.to(self.images.device, non_blocking=True)
            labels = None if source is None else source[idx]
            return to_model_range(self.images[idx]).contiguous(memory_format=self.memory_format), labels
        # CUDA with the data in host memory: gather into pinned memory, copy asynchronously, scale on the GPU
        labels = None if source is None else source[idx].to(self.device)
        assert self._copied is not None and self._staging is not None  # made by _place_data for this case
        self._copied.synchronize()  # the previous copy out of the staging buffer is done
        torch.index_select(self.images, 0, idx, out=self._staging)
        batch = self._staging.to(self.device, non_blocking=True)
        self._copied.record()
        return to_model_range(batch).contiguous(memory_format=self.memory_format), labels

    def _z(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A batch of noise, and its modes for a model with modes (else None)."""
        # Drawn on the device by the run's own generator (its state is in the checkpoint).
        # Every rank draws the whole global batch's noise and keeps its slice: the noise of one process's run.
        z = torch.randn(self.cfg.batch_size, self.model_cfg.z_dim, generator=self.noise, device=self.device)
        z = z[self.world.slice(self.cfg.batch_size)] if self.world.active else z
        return z, mode_of(z, self.model_cfg.modes) if self.model_cfg.modes else None

    def _judge_reals(self, reals, labels) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's logits for real images, and, with --class-head, the cross-entropy of its class head against their
        labels (D learns the classes from real images only; None for other models)."""
        if self.model_cfg.class_head:
            logits, named = self.D_train(reals, labels, code=True)
            return logits.float(), F.cross_entropy(named.float(), labels)
        return self.D_train(reals, labels).float(), None

    def _judge_fakes(self, D, fakes, labels, modes, g_step: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's logits for fakes, and the loss of D's second head on them (None without one): InfoGAN's, minimised by
        D and G; with --class-head, in G's step only, the cross-entropy of D's class head against the class G was
        asked for. A fake's label for D: the real batch's labels (conditional), its mode (self-conditioned), or
        none."""
        if self.model_cfg.infogan:
            logits, code = D(fakes, None, code=True)
            return logits.float(), info_loss(code, modes, self.cfg.info_weight)
        if self.model_cfg.class_head and g_step:
            logits, named = D(fakes, labels, code=True)
            return logits.float(), F.cross_entropy(named.float(), labels)
        return D(fakes, modes if self.model_cfg.self_conditioned else labels).float(), None

    def train_step(self) -> StepStats:
        """k discriminator steps with G frozen, then one generator step with D frozen.

        Conditional models: the fakes take the labels of the real batch beside them, so D sees the same
        label distribution on both sides and only the images tell them apart; the G step reuses the last ones.
        Models with modes: a fake's mode is its z's (gankit.modes says how G learns to use it).
        """
        k = self.cfg.d_steps
        first = (self.step % self.steps_per_epoch) * k
        if self.model_cfg.self_conditioned and self._clusters_epoch != self.step // self.steps_per_epoch:
            self._recluster()
        for j in range(k):
            real, labels = self._real_batch(first + j)
            z, modes = self._z()
            with torch.no_grad(), self._autocast():
                fake = self.G(z, labels)
            r1_now = self.cfg.r1 and (self.step * k + j) % R1_EVERY == 0
            if r1_now:
                real.requires_grad_(True)
            with self._autocast():  # D sees real and fake through the same augmentation (none unless --augment)
                logits_real, named = self._judge_reals(self.augment(real), labels)
                logits_fake, info = self._judge_fakes(self.D_train, self.augment(fake), labels, modes)
            self.augment.observe(logits_real)
            loss_d = discriminator_loss(logits_real, logits_fake, self.cfg.label_smoothing, self.cfg.loss)
            if info is not None:
                loss_d = loss_d + info
            if named is not None:
                loss_d = loss_d + named
            if r1_now:
                loss_d = loss_d + self.cfg.r1 / 2 * R1_EVERY * r1_penalty(logits_real, real)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()

        self.D.requires_grad_(False)  # D's weights get no gradient from the generator's loss
        z, modes = self._z()
        with self._autocast():
            logits, info = self._judge_fakes(self.D, self.augment(self.G_train(z, labels)), labels, modes, g_step=True)
        if self.cfg.top_k < 1:  # G learns from the fakes D finds most real (a share of the batch)
            share = top_k_share(self.cfg.top_k, self.step // self.steps_per_epoch)
            logits = logits.topk(max(1, round(share * len(logits))), dim=0).values
        loss_g = generator_loss(logits, self.cfg.g_loss, self.cfg.loss)
        if info is not None:
            loss_g = loss_g + info
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.step += 1
        self.augment.adjust(self.step, self.cfg.batch_size * k, self._sum_over_ranks if self.world.active else None)
        if self.G_ema is not None:
            self._update_ema()
        return StepStats(
            loss_d.detach(),
            loss_g.detach(),
            torch.sigmoid(logits_real.detach()).mean(),
            torch.sigmoid(logits_fake.detach()).mean(),
        )

    def _recluster(self) -> None:
        """Self-conditioned: cluster the real images by D's features, at the start of every epoch."""
        epoch = self.step // self.steps_per_epoch
        features = real_features(self.D, self.images, self.device, self.memory_format)
        previous = None if self.clusters is None else self.clusters.to(features.device)
        clusters = kmeans(features, self.model_cfg.modes, previous, self.cfg.seed + 1000003 * epoch)
        if self.world.active:  # batch-norm statistics are each rank's own: every rank takes rank 0's clusters
            dist.broadcast(clusters, 0)
        self.clusters, self._clusters_epoch = clusters.to(self.images.device), epoch

    @staticmethod
    def _sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t)
        return t

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda)

    def _update_ema(self) -> None:
        assert self.G_ema is not None  # called only with EMA on
        update_ema(self.G_ema, self.G, self.step * self.cfg.batch_size, self.cfg.batch_size, self.cfg.ema_kimg)

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
