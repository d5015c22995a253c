"""Where the in-between samples lie: eval's classifier on seeds 0..N-1 of exported unconditional MNIST generators,
split by the mode each seed's z picks (c = argmax of z's first --modes coordinates, what `train --modes` uses)
and by how near z lies to a mode boundary (the margin between its two largest coordinates) or to the origin (|z|).

    python bench/modes.py exported/mnist-dcgan.onnx runs/modes/generator.onnx [--samples 10000] [--modes 10]

A model trained without --modes shows the same split as a control: its mode means nothing to it. "unsure" is
the share of samples no class claims with probability >= 0.9 (1 - eval's confident share); "purity" is the
share of a mode's confident samples that are its most common digit (1.0: the mode is one digit). "recall by
real digit" splits eval's recall by the label of the real test image: the share of each digit's real images that
lie on the samples' manifold (what a model with a lower recall misses).
"""

from __future__ import annotations

import argparse
import json

import common  # noqa: F401  (puts the repository on sys.path)
import numpy as np
from gankit_runtime import Generator, latents_for_seeds
from gankit_runtime.evaluation import metrics as M
from gankit_runtime.evaluation.datasets import default_data_dir, load_mnist_like
from gankit_runtime.evaluation.evaluate import FeatureExtractor

CONFIDENT = 0.9  # eval's threshold (gankit_runtime.evaluation.metrics.class_figures)


def analyse(
    path: str, samples: int, modes: int, classify: FeatureExtractor, real: tuple[np.ndarray, np.ndarray]
) -> dict:
    seeds, g = range(samples), Generator(path)
    z = latents_for_seeds(seeds, g.info.z_dim)
    features, probabilities = classify(g.generate(seeds))
    features = np.asarray(features, np.float32)
    real_features, real_digits = real  # eval's real set: the test split
    on_manifold = M.covered(real_features, features, M.knn_radii(features))
    unsure = probabilities.max(1) < CONFIDENT
    digit = probabilities.argmax(1)
    top = np.sort(z[:, :modes], axis=1)
    margin, radius, mode = top[:, -1] - top[:, -2], np.linalg.norm(z, axis=1), z[:, :modes].argmax(1)
    per_mode = []
    for m in range(modes):
        at = mode == m
        sure = digit[at & ~unsure]
        counts = np.bincount(sure, minlength=10)
        per_mode.append(
            {
                "mode": m,
                "share": float(at.mean()),
                "unsure": float(unsure[at].mean()),
                "digit": int(counts.argmax()),
                "purity": float(counts.max() / max(counts.sum(), 1)),
            }
        )

    def by_quartile(x):
        edges = np.quantile(x, [0.25, 0.5, 0.75])
        q = np.searchsorted(edges, x)
        return [float(unsure[q == i].mean()) for i in range(4)]

    return {
        "model": path,
        "unsure": float(unsure.mean()),
        "per_mode": per_mode,
        "unsure_by_margin_quartile": by_quartile(margin),
        "unsure_by_radius_quartile": by_quartile(radius),
        "digits_covered_by_modes": len({p["digit"] for p in per_mode}),
        "recall": float(on_manifold.mean()),
        "recall_by_real_digit": [float(on_manifold[real_digits == d].mean()) for d in range(10)],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--modes", type=int, default=10)
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args()
    classify = FeatureExtractor()
    test = load_mnist_like("mnist", default_data_dir())
    real = (np.asarray(classify(test["x_test"][..., None])[0], np.float32), test["y_test"])
    results = [analyse(m, args.samples, args.modes, classify, real) for m in args.models]
    for r in results:
        print(f"{r['model']}: unsure {r['unsure']:.1%} of {args.samples} samples")
        print("  mode  share  unsure  digit  purity")
        for p in r["per_mode"]:
            print(f"  {p['mode']:>4} {p['share']:>6.1%} {p['unsure']:>7.1%} {p['digit']:>6} {p['purity']:>7.1%}")
        print(f"  digits that are some mode's most common: {r['digits_covered_by_modes']} of 10")
        print(
            "  unsure by quartile of the mode margin (near a boundary -> far): "
            + ", ".join(f"{u:.1%}" for u in r["unsure_by_margin_quartile"])
        )
        print(
            "  unsure by quartile of |z| (near the origin -> far): "
            + ", ".join(f"{u:.1%}" for u in r["unsure_by_radius_quartile"])
        )
        print(
            f"  recall {r['recall']:.3f}; by real digit: "
            + ", ".join(f"{d} {u:.2f}" for d, u in enumerate(r["recall_by_real_digit"]))
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
