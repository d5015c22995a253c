"""One onnxruntime session shared by two lanes (two threads, each run single-threaded) against one session per
lane: the measurement behind the runtime's single inference path (gankit_runtime.generator.thread_plan).

    python bench/lanes.py [MODEL.onnx] [--batch 256] [--rounds 3]

Prints img/s of both and their ratio, alternated round by round (this machine is shared: compare within a run).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT
from gankit_runtime import latents_for_seeds
from gankit_runtime.contract import open_session, read_model


def rate(sessions, name: str, z, batch: int, pool) -> float:
    """Images per second of 8 batches, two at a time, batch k on sessions[k % 2] (best of 3 repeats)."""
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        list(pool.map(lambda k: sessions[k % 2].run(None, {name: z[k * batch : (k + 1) * batch]}), range(8)))
        best = max(best, 8 * batch / (time.perf_counter() - start))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=str(ROOT / "exported" / "mnist-dcgan.onnx"))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    data = read_model(Path(args.model))
    shared = open_session(data, threads=1)
    separate = [open_session(data, threads=1) for _ in range(2)]
    name = shared.get_inputs()[0].name
    z = latents_for_seeds(range(args.batch * 8), shared.get_inputs()[0].shape[1])
    with ThreadPoolExecutor(2) as pool:
        for _ in range(args.rounds):
            one = rate([shared, shared], name, z, args.batch, pool)
            two = rate(separate, name, z, args.batch, pool)
            print(f"one session, 2 lanes {one:,.0f} img/s; 2 sessions {two:,.0f} img/s; ratio {one / two:.3f}")


if __name__ == "__main__":
    main()
