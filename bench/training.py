"""Training throughput of `train` (the real Trainer.train_step on data in memory): images/s and achieved
FLOP/s against the device's peak measured in the same run (fp32 matmul on the CPU, bf16 matmul on CUDA).

    python bench/training.py [--threads 2]                       # CPU: vanilla, DCGAN-28 (width 32, 64)
    python bench/training.py --device cuda [--batch-sizes 64,256,1024]   # GPU: DCGAN-28 and 64x64 RGB
    python bench/training.py --faces [--threads 2]              # CPU: the 64x64 RGB DCGAN of faces (minutes)
    python bench/training.py --quick                             # a smoke run: tiny settings, no figures

Targets on an H100/H200-class GPU (issue 8): DCGAN-28 at batch 64 >= 4x 5.6k images/s; 64x64 RGB at
batch 256 >= 40% of the bf16 peak.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import best_seconds, gflops, matmul_peak
from gankit.config import ModelConfig, TrainConfig
from gankit.data import Dataset
from gankit.train import Trainer
from torch.utils.flop_counter import FlopCounterMode

CPU_MODELS = {
    "vanilla": ModelConfig(kind="vanilla"),
    "dcgan28": ModelConfig(kind="dcgan", size=28, width=32),
    "dcgan28 width 64": ModelConfig(kind="dcgan", size=28, width=64),
}
GPU_MODELS = {
    "dcgan28": ModelConfig(kind="dcgan", size=28, width=32),
    "dcgan64 rgb": ModelConfig(kind="dcgan", size=64, channels=3, width=128),
}


def bf16_peak(device: str, n: int = 8192) -> float:
    """bf16 FLOP/s of a large matmul on the GPU: its practical tensor-core peak."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)

    def run():
        for _ in range(10):
            a @ b
        torch.cuda.synchronize(device)

    return 10 * 2 * n**3 / best_seconds(run, repeats=5, min_time=0.5, stat=min)


def measure(cfg: ModelConfig, batch: int, device: str, seconds: float, quick: bool = False) -> tuple[float, float]:
    """(images/s, FLOP per image per step) of train_step, timed with the device synchronised at the ends
    (quick: one warm-up step and one timed one, a smoke run)."""
    images = torch.randint(0, 256, (max(4096, 4 * batch), cfg.channels, cfg.size, cfg.size), dtype=torch.uint8)
    t = Trainer(cfg, TrainConfig(batch_size=batch), Dataset("bench", images, None, []), device=device)
    with FlopCounterMode(display=False) as counter:
        t.train_step()
    flops = counter.get_total_flops()
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    block = 1 if quick else 10
    for _ in range(1 if quick else 5):  # warm-up (cuDNN autotuning, allocator)
        t.train_step()
    sync()
    steps, start = 0, time.perf_counter()
    while steps == 0 or time.perf_counter() - start < seconds:  # at least one block
        for _ in range(block):
            t.train_step()
        steps += block
        sync()
    return steps * batch / (time.perf_counter() - start), flops / batch


def run(
    device: str, batch_sizes: list[int], threads: int, seconds: float, quick: bool, faces: bool = False
) -> list[dict]:
    rows = []
    if device == "cpu":
        torch.set_num_threads(threads)
        peak = matmul_peak(threads)
        print(f"anchor: fp32 matmul 2048x2048, {threads} threads: {gflops(peak)}")
        models = dict(list(CPU_MODELS.items())[:2]) if quick else CPU_MODELS
        if faces:  # the README's faces recipe (width 128: 1024 channels at 4x4) on this CPU
            models = {"dcgan64 rgb": GPU_MODELS["dcgan64 rgb"]}
    else:
        torch.backends.cudnn.benchmark = True
        peak = bf16_peak(device)
        print(f"anchor: bf16 matmul 8192x8192 on {torch.cuda.get_device_name(device)}: {gflops(peak)}")
        models = GPU_MODELS
    print(f"{'model':>18} {'batch':>6} {'img/s':>10} {'MFLOP/img':>10} {'FLOP/s':>16} {'of peak':>8}")
    for name, cfg in models.items():
        for batch in batch_sizes:
            rate, per_image = measure(cfg, batch, device, seconds, quick)
            share = rate * per_image / peak
            rows.append({"model": name, "batch": batch, "images_per_s": rate, "share_of_peak": share})
            print(
                f"{name:>18} {batch:>6} {rate:>10,.0f} {per_image / 1e6:>10.1f} {gflops(rate * per_image):>16} "
                f"{share:>7.1%}"
            )
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-sizes", default=None, help="default: 64 on the CPU, 64,256,1024 on CUDA")
    ap.add_argument("--seconds", type=float, default=None, help="timing per case (default 3 CPU, 2 CUDA)")
    ap.add_argument("--quick", action="store_true", help="tiny settings: a smoke run, not figures")
    ap.add_argument("--faces", action="store_true", help="CPU: the 64x64 RGB DCGAN alone (about a minute a case)")
    args = ap.parse_args()
    batches = [int(b) for b in (args.batch_sizes or ("64" if args.device == "cpu" else "64,256,1024")).split(",")]
    seconds = args.seconds or (0.0 if args.quick else 3.0 if args.device == "cpu" else 2.0)
    run(args.device, [8] if args.quick else batches, args.threads, seconds, args.quick, args.faces)


if __name__ == "__main__":
    main()
