"""Generation throughput: the runtime (onnxruntime, CPU) against torch eager on the same generator,
the achieved FLOP/s against the matmul peak, latents per second, and images written per second end to end
against `session.run` alone on the same latents.

    python bench/generation.py [--threads 2] [--images 10000] [--files-only] [--quick]

Targets: runtime >= 1.5x torch eager; end to end (latents counted) npz >= 90% and PNG >= 85% of session.run
alone, on tmpfs and on disk. PNG at --png-level 0 (stored, not deflated) is reported beside the default level 1.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from common import ROOT, best_seconds, forward_flops, gflops, matmul_peak
from gankit.config import ModelConfig
from gankit.export import to_onnx
from gankit.models import build_models
from gankit_runtime import Generator, latents_for_seeds, plan, write_folder, write_npz

MODELS = {
    "dcgan28 (MNIST default)": ModelConfig(kind="dcgan", size=28, channels=1, width=32),
    "dcgan64 rgb (DCGAN paper)": ModelConfig(kind="dcgan", size=64, channels=3, width=128),
}


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
    ap.add_argument("--files-only", action="store_true", help="only the latent and file figures")
    ap.add_argument("--quick", action="store_true", help="tiny settings: a smoke run, not figures")
    args = ap.parse_args()
    if args.quick:
        args.images = 300
    if args.files_only:
        latent_rates(args.quick)
        file_rates(
            ROOT / "exported" / "mnist-dcgan.onnx", args.images, 256, args.threads, rounds=1 if args.quick else 3
        )
        return
    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.threads)
    print(f"anchor: fp32 matmul 2048x2048, {args.threads} threads: {gflops(peak)}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, cfg in list(MODELS.items())[: 1 if args.quick else None]:
            torch.manual_seed(0)
            g, _ = build_models(cfg)
            g.eval()
            path = tmp / "g.onnx"
            to_onnx(g, cfg, path, {})
            runtime = Generator(path, threads=args.threads)
            flops_per_image = forward_flops(g, torch.zeros(1, cfg.z_dim))
            print(f"\n{label}: {flops_per_image / 1e6:.0f} MFLOP per image")
            print(
                f"{'batch':>6} {'torch img/s':>12} {'(setting)':>15} {'runtime img/s':>14} {'ratio':>6} "
                f"{'runtime FLOP/s':>15} {'of peak':>8}"
            )
            for batch in (1, 64) if args.quick else (1, 64, 256):
                z = latents_for_seeds(range(batch), cfg.z_dim)
                t_torch, setting = torch_best(g, torch.from_numpy(z))
                t_rt = best_seconds(lambda: runtime.run(z))
                rate = flops_per_image * batch / t_rt
                print(
                    f"{batch:>6} {batch / t_torch:>12.0f} {setting:>15} {batch / t_rt:>14.0f} "
                    f"{t_torch / t_rt:>5.2f}x {gflops(rate):>15} {rate / peak:>7.0%}"
                )

    latent_rates(args.quick)
    file_rates(ROOT / "exported" / "mnist-dcgan.onnx", args.images, 256, args.threads, rounds=1 if args.quick else 3)


def latent_rates(quick: bool = False) -> None:
    """Seeds per second of the seed formula: a new RandomState per seed (the formula as written: the anchor)
    against the runtime's latents_for_seeds (one RandomState reseeded per seed), checked bit-identical here."""
    import numpy as np

    n = 4096 if quick else 65536
    seeds = np.arange(10**6, 10**6 + n)
    fresh = best_seconds(lambda: [np.random.RandomState(int(s)).randn(100) for s in seeds[:256]], repeats=3) / 256
    runtime = best_seconds(lambda: latents_for_seeds(seeds, 100), repeats=3) / n
    same = all(
        np.array_equal(
            latents_for_seeds(seeds[k : k + 1], 100)[0],
            np.random.RandomState(int(seeds[k])).randn(100).astype(np.float32),
        )
        for k in range(64)
    )
    print(
        f"\nlatents, z_dim 100 (anchor: a new RandomState per seed, {1 / fresh:,.0f} seeds/s):\n"
        f"  latents_for_seeds, one thread {1 / runtime:>11,.0f} seeds/s {fresh / runtime:>5.0f}x "
        f"({'bit-identical' if same else 'NOT IDENTICAL'})"
    )


