"""Time to quality: `python cli.py train` on this machine, scored with `eval`'s figures after 5, 10, 20 and 30
minutes of training (eval time not counted).

    python bench/time_to_quality.py --model dcgan [--minutes 5,10,20,30,60,90] [--threads 2]
    python bench/time_to_quality.py --model dcgan --kimg 168.1,340.2 --loss hinge --d-norm spectral   # a probe
    python bench/time_to_quality.py --data fashion-mnist --conditional --kimg 300,600
    python bench/time_to_quality.py --resume runs/X --kimg 2116.4,3174.6 --save runs/X   # continue a --save run
    python bench/time_to_quality.py --resume runs/X --info-weight 0.1 --kimg 1400 --save runs/Y   # InfoGAN: lower lambda

--kimg puts the marks at thousands of training images instead of minutes: a recipe probe that does not
change the cost of a step (learning rate, label smoothing) then compares with the default at the image
count the default reaches in N minutes, and stays valid on a busy machine. Minutes are the target's measure:
a clean 2-thread run of the default DCGAN reached 168.1, 340.2, 702.3 and 1058.2 kimg at 5, 10, 20 and 30 minutes.

The run keeps an EMA of G beside it (half-life --ema kimg); the EMA only watches, so G trains exactly as
the default command does, and every mark scores both: that shows whether EMA helps (--ema-long adds a second,
longer one: a probe of EMA length at no cost to training).
Targets (issue 20): unconditional MNIST at >= 95% of samples classified with confidence >= 0.9, every class
between 7% and 13% of samples and recall >= 0.85 within 90 minutes on 2 threads; conditional Fashion-MNIST at
>= 90% GAN-test. The anchor: real training images scored the same way, in the same run.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import numpy as np
import torch
from gankit.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from gankit.config import ModelConfig, TrainConfig, default_data_dir, default_lr, default_r1
from gankit.data import load_dataset
from gankit.monitor import Scorer
from gankit.train import Trainer, resume_configs
from gankit.trainer import update_ema
from gankit_runtime.evaluation.datasets import load_mnist_like
from gankit_runtime.evaluation.evaluate import figures


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["dcgan", "vanilla"], default="dcgan")
    ap.add_argument("--data", choices=["mnist", "fashion-mnist"], default="mnist")
    ap.add_argument("--minutes", default="5,10,20,30")
    ap.add_argument("--kimg", default=None, help="marks in thousands of training images instead of minutes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ema", type=float, default=10.0, help="EMA half-life in kimg, scored beside G")
    ap.add_argument(
        "--ema-long",
        type=float,
        default=0.0,
        help="also keep and score a second, longer EMA (half-life in kimg): a probe of EMA length",
    )
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--out", default=None, help="JSON file for the results")
    ap.add_argument("--save", default=None, help="run folder to keep the final checkpoint in (export it with cli.py)")
    ap.add_argument(
        "--resume",
        default=None,
        help="continue the run a --save folder holds (its own recipe; marks still count images from the run's start)",
    )
    # Recipe probes: the defaults are the CLI's.
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr-g", type=float, default=None, help="default: the CLI's (gankit.config.default_lr)")
    ap.add_argument("--lr-d", type=float, default=None)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--d-norm", choices=["batch", "spectral"], default="batch")
    ap.add_argument("--loss", choices=["bce", "hinge"], default="bce")
    ap.add_argument("--r1", type=float, default=None, help="R1 penalty weight (0: off); default: the CLI's")
    ap.add_argument("--top-k", type=float, default=1.0, help="share of fakes G learns from (1: all)")
    ap.add_argument("--conditional", action="store_true", help="class-conditional G and D (the data's labels)")
    ap.add_argument("--d-condition", choices=["projection", "concat"], default="projection")
    ap.add_argument("--modes", type=int, default=0, help="discrete modes from z (unconditional; 0: none)")
    ap.add_argument("--mode-learning", choices=["infogan", "self-conditioned"], default="infogan")
    ap.add_argument(
        "--info-weight",
        type=float,
        default=None,
        help="InfoGAN's lambda (default: the CLI's); with --resume, the run continues with this one instead of its "
        "own (a probe of lowering it once the modes have formed)",
    )
    return ap.parse_args()


def main():
    args = arguments()
    torch.set_num_threads(args.threads)
    by_images = args.kimg is not None
    marks = [float(m) * (1000 if by_images else 60) for m in (args.kimg or args.minutes).split(",")]

    model_cfg = ModelConfig(
        kind=args.model,
        d_norm=args.d_norm,
        num_classes=10 if args.conditional else 0,
        d_condition=args.d_condition,
        modes=args.modes,
        mode_learning=args.mode_learning,
        **({"width": args.width} if args.width else {}),
    )
    lr = default_lr(model_cfg.kind, model_cfg.size)
    train_cfg = TrainConfig(
        data=args.data,
        ema_kimg=args.ema,
        batch_size=args.batch_size,
        lr_g=args.lr_g or lr,
        lr_d=args.lr_d or lr,
        label_smoothing=args.label_smoothing,
        loss=args.loss,
        top_k=args.top_k,
        r1=default_r1(model_cfg.kind, model_cfg.size) if args.r1 is None else args.r1,
        **({"info_weight": args.info_weight} if args.info_weight is not None else {}),
    )
    state = load_checkpoint(Path(args.resume) / FILENAME) if args.resume else None
    if state is not None:
        model_cfg, train_cfg = resume_configs(
            state, {} if args.info_weight is None else {"info_weight": args.info_weight}
        )
    data_dir = default_data_dir()
    data = load_dataset(train_cfg.data, 28, 1, data_dir)
    trainer = Trainer(model_cfg, train_cfg, data)
    if state is not None:
        trainer.load_state_dict(state)
    long_ema = copy.deepcopy(trainer.G_out).eval().requires_grad_(False) if args.ema_long else None
    scorer = Scorer(data_dir, args.samples, data=train_cfg.data)  # a resumed run: its own data set
    pick = np.random.default_rng(0).choice(60000, args.samples, replace=False)
    arrays = load_mnist_like(train_cfg.data, data_dir)
    labels = arrays["y_train"][pick].astype(np.int64) if model_cfg.conditional else None
    anchor = figures(*scorer.extract(arrays["x_train"][pick][..., None]), scorer.real, labels, scorer.real_radii)
    print(f"{args.model} {model_cfg} {train_cfg}")
    print(
        f"{args.model}: anchor (real training images): FD {anchor['fd']:.2f}, confident {anchor['confident']:.1%}, "
        f"classes {anchor['class_share_min']:.1%}-{anchor['class_share_max']:.1%}, recall {anchor['recall']:.3f}"
        + (f", GAN-test {anchor['label_accuracy']:.2%}" if labels is not None else "")
    )
    print(
        f"{'min':>4} {'steps':>6} {'epochs':>6} {'img/s':>6} | {'G: FD':>7} {'conf':>6} {'classes':>11} {'P':>5} {'R':>5}"
        + "".join(
            f" | {name + ': FD':>7} {'conf':>6} {'classes':>11} {'P':>5} {'R':>5}"
            for name in ["EMA"] + ([f"EMA {args.ema_long:g}"] if args.ema_long else [])
        )
    )
    results, trained, first_step = [], 0.0, trainer.step  # a resumed run: minutes and img/s of this part
    for mark in marks:
        start = time.perf_counter()
        if by_images:
            while trainer.step * train_cfg.batch_size < mark:
                step(trainer, long_ema, args.ema_long)
        else:
            while trained + (time.perf_counter() - start) < mark:
                step(trainer, long_ema, args.ema_long)
        trained += time.perf_counter() - start
        row = {
            "minutes": trained / 60,
            "step": trainer.step,
            "epochs": trainer.step / trainer.steps_per_epoch,
            "images_per_s": (trainer.step - first_step) * train_cfg.batch_size / trained,
            "G": scorer.evaluate(trainer.G, model_cfg, trainer.device),
        }
        if trainer.G_ema is not None:  # --ema 0: no EMA to score
            row["EMA"] = scorer.evaluate(trainer.G_ema, model_cfg, trainer.device)
        if long_ema is not None:
            row[f"EMA {args.ema_long:g}"] = scorer.evaluate(long_ema, model_cfg, trainer.device)
        results.append(row)
        print_row(row)
        if args.out:  # after every mark: a long run stopped early keeps what it measured
            with open(args.out, "w") as f:
                json.dump({"model": args.model, "args": vars(args), "anchor": anchor, "marks": results}, f, indent=1)
        if args.save:  # the same checkpoint `cli.py train` writes: export it, or continue it with --resume
            Path(args.save).mkdir(parents=True, exist_ok=True)
            save_checkpoint(trainer.state_dict(), Path(args.save) / FILENAME)


def step(trainer: Trainer, long_ema, ema_kimg: float) -> None:
    trainer.train_step()
    if long_ema is not None:
        update_ema(long_ema, trainer.G, trainer.step * trainer.cfg.batch_size, trainer.cfg.batch_size, ema_kimg)


def print_row(row: dict) -> None:
    cells = []
    for key in [k for k in row if k == "G" or k.startswith("EMA")]:
        f = row[key]
        cells.append(
            f"{f['fd']:>7.2f} {f['confident']:>6.1%} {f['class_share_min']:>5.1%}-{f['class_share_max']:<5.1%}"
            f" {f['precision']:>5.2f} {f['recall']:>5.2f}"
            + (f" acc {f['label_accuracy']:.2%}" if "label_accuracy" in f else "")
        )
    print(
        f"{row['minutes']:>4.1f} {row['step']:>6} {row['epochs']:>6.2f} {row['images_per_s']:>6.0f} | "
        + " | ".join(cells),
        flush=True,
    )


if __name__ == "__main__":
    main()
