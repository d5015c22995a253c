"""The seed formula in JavaScript (web/gankit.js, Node) against numpy's reseeded RandomState in the same run.

    python bench/web.py [--seeds 200000]

Target: at least 200,000 seeds/s in Node at z_dim 100 on this 2-core CPU. The anchor is one numpy RandomState
reseeded per seed (what the Python runtime falls back to), measured just before.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def numpy_reseeded(n: int, z_dim: int) -> float:
    state = np.random.RandomState()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for s in range(10**6, 10**6 + n):
            state.seed(s)
            state.randn(z_dim)
        best = min(best, time.perf_counter() - start)
    return n / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=200000)
    ap.add_argument("--z-dim", type=int, default=100)
    args = ap.parse_args()
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not installed")
    anchor = numpy_reseeded(min(args.seeds, 50000), args.z_dim)
    out = subprocess.run(
        [node, str(ROOT / "web" / "bench" / "latents.mjs"), str(args.seeds), str(args.z_dim)],
        capture_output=True,
        text=True,
        check=True,
    )
    js = json.loads(out.stdout)["seedsPerSecond"]
    print(
        f"latents, z_dim {args.z_dim}: numpy RandomState reseeded {anchor:,.0f} seeds/s (anchor); "
        f"JavaScript in Node {js:,.0f} seeds/s = {js / anchor:.2f}x (target 200,000 seeds/s)"
    )


if __name__ == "__main__":
    main()
