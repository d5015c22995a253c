"""Training throughput of `train` (the real Trainer.train_step on MNIST-sized data in memory):
images/s and achieved FLOP/s against the matmul peak measured in the same run.

    python bench/training.py [--threads 2]
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import best_seconds, gflops, matmul_peak

from gankit.config import ModelConfig, TrainConfig
from gankit.data import Dataset
from gankit.train import Trainer

MODELS = {"vanilla": ModelConfig(kind="vanilla"), "dcgan28": ModelConfig(kind="dcgan", size=28, width=32),
          "dcgan28 width 64": ModelConfig(kind="dcgan", size=28, width=64)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.threads)
    print(f"anchor: fp32 matmul 2048x2048, {args.threads} threads: {gflops(peak)}")
    print(f"{'model':>18} {'img/s':>8} {'MFLOP/img':>10} {'FLOP/s':>14} {'of peak':>8}")
    for name, cfg in MODELS.items():
        images = torch.randint(0, 256, (4096, 1, 28, 28), dtype=torch.uint8)
        t = Trainer(cfg, TrainConfig(batch_size=args.batch_size), Dataset("bench", images, None, []))
        with FlopCounterMode(display=False) as counter:
            t.train_step()
        flops = counter.get_total_flops()
        seconds = best_seconds(t.train_step, repeats=5, min_time=1.0)
        per_image = flops / args.batch_size
        print(f"{name:>18} {args.batch_size / seconds:>8.0f} {per_image / 1e6:>10.1f} {gflops(flops / seconds):>14} "
              f"{flops / seconds / peak:>7.0%}")


if __name__ == "__main__":
    main()
