"""Training on several processes: torch DistributedDataParallel, launched by torchrun.

    torchrun --nproc_per_node 4 -m gankit_cli train ...   # one process per GPU (LOCAL_RANK), or per CPU share

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; gloo carries the CPU case, NCCL the CUDA one. The run is the
same run as on one process: --batch-size is the global batch, every rank walks the same seeded epoch order
and draws the same global batch of noise, and takes its own slice of both (rank r: rows r*b .. (r+1)*b - 1 of
each global batch, b = batch / world size). DDP averages the gradients, which is the gradient of the global
batch's mean loss. Batch norm: each rank normalises its own slice by default (StyleGAN's practice);
with --sync-bn the statistics are those of the global batch (SyncBatchNorm below), so a DCGAN step equals the
single-process step up to the order of floating-point sums. Rank 0 alone writes files.
"""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from gankit_runtime import GankitError
from gankit_runtime.rank_guard import stop_with_launcher
from torch import nn


def timeout() -> datetime.timedelta:
    """How long a rank waits for the others: GANKIT_DIST_TIMEOUT seconds (default 300)."""
    text = os.environ.get("GANKIT_DIST_TIMEOUT", "300").strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 7 * 86400:
        raise GankitError(f"GANKIT_DIST_TIMEOUT must be a number of seconds (1 to 604800), got {text[:40]!r}")
    return datetime.timedelta(seconds=int(text))


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    backend: str = ""  # set when this process is in a process group (started by torchrun)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """In a process group: under torchrun, even with one process (the DDP wrapper is used, so its cost
        can be measured: bench/distributed.py)."""
        return bool(self.backend)

    def slice(self, global_batch: int) -> slice:
        """This rank's rows of a global batch."""
        b = global_batch // self.size
        return slice(self.rank * b, (self.rank + 1) * b)


def world_from_env(device: str) -> tuple[World, str]:
    """(the process group this process belongs to, the device it trains on). Under torchrun with more than one
    process: joins the group (gloo on CPU, NCCL on CUDA, one GPU per LOCAL_RANK); else a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if "TORCHELASTIC_RUN_ID" not in os.environ and size <= 1:  # not started by torchrun
        return World(), device
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    stop_with_launcher()  # asked already at the CLI's start; again for a library caller under torchrun
    wait = timeout()
    cuda = str(device).startswith("cuda")
    if cuda:
        if local >= torch.cuda.device_count():
            raise GankitError(
                f"rank {rank}: LOCAL_RANK {local} but torch sees {torch.cuda.device_count()} CUDA GPU(s)"
                " (--nproc_per_node must not exceed the GPUs of a machine)"
            )
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend, timeout=wait)
        except Exception as e:
            raise GankitError(
                f"rank {rank}: could not join the process group ({backend}): {str(e).splitlines()[0][:200]}"
            ) from None
    return World(rank, local, size, backend), device


def leave(world: World, together: bool) -> None:
    """Leave the process group. together: every rank is leaving at this point (the run ended, or stopped at an
    agreed step), so wait for all of them first: a rank that tears down while rank 0 still writes its last
    checkpoint would abort. After a failure, ranks are not waited for (they may be gone)."""
    if not (world.active and dist.is_initialized()):
        return
    if together:
        dist.barrier()
    # What still holds the group (DDP's reducer, kept by a reference cycle of the run's objects) goes first: one
    # left for the interpreter's exit tore down gloo's threads there and aborted a finished run (std::terminate,
    # exit -6) in ~7% of 2-process CPU runs.
    gc.collect()
    dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: the sum over ranks of the gradients (each rank's output is the same
    sum, so each rank's input reaches every rank's loss)."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x)


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch: every rank's slice together.

    torch's nn.SyncBatchNorm runs on GPUs only; this one runs on any backend (gloo on the CPU, NCCL) through
    differentiable all-reduces, two passes like BatchNorm's own (the mean, then the variance about it), so the
    result matches one process's batch norm on the whole batch up to the order of sums. Same parameters and
    buffers as BatchNorm2d: checkpoints do not change. Eval mode and a world of one are plain BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        total = all_reduce_sum(torch.cat([x.sum(dim=(0, 2, 3)), count]))
        n = total[c]
        mean = total[:c] / n
        centred = x - mean[None, :, None, None]
        var = all_reduce_sum((centred * centred).sum(dim=(0, 2, 3))) / n  # biased, as BN normalises with
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        tracked, running_mean, running_var = self.num_batches_tracked, self.running_mean, self.running_var
        if self.track_running_stats and tracked is not None and running_mean is not None and running_var is not None:
            momentum = 0.1 if self.momentum is None else self.momentum  # None (a cumulative average) is not offered
            with torch.no_grad():
                tracked.add_(1)
                running_mean.lerp_(mean.detach().to(running_mean.dtype), momentum)
                unbiased = var.detach() * (n / (n - 1)).detach()
                running_var.lerp_(unbiased.to(running_var.dtype), momentum)
        return y


def sync_batch_norm(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d in `module` made a SyncBatchNorm2d, with its parameters and buffers."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = SyncBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            ).to(next(child.buffers()).device)
            sync.load_state_dict(child.state_dict())
            setattr(module, name, sync)
        else:
            sync_batch_norm(child)
    return module


def average(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of `tensor` over the ranks (all of them get it)."""
    if world.active:
        dist.all_reduce(tensor)
        tensor /= world.size
    return tensor


def any_rank(flags: list[bool], world: World, device) -> list[bool]:
    """Each flag true on any rank: a stop asked of one rank (Ctrl-C, SIGTERM) is a stop for all, at the same
    step."""
    if not world.active:
        return [bool(f) for f in flags]
    t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]
