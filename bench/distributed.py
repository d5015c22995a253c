"""Training throughput under torchrun (DDP): N processes against one, the same global batch.

    python bench/distributed.py                    # CPU: 1 process x 2 threads (anchor), 2 processes x 1 thread
    python bench/distributed.py --device cuda      # one GPU: plain (anchor) against DDP with one process
    python bench/distributed.py --quick            # a smoke run

Each case runs `Trainer.train_step` on MNIST-sized random data in memory for --seconds and reports
images/s of the whole group, as a ratio against the anchor measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

from common import ROOT


def worker(args) -> None:
    """One process of a case (under torchrun, or alone): time train_step; rank 0 prints images/s."""
    import torch
    from gankit.config import ModelConfig, TrainConfig
    from gankit.data import Dataset
    from gankit.distributed import leave, world_from_env
    from gankit.train import Trainer

    torch.set_num_threads(args.threads)
    world, device = world_from_env(args.device)
    cfg = ModelConfig(kind="dcgan", size=28, width=32)
    images = torch.randint(0, 256, (8192, 1, 28, 28), dtype=torch.uint8)
    t = Trainer(
        cfg,
        TrainConfig(batch_size=args.batch_size, sync_bn=args.sync_bn),
        Dataset("bench", images, None, []),
        device=device,
        world=world,
    )
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    block = 1 if args.quick else 5  # quick: one warm-up step, then one step at a time
    for _ in range(1 if args.quick else 3):
        t.train_step()
    sync()
    steps, start = 0, time.perf_counter()
    while True:
        for _ in range(block):
            t.train_step()
        steps += block
        sync()
        elapsed = time.perf_counter() - start
        # every rank stops after the same number of steps: rank 0's clock decides, shared by a collective
        if world.active:
            import torch.distributed as dist

            flag = torch.tensor([1 if elapsed > args.seconds else 0], device=device)
            dist.broadcast(flag, 0)
            done = bool(flag.item())
        else:
            done = elapsed > args.seconds
        if done:
            break
    if world.is_main:
        print(f"RATE {steps * args.batch_size / elapsed:.1f}")
    del t
    leave(world, True)


def case(nproc: int | None, threads: int, device: str, batch: int, seconds: float, sync_bn: bool, quick: bool) -> float:
    script = (
        [
            str(ROOT / "bench" / "distributed.py"),
            "--worker",
            "--threads",
            str(threads),
            "--device",
            device,
            "--batch-size",
            str(batch),
            "--seconds",
            str(seconds),
        ]
        + (["--sync-bn"] if sync_bn else [])
        + (["--quick"] if quick else [])
    )
    if nproc is None:
        cmd = [sys.executable, *script]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(nproc),
            "--master-port",
            str(port),
            *script,
        ]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    rates = [float(line.split()[1]) for line in r.stdout.splitlines() if line.startswith("RATE")]
    if r.returncode or not rates:
        sys.exit(f"case failed ({' '.join(cmd)}):\n{r.stderr[-2000:]}")
    return rates[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--sync-bn", action="store_true")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    seconds = 0.0 if args.quick else args.seconds
    print(f"DCGAN-28 width 32, global batch {args.batch_size}, {seconds:.0f} s per case, {args.device}")
    if args.device == "cpu":
        cases = [
            ("1 process x 2 threads (anchor)", None, 2, False),
            ("1 process x 1 thread", None, 1, False),
            ("2 processes x 1 thread (DDP, gloo)", 2, 1, False),
            ("2 processes x 1 thread, --sync-bn", 2, 1, True),
        ]
    else:
        cases = [("1 GPU, no DDP (anchor)", None, 1, False), ("1 GPU, DDP with 1 process (NCCL)", 1, 1, False)]
    anchor = None
    for label, nproc, threads, sync_bn in [cases[0], cases[-1]] if args.quick else cases:
        rate = case(nproc, threads, args.device, args.batch_size, seconds, sync_bn, args.quick)
        anchor = anchor or rate
        print(f"  {label:<40} {rate:>9,.0f} img/s  {rate / anchor:5.2f}x")


if __name__ == "__main__":
    main()
