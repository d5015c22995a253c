"""What every benchmark shares: the machine's fp32 matmul peak (the anchor for FLOP/s), timing, FLOP counts.

Run one benchmark at a time with nothing else busy: two busy processes on two cores wreck each
other's timings. Every figure is printed next to an anchor measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# tests/test_bench.py runs every benchmark to see that it runs, not to measure: one call per timing then.
SMOKE = os.environ.get("GANKIT_BENCH_SMOKE") == "1"


def best_seconds(fn, repeats: int = 5, min_time: float = 0.3, stat=statistics.median) -> float:
    """`stat` (median by default) over `repeats` of the mean time per call, each sample lasting at least min_time."""
    if SMOKE:
        repeats, min_time = 1, 0.0
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        samples.append(elapsed / n)
    return stat(samples)


def matmul_peak(threads: int, n: int = 2048) -> float:
    """fp32 FLOP/s of a large torch matmul with `threads` threads: the machine's practical peak.

    The fastest of 7 samples, not the median: a peak is the best the machine did, and a neighbour's burst
    on a shared machine must not lower the bar the other figures are measured against.
    """
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_seconds(lambda: a @ b, repeats=7, stat=min)


def forward_flops(model: torch.nn.Module, z: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(z)
    return counter.get_total_flops()


def gflops(x: float) -> str:
    return f"{x / 1e9:.1f} GFLOP/s"