def file_rates(model: Path, images: int, batch: int, threads: int | None, device: str = "cpu", rounds: int = 3) -> dict:
    """Images per second end to end (seeds -> latents -> session -> uint8 -> files) against session.run alone
    on the same latents (made beforehand): one onnxruntime session as onnxruntime sets it up by default, what a
    user of onnxruntime alone gets. Also printed: the runtime's lanes side by side, run alone (its compute
    without its pipeline). On disk and on tmpfs where there is one. Each figure is the best of
    `rounds`, the anchor measured before each round (this machine is shared: the best is the least disturbed)."""
    from gankit_runtime.contract import open_session

    runtime = Generator(model, threads=threads, device=device)  # as `generate` opens it, for every format
    seeds = range(images)
    z = latents_for_seeds(seeds, runtime.info.z_dim)
    feed = runtime.info.input_name
    session = open_session(model, device, threads)

    def raw():
        for i in range(0, images, batch):
            session.run(None, {feed: z[i : i + batch]})

    def lanes_alone():
        for i in range(0, images, batch * 16):
            runtime.run(z[i : i + batch * 16])

    def rate(fn) -> float:
        start = time.perf_counter()
        fn()
        return images / (time.perf_counter() - start)

    raw()  # warm-up
    lanes_alone()
    anchor, own = rate(raw), rate(lanes_alone)
    print(
        f"\nwriting {images} images of {model.name} (batch {batch}, {device}, best of {rounds}); anchor: "
        f"session.run alone on the same latents ({anchor:,.0f} img/s); the runtime's {runtime.lanes} "
        f"lane(s) side by side alone: {own:,.0f} img/s = {own / anchor:.0%} of it"
    )
    results = {"session_run": anchor, "lanes_side_by_side": own}
    # disk: the temporary folder when it is on disk (the checkout may be watched by an editor or a sync tool,
    # which makes each file cost several times more: measured 360-610 us against 50 us here)
    disk = Path(tempfile.gettempdir())
    places = [("disk", disk if fs_type(disk) != "tmpfs" else ROOT)] + (
        [("tmpfs", Path("/dev/shm"))] if Path("/dev/shm").is_dir() else []
    )
    cases = {
        "npz": lambda where: write_npz(runtime, plan(runtime, seeds), where / "all.npz", batch_size=batch),
        "png": lambda where: write_folder(runtime, plan(runtime, seeds), where / "png", batch_size=batch),
        "png level 0": lambda where: write_folder(
            runtime, plan(runtime, seeds), where / "png", batch_size=batch, png_level=0
        ),
    }
    for place, root in places:
        best = {name: 0.0 for name in cases}
        anchors = []
        for _ in range(rounds):
            anchors.append(rate(raw))
            for name, case in cases.items():
                with tempfile.TemporaryDirectory(dir=root, prefix=".bench-") as where:
                    best[name] = max(best[name], rate(lambda: case(Path(where))) / anchors[-1])
        with tempfile.TemporaryDirectory(dir=root, prefix=".bench-") as where:
            cost = file_creation_cost(Path(where) / "probe", min(images, 10000))
        results[place] = best
        print(
            f"  {place} ({fs_type(root)} at {root}; anchor {min(anchors):,.0f}-{max(anchors):,.0f} img/s; creating a "
            f"file costs {cost * 1e6:.0f} us of CPU): "
            + "; ".join(f"{name} {r:.0%}" for name, r in best.items())
            + " of session.run alone"
        )
    return results


def fs_type(path: Path) -> str:
    """The file system type of the mount holding `path` (from /proc/mounts; '?' where there is none)."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "?"
    path = str(Path(path).resolve())
    best = max(
        (m for m in mounts if path == m[0] or path.startswith(m[0].rstrip("/") + "/")),
        key=lambda m: len(m[0]),
        default=(None, "?"),
    )
    return best[1]


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
