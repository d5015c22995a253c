"""Generation throughput: the runtime (onnxruntime, CPU) against torch eager on the same generator,
the achieved FLOP/s against the matmul peak, and files written per second against pure inference.

    python bench/generation.py [--threads 2] [--images 10000]

Targets (issue 2): runtime >= 1.5x torch eager; >= 80% of the matmul peak at batch >= 64;
PNG writing >= 85% of the inference rate.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from common import best_seconds, forward_flops, gflops, matmul_peak

from gankit.config import ModelConfig
from gankit.export import to_onnx
from gankit.models import build_models
from gankit_runtime import Generator, latents_for_seeds, plan, write_folder, write_npz

MODELS = {"dcgan28 (MNIST default)": ModelConfig(kind="dcgan", size=28, channels=1, width=32),
          "dcgan64 rgb (DCGAN paper)": ModelConfig(kind="dcgan", size=64, channels=3, width=128)}


def torch_best(g: torch.nn.Module, z: torch.Tensor) -> tuple[float, str]:
    """torch eager's best setting on this machine: plain or channels_last, under inference_mode."""
    results = {}
    for name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        model = g.to(memory_format=fmt)
        with torch.inference_mode():
            results[name] = best_seconds(lambda: model(z))
    name = min(results, key=results.get)
    return results[name], name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=10000, help="images written in the file benchmark")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.threads)
    print(f"anchor: fp32 matmul 2048x2048, {args.threads} threads: {gflops(peak)}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, cfg in MODELS.items():
            torch.manual_seed(0)
            g, _ = build_models(cfg)
            g.eval()
            path = tmp / "g.onnx"
            to_onnx(g, cfg, path, {})
            runtime = Generator(path, threads=args.threads)
            flops_per_image = forward_flops(g, torch.zeros(1, cfg.z_dim))
            print(f"\n{label}: {flops_per_image / 1e6:.0f} MFLOP per image")
            print(f"{'batch':>6} {'torch img/s':>12} {'(setting)':>15} {'runtime img/s':>14} {'ratio':>6} "
                  f"{'runtime FLOP/s':>15} {'of peak':>8}")
            for batch in (1, 64, 256):
                z = latents_for_seeds(range(batch), cfg.z_dim)
                t_torch, setting = torch_best(g, torch.from_numpy(z))
                t_rt = best_seconds(lambda: runtime.run(z))
                rate = flops_per_image * batch / t_rt
                print(f"{batch:>6} {batch / t_torch:>12.0f} {setting:>15} {batch / t_rt:>14.0f} "
                      f"{t_torch / t_rt:>5.2f}x {gflops(rate):>15} {rate / peak:>7.0%}")

        # Files: the MNIST generator, images written per second against inference alone, on the disk and,
        # where there is one, on tmpfs (where creating a file costs ~10 us instead of the disk's kernel time).
        cfg = MODELS["dcgan28 (MNIST default)"]
        torch.manual_seed(0)
        g, _ = build_models(cfg)
        to_onnx(g.eval(), cfg, tmp / "m.onnx", {})
        runtime = Generator(tmp / "m.onnx", threads=args.threads)
        quiet = Generator(tmp / "m.onnx", threads=args.threads, spin=False)  # as `generate --format png` runs it
        seeds = list(range(args.images))
        print(f"\nwriting {len(seeds)} MNIST images (batch 256)")
        places = [("disk", tmp)] + ([("tmpfs", Path("/dev/shm"))] if Path("/dev/shm").is_dir() else [])
        for place, root in places:
            with tempfile.TemporaryDirectory(dir=root) as where:
                where = Path(where)
                cost = file_creation_cost(where / "probe", len(seeds))
                start = time.perf_counter()
                for _ in runtime.iter_images(seeds, 256):
                    pass
                infer = len(seeds) / (time.perf_counter() - start)
                start = time.perf_counter()
                write_folder(quiet, plan(quiet, seeds), where / "png", batch_size=256)
                png = len(seeds) / (time.perf_counter() - start)
                start = time.perf_counter()
                write_npz(runtime, plan(runtime, seeds), where / "all.npz", batch_size=256)
                npz = len(seeds) / (time.perf_counter() - start)
                print(f"  {place}: creating a file costs {cost * 1e6:.0f} us of CPU; inference alone {infer:.0f} img/s "
                      f"(anchor); png {png:.0f} img/s = {png / infer:.0%}; npz {npz:.0f} img/s = {npz / infer:.0%}")


def file_creation_cost(folder: Path, n: int) -> float:
    """CPU seconds (user + system) to create one small file among n in `folder` (on some file systems
    the cost grows with the number of files, so probe with as many as the benchmark writes)."""
    folder.mkdir()
    before = os.times()
    for i in range(n):
        fd = os.open(folder / f"{i}.png", os.O_WRONLY | os.O_CREAT)
        os.write(fd, b"x" * 400)
        os.close(fd)
    after = os.times()
    return (after.user - before.user + after.system - before.system) / n

if __name__ == "__main__":
    main()
