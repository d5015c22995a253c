"""Everything that needs a GPU, in one run of a few minutes, printed as one table at the end:

1. the CUDA tests (tests/test_cuda.py: shipped-model parity, batch-size identity, bf16 training)
2. parity of the shipped models, CUDA against CPU, without TF32 (the default) and with --tf32
3. generation on CUDA: session.run alone at batch 1024, and end to end into an npz, as a share of it
4. training on CUDA: images/s and share of the bf16 matmul peak, DCGAN-28 and 64x64 RGB, batch 64/256/1024

  python bench/gpu_check.py                 # on a machine with a GPU, onnxruntime-gpu and torch with CUDA
  python bench/gpu_check.py --device cpu    # a smoke run of the same code on the CPU, tiny settings
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT

sys.path.insert(0, str(ROOT / "tests"))

SHIPPED = [ROOT / "exported" / "mnist-dcgan.onnx", ROOT / "exported" / "mnist-cdcgan.onnx"]


def parity_table(device: str, seeds: int) -> list[tuple[str, str]]:
    from gankit_runtime import Generator

    rows = []
    for path in SHIPPED:
        cpu = Generator(path)
        for tf32 in (False, True):
            other = Generator(path, device=device, tf32=tf32)
            labels = np.arange(seeds) % len(cpu.classes) if cpu.conditional else None
            worst, off, most, total = 0.0, 0, 0, 0
            for start in range(0, seeds, 1024):
                z = cpu.latents(range(start, min(seeds, start + 1024)))
                y = None if labels is None else labels[start : start + len(z)]
                a, b = other.run(z, y), cpu.run(z, y)
                worst = max(worst, float(np.abs(a - b).max()))
                d = np.abs(
                    other.generate(range(start, start + len(z)), 1024, y).astype(int)
                    - cpu.generate(range(start, start + len(z)), 1024, y).astype(int)
                )
                off, most, total = off + int((d > 0).sum()), max(most, int(d.max())), total + d.size
            rows.append(
                (
                    f"parity {path.stem}{' tf32' if tf32 else ''} ({seeds} seeds)",
                    f"max abs {worst:.1e}, uint8 off {off / total:.1e} of pixels, by at most {most}",
                )
            )
    return rows


def generation_rows(device: str, images: int) -> list[tuple[str, str]]:
    from gankit_runtime import Generator, plan, write_npz

    g = Generator(SHIPPED[0], device=device)
    z = g.latents(range(images))
    name = g.info.input_name

    def raw():
        for i in range(0, images, 1024):
            g.session.run(None, {name: z[i : i + 1024]})

    def npz() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            write_npz(g, plan(g, range(images)), Path(tmp) / "x.npz", batch_size=1024)
            return images / (time.perf_counter() - start)

    raw()
    start = time.perf_counter()
    raw()
    anchor = images / (time.perf_counter() - start)
    lanes = g.lanes
    rates = {}
    for k in (lanes, 1):  # the default lanes, then one (each lane: a batch in flight, sharing the session)
        g.lanes, g._pool = k, None
        npz()  # warm-up
        rates[k] = max(npz(), npz())
    g.lanes, g._pool = lanes, None
    return [(f"generation {SHIPPED[0].stem}, batch 1024, session.run alone", f"{anchor:,.0f} img/s")] + [
        (
            f"generation end to end into npz, {k} lane{'s' if k > 1 else ''} (latents included)",
            f"{r:,.0f} img/s = {r / anchor:.0%} of it",
        )
        for k, r in rates.items()
    ]


def training_rows(device: str, quick: bool) -> list[tuple[str, str]]:
    import training  # bench/training.py

    rows = training.run(device, [8] if quick else [64, 256, 1024], 2, 0.0 if quick else 2.0, quick)
    return [
        (
            f"training {r['model']} batch {r['batch']}",
            f"{r['images_per_s']:,.0f} img/s, {r['share_of_peak']:.1%} of peak",
        )
        for r in rows
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    quick = args.device == "cpu"
    started = time.perf_counter()
    rows = []
    if not quick:
        import onnxruntime
        import torch

        if not torch.cuda.is_available() or "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            sys.exit(
                "gpu_check needs a CUDA GPU, torch with CUDA and onnxruntime-gpu (or --device cpu for a smoke run)"
            )
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_cuda.py")],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        rows.append(("tests/test_cuda.py", (r.stdout.strip().splitlines() or ["no output"])[-1]))
    rows += parity_table(args.device, 256 if quick else 4096)
    rows += generation_rows(args.device, 256 if quick else 65536)
    rows += training_rows(args.device, quick)
    width = max(len(k) for k, _ in rows)
    print(f"\n{'check':<{width}}  result")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
