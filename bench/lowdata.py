"""The honest low-data benchmark: a user with n labelled images trains the conditional GAN on those n images
only (with and without --augment), generates a labelled set from it, and trains a classifier on real only
against real + generated. Does gankit help that user?

    python bench/lowdata.py [--n 1000] [--seeds 0,1,2] [--gan-steps 2000] [--modes off,ada] [--data mnist]

For each subset seed: a balanced subset of n training images (n/10 per class); the real-only classifier; then
for each augmentation mode: the conditional DCGAN (the CLI's defaults, EMA) trained on the subset alone for
--gan-steps steps, scored like `eval` (FD in the shipped classifier's features against the real test split,
GAN-test = the share of samples the classifier reads as the class asked for; for Fashion-MNIST the judge is a
classifier the bench trains on all 60,000 of its training images), 1,000 generated images per class (--per-class),
and the same classifier trained on real (repeated so that batches are half real) + generated. One fixed
classifier budget (--clf-steps of 128, as bench/augmentation.py) for every case, so only the data differs.
Reported: mean +- spread over subset seeds, and wall time.

Target (issue 11): at n = 1,000 the augmented GAN reaches a lower FD than the plain one on every subset seed, and
real + generated beats real only by more than twice the spread.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import numpy as np
import torch
from augmentation import balanced_subset
from gankit.classifier import accuracy, export_classifier, fit, predict
from gankit.config import ModelConfig, TrainConfig, default_lr
from gankit.data import Dataset
from gankit.models import sample_uint8
from gankit.monitor import Scorer
from gankit.train import Trainer
from gankit_runtime.evaluation.datasets import CLASSES, default_data_dir, load_mnist_like


def train_gan(
    x: np.ndarray, y: np.ndarray, data: str, mode: str, steps: int, seed: int, augment_p: float = 1.0
) -> Trainer:
    model_cfg = ModelConfig(kind="dcgan", size=28, channels=1, width=32, num_classes=10)
    lr = default_lr("dcgan", 28)
    cfg = TrainConfig(data=data, batch_size=64, lr_g=lr, lr_d=lr, seed=seed, augment=mode, augment_p=augment_p)
    images = torch.from_numpy(np.ascontiguousarray(x[:, None]))
    t = Trainer(
        model_cfg, cfg, Dataset(f"{data}-subset", images, torch.from_numpy(y.astype(np.int64)), list(CLASSES[data]))
    )
    for _ in range(steps):
        t.train_step()
    return t


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="mnist", choices=["mnist", "fashion-mnist"])
    ap.add_argument("--n", type=int, default=1000, help="real labelled images the user has (balanced)")
    ap.add_argument("--seeds", default="0,1,2", help="subset seeds (also the GAN's and classifier's seeds)")
    ap.add_argument("--modes", default="off,ada", help="augmentation modes to train the GAN with")
    ap.add_argument("--gan-steps", type=int, default=2000)
    ap.add_argument("--augment-p", type=float, default=1.0, help="p of --augment fixed (1.0: DiffAugment's policy)")
    ap.add_argument("--clf-steps", type=int, default=2000, help="classifier budget, batches of 128")
    ap.add_argument("--samples", type=int, default=5000, help="samples for FD and GAN-test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--test", type=int, default=10000, help="score on the first N test images (a quick look)")
    ap.add_argument(
        "--uses",
        default="plain",
        help="how the generated set is used: plain (all of it) and/or "
        "filtered (only the images the real-only classifier reads as the class asked for)",
    )
    ap.add_argument("--truncation", type=float, default=1.0, help="psi of the generated set (1.0 = off)")
    ap.add_argument(
        "--per-class", type=int, default=1000, help="generated images per class (from 1.5x as many candidates)"
    )
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args()
    if not set(args.uses.split(",")) <= {"plain", "filtered"}:
        raise SystemExit(f"--uses takes plain and/or filtered, not {args.uses}")
    if args.test < 100:
        raise SystemExit(f"--test takes at least 100 test images, not {args.test}")
    if args.per_class < 2:
        raise SystemExit(f"--per-class takes at least 2 images, not {args.per_class}")
    return args


def make_scorer(args, x_train, y_train, x_test, y_test) -> Scorer:
    """FD and GAN-test: in the MNIST classifier's features, or for another data set in those of a judge, a
    classifier trained on all of its training images."""
    if args.data == "mnist":
        return Scorer(default_data_dir(), args.samples)
    judge = fit(x_train, y_train, args.clf_steps, seed=1234)
    judge_accuracy = accuracy(judge, x_test, y_test)
    with tempfile.TemporaryDirectory() as tmp:  # the scorer's session holds the model once made
        judge_path = Path(tmp) / f"{args.data}-judge.onnx"
        export_classifier(judge, judge_path, judge_accuracy, args.data)
        scorer = Scorer(default_data_dir(), args.samples, classifier=judge_path, data=args.data)
    print(
        f"{args.data}: FD and GAN-test in the features of a classifier trained on all 60,000 training images "
        f"(test accuracy {judge_accuracy:.2%})",
        flush=True,
    )
    return scorer


def generated_set(synth, labels, use: str, real_model, per_class: int):
    """1.5 x per_class candidates per class: plain keeps the first per_class, filtered the first per_class (or
    fewer) that the real-only classifier reads as the class asked for. Returns (images, labels, share kept)."""
    candidates = len(synth) // 10
    if use == "plain":
        keep = np.tile(np.arange(candidates) < per_class, 10)
    else:
        agree = predict(real_model, synth) == labels
        kept_so_far = [np.cumsum(agree[c * candidates : (c + 1) * candidates]) for c in range(10)]
        keep = agree & (np.concatenate(kept_so_far) <= per_class)
    return synth[keep], labels[keep], float(keep.mean() * candidates / per_class)


def main():
    args = arguments()
    torch.set_num_threads(args.threads)
    seeds, modes = [int(s) for s in args.seeds.split(",")], args.modes.split(",")
    arrays = load_mnist_like(args.data, default_data_dir())
    x_train, y_train, x_test, y_test = arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
    x_test, y_test = x_test[: args.test], y_test[: args.test]
    scorer = make_scorer(args, x_train, y_train, x_test, y_test)
    per_class = args.n // 10
    print(
        f"{args.data}: n = {args.n} real images ({per_class} per class), GAN {args.gan_steps} steps x 64, "
        f"classifier {args.clf_steps} steps x 128, modes {modes}, subset seeds {seeds}",
        flush=True,
    )
    uses = args.uses.split(",")

    def case(mode, use):
        return f"real + generated ({mode}{', filtered' if use == 'filtered' else ''})"

    rows = {"real only": []} | {case(m, u): [] for m in modes for u in uses}
    kept = {case(m, "filtered"): [] for m in modes if "filtered" in uses}
    fd = {m: [] for m in modes}
    gan_test = {m: [] for m in modes}
    minutes = {m: [] for m in modes}
    p_end = {m: [] for m in modes}
    for seed in seeds:
        pick = balanced_subset(y_train, per_class, seed)
        xs, ys = x_train[pick], y_train[pick]
        real_model = fit(xs, ys, args.clf_steps, seed=seed)
        real = accuracy(real_model, x_test, y_test)
        rows["real only"].append(real)
        print(f"seed {seed}: real only {real:.2%}", flush=True)
        for mode in modes:
            start = time.perf_counter()
            t = train_gan(xs, ys, args.data, mode, args.gan_steps, seed, args.augment_p)
            minutes[mode].append((time.perf_counter() - start) / 60)
            p_end[mode].append(float(t.augment.p) if t.augment.active else 0.0)
            g = t.G_out
            if scorer is not None:
                f = scorer.evaluate(g, t.model_cfg, t.device)
                fd[mode].append(f["fd"])
                gan_test[mode].append(f["label_accuracy"])
            candidates = args.per_class * 3 // 2
            labels = np.repeat(np.arange(10), candidates)
            synth = sample_uint8(
                g, np.tile(np.arange(candidates), 10), 100, t.device, labels=labels, truncation=args.truncation
            )[..., 0]
            for use in uses:
                sx, sy, share_kept = generated_set(synth, labels, use, real_model, args.per_class)
                if use == "filtered":
                    kept[case(mode, use)].append(share_kept)
                reps = max(
                    1, len(sx) // len(xs)
                )  # real repeated so that batches are half real, as bench/augmentation.py
                mixed = accuracy(
                    fit(
                        np.concatenate([np.tile(xs, (reps, 1, 1)), sx]),
                        np.concatenate([np.tile(ys, reps), sy]),
                        args.clf_steps,
                        seed=seed,
                    ),
                    x_test,
                    y_test,
                )
                rows[case(mode, use)].append(mixed)
                extra = f", FD {fd[mode][-1]:.1f}, GAN-test {gan_test[mode][-1]:.2%}" if scorer is not None else ""
                share = f", kept {len(sx)} of {len(synth):,}" if use == "filtered" else ""
                print(
                    f"seed {seed}: GAN --augment {mode}: {minutes[mode][-1]:.1f} min{extra}, p {p_end[mode][-1]:.2f}; "
                    f"{case(mode, use)} {mixed:.2%}{share}",
                    flush=True,
                )

    report(args, seeds, modes, rows, fd, gan_test, p_end, minutes)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "args": vars(args),
                    "accuracy": rows,
                    "filtered_share": kept,
                    "fd": fd,
                    "gan_test": gan_test,
                    "minutes": minutes,
                    "final_p": p_end,
                },
                f,
                indent=1,
            )


def report(args, seeds, modes, rows, fd, gan_test, p_end, minutes) -> None:
    def ms(v):
        return f"{np.mean(v):.2%} +- {np.std(v):.2%}"

    print(f"\n{args.data}, n = {args.n}, subset seeds {seeds}")
    print(f"{'case':<34}{'test accuracy':>20}{'gain over real only':>26}")
    for name, v in rows.items():
        gain = (
            ""
            if name == "real only"
            else f"{np.mean(np.array(v) - np.array(rows['real only'])):+.2%} +- {np.std(np.array(v) - np.array(rows['real only'])):.2%}"
        )
        print(f"{name:<34}{ms(v):>20}{gain:>26}")
    for m in modes:
        if fd[m]:
            print(
                f"GAN --augment {m}: FD {np.mean(fd[m]):.1f} +- {np.std(fd[m]):.1f} ({', '.join(f'{v:.1f}' for v in fd[m])}),"
                f" GAN-test {ms(gan_test[m])}, final p {np.mean(p_end[m]):.2f}, {np.mean(minutes[m]):.1f} min a run"
            )


if __name__ == "__main__":
    main()
