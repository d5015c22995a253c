"""The torch side's commands: train, export, train-classifier. Each imports gankit (and torch) only when run, so
that the runtime alone still offers generate, info and eval."""

from __future__ import annotations

import math
import os
from pathlib import Path

import typer
from gankit_runtime import GankitError
from gankit_runtime.files import same_path

from .frame import (
    _ARGV,
    MAX_SEED,
    PROG,
    Augment_,
    DataSet,
    DCondition,
    DNorm,
    GLoss,
    Loss,
    ModeLearning,
    ModelKind,
    Transfer,
    _check_threads,
    _flag,
    _given,
    _training_side,
    app,
)


@app.command()
def train(
    ctx: typer.Context,
    model: ModelKind = typer.Option(ModelKind.dcgan, help="vanilla (MLP) or dcgan."),
    data: str = typer.Option("mnist", help="mnist, fashion-mnist, or a folder of images (recursive)."),
    out: Path = typer.Option(
        None, help="Run folder for checkpoint.pt, metrics.jsonl, samples/. Default: runs/<data>-<model>."
    ),
    epochs: int = typer.Option(5, min=1, help="On --resume: the run's own unless given."),
    steps: int | None = typer.Option(None, min=1, help="Stop after this many generator steps in all."),
    batch_size: int = typer.Option(64, min=1),
    lr_g: float | None = typer.Option(
        None,
        help="Adam learning rate of the generator. Default 1e-3 for dcgan "
        "below 64x64, else 2e-4 (measured: README, Benchmarks).",
    ),
    lr_d: float | None = typer.Option(None, help="Adam learning rate of the discriminator. Default as --lr-g's."),
    beta1: float = typer.Option(0.5),
    beta2: float = typer.Option(0.999),
    d_steps: int = typer.Option(1, min=1, help="k: discriminator steps per generator step."),
    g_loss: GLoss = typer.Option(
        GLoss.non_saturating, help="non-saturating -log D(G(z)), or the original minimax log(1 - D(G(z)))."
    ),
    loss: Loss = typer.Option(Loss.bce, help="bce (cross-entropy, the course's) or hinge (on logits; G maximises D)."),
    r1: float | None = typer.Option(None, min=0, help="R1 penalty weight, 0 = off. Default 1 for dcgan below 64x64."),
    top_k: float = typer.Option(1.0, min=0, max=1, help="G learns from D's best-scored share of fakes; 1 = all."),
    image_size: int | None = typer.Option(None, help="Default 28 for mnist/fashion-mnist, 64 for folders."),
    channels: int | None = typer.Option(None, help="1 or 3. Default 1 for mnist/fashion-mnist, 3 for folders."),
    z_dim: int = typer.Option(100, min=1),
    width: int | None = typer.Option(
        None, min=1, help="dcgan: 8*width channels at 4x4. Default 32 (128 at 64x64: the DCGAN paper's 1024)."
    ),
    label_smoothing: float = typer.Option(0.0, help="One-sided: D's target for real images is 1 - this."),
    d_norm: DNorm = typer.Option(DNorm.batch, help="dcgan: normalisation in D, batch norm or spectral norm."),
    conditional: bool = typer.Option(
        False,
        "--conditional",
        **_flag("Class-conditional G and D, trained on the data's labels (MNIST's digits, a folder's sub-folders)."),
    ),
    d_condition: DCondition = typer.Option(DCondition.projection, help="--conditional: how D takes the label."),
    modes: int = typer.Option(
        0,
        min=0,
        help="Unconditional: give G this many discrete modes, chosen from z (argmax of its first N coordinates), "
        "learned without labels; 0 = none. The model still takes z alone.",
    ),
    mode_learning: ModeLearning = typer.Option(
        ModeLearning.infogan,
        help="--modes: how G learns them: infogan (a head on D predicts the mode) or self-conditioned "
        "(D conditioned on clusters of its features).",
    ),
    info_weight: float = typer.Option(
        1.0, help="--mode-learning infogan: weight of the mode-prediction loss beside the GAN loss (InfoGAN's lambda)."
    ),
    seed: int = typer.Option(0, min=0, max=MAX_SEED),
    ema: float = typer.Option(10.0, min=0, help="EMA of G's weights: half-life in thousands of images; 0 = off."),
    eval_every: int = typer.Option(
        0, min=0, help="Eval figures every N generator steps (mnist, fashion-mnist); 0 = never."
    ),
    eval_samples: int = typer.Option(5000, min=10, help="Samples per eval during training."),
    checkpoint_every: int = typer.Option(
        0,
        min=0,
        help="Checkpoint every N generator steps (besides epoch ends and Ctrl-C); 0 = every 5 minutes of training.",
    ),
    augment: Augment_ = typer.Option(
        Augment_.off,
        help="Differentiable augmentation of all D sees, for few images: "
        "fixed (probability --augment-p) or ada (adaptive).",
    ),
    augment_p: float = typer.Option(1.0, min=0, max=1, help="--augment fixed: probability of each operation."),
    balance_classes: bool = typer.Option(
        False,
        "--balance-classes",
        **_flag(
            "--conditional on imbalanced data: D and G see every class equally often (a rare class's images "
            "repeat); with --augment ada for classes of a few dozen images."
        ),
    ),
    transfer: Transfer = typer.Option(
        Transfer.none,
        help="--conditional: latent = rare classes borrow the common classes' variation (an autoencoder on all "
        "classes first; each class a Gaussian with one shared covariance in its latent space, after BAGAN).",
    ),
    class_head: bool = typer.Option(
        False,
        "--class-head",
        **_flag(
            "--conditional: D also names each image's class, learnt from the real images, and G is trained so that "
            "D names its images' class (AC-GAN): the rare classes' images stay in their class."
        ),
    ),
    transfer_steps: int = typer.Option(
        1000, min=1, max=1_000_000, help="--transfer latent: autoencoder steps before the GAN's first."
    ),
    sync_bn: bool = typer.Option(
        False,
        "--sync-bn",
        **_flag(
            "Under torchrun: batch-norm statistics of the global batch (all processes), not of each process's share."
        ),
    ),
    data_dir: Path | None = typer.Option(None, help="Data set cache. Default $GANKIT_DATA or ~/.cache/gankit."),
    threads: int | None = typer.Option(None, min=1, help="torch CPU threads."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    nproc: int | None = typer.Option(
        None,
        min=1,
        max=1024,
        help="Train on N processes of this machine (DDP: "
        "torchrun --standalone --nproc-per-node N, in one "
        "command: one error line, the ranks' exit code).",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        **_flag(
            "Continue the run in --out with its own settings; "
            "--epochs, --steps, --eval-every, --eval-samples, "
            "--checkpoint-every, --device, --threads, --sync-bn, --data-dir may change, any "
            "other setting given must match the run's."
        ),
    ),
):
    """Train a GAN; writes checkpoints, a sample grid per epoch and metrics.jsonl. Ctrl-C checkpoints and stops."""
    _run_training(ctx, dict(locals()))


def _run_training(ctx: typer.Context, o: dict) -> None:
    """train's body, given its options by name."""
    _training_side()
    import torch

    if o["nproc"] and "RANK" in os.environ:
        raise GankitError(
            "--nproc starts its own ranks, and this process is one already (RANK is set: torchrun?): drop --nproc"
        )
    if o["nproc"]:
        from gankit.launch import launch, most_ranks

        most = most_ranks(o["device"])
        if o["nproc"] > most:
            what = "CUDA GPUs torch sees" if o["device"].startswith("cuda") else "CPUs this process may use"
            raise GankitError(f"--nproc {o['nproc']} is more than the {what} ({most}): give at most {most}")
        raise typer.Exit(launch(o["nproc"], _ARGV))

    from gankit.train import train as run_training

    given = _given(ctx, o)
    _refuse_ignored(given, o)
    _check_threads(o["threads"])
    if o["threads"]:
        torch.set_num_threads(o["threads"])
    out = o["out"] or Path("runs") / f"{Path(o['data']).name}-{o['model'].value}"
    model_cfg, train_cfg = (None, None) if o["resume"] else _new_configs(o)
    ckpt = run_training(
        out,
        model_cfg,
        train_cfg,
        resume=o["resume"],
        given=given,
        max_steps=o["steps"],
        device=o["device"],
        conditional=o["conditional"],
    )
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the group
        typer.echo(f"checkpoint: {ckpt}\nexport it:  {PROG} export {out}   (writes {out / 'generator.onnx'})")


def _new_configs(o: dict):
    """(model config, train config) of a new run from train's options."""
    from gankit.config import new_run_configs

    plain = {
        k: o[k]
        for k in (
            "z_dim",
            "epochs",
            "batch_size",
            "beta1",
            "beta2",
            "d_steps",
            "label_smoothing",
            "seed",
            "eval_every",
            "eval_samples",
            "checkpoint_every",
            "sync_bn",
            "augment_p",
            "balance_classes",
            "info_weight",
            "transfer_steps",
            "class_head",
        )
    }
    return new_run_configs(
        o["model"].value,
        o["data"],
        o["image_size"],
        o["channels"],
        o["width"],
        o["lr_g"],
        o["lr_d"],
        d_norm=o["d_norm"].value,
        d_condition=o["d_condition"].value,
        modes=o["modes"],
        mode_learning=o["mode_learning"].value,
        transfer=o["transfer"].value,
        data_dir=str(o["data_dir"] or ""),
        g_loss=o["g_loss"].value,
        loss=o["loss"].value,
        r1=o["r1"],
        top_k=o["top_k"],
        ema_kimg=o["ema"],
        augment=o["augment"].value,
        **plain,
    )


def _refuse_ignored(given: dict, o: dict) -> None:
    """Options given on the command line that this run would ignore: refused, never dropped in silence."""
    if "sync_bn" in given and o["sync_bn"] and int(os.environ.get("WORLD_SIZE", "1")) < 2:
        raise GankitError(
            "--sync-bn synchronises batch norm across processes: with one process it has no effect "
            "(use it with --nproc N or torchrun)"
        )
    if o["resume"]:
        return
    if "augment_p" in given and o["augment"] != Augment_.fixed:
        raise GankitError(
            f"--augment-p is the probability of --augment fixed; with --augment {o['augment'].value} it "
            "would be ignored"
        )
    if "d_norm" in given and o["model"] == ModelKind.vanilla:
        raise GankitError("--d-norm is for the dcgan's discriminator: the vanilla MLP has no normalisation to choose")
    if "d_condition" in given and not o["conditional"]:
        raise GankitError("--d-condition is how D takes the label of a --conditional model: add --conditional")
    if "transfer_steps" in given and o["transfer"] == Transfer.none:
        raise GankitError("--transfer-steps sets --transfer latent's autoencoder steps: add --transfer latent")
    if "mode_learning" in given and not o["modes"]:
        raise GankitError("--mode-learning is how a model learns its --modes: add --modes N (10 for MNIST's digits)")


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run folder or checkpoint file (or an older .onnx export, to upgrade)."),
    out: Path = typer.Option(None, help="Output .onnx file. Default: <run>/generator.onnx."),
    atol: float | None = typer.Option(None, help="Largest |torch - onnxruntime| accepted. Default 1e-4."),
    force: bool = typer.Option(
        False, "--force", **_flag("Replace an existing --out (the run's own generator.onnx is replaced without it).")
    ),
):
    """Export a trained generator to one self-contained ONNX file, verified against torch."""
    _training_side()
    from gankit.checkpoint import checkpoint_file
    from gankit.export import export as run_export

    if run.suffix == ".onnx":  # an export of an older format: add what this format adds (the pixels output)
        from gankit.export import upgrade

        if out is None:
            raise GankitError("give --out for the upgraded copy of an .onnx (the original is kept)")
        if atol is not None:
            raise GankitError(
                "--atol bounds torch against onnxruntime: an upgrade has no torch model, and its "
                "pixels are checked exactly"
            )
        return upgrade(run, out, force=force)
    if atol is None:
        atol = 1e-4
    if not (math.isfinite(atol) and atol > 0):
        raise GankitError(f"--atol must be a positive number, got {atol}")
    default = checkpoint_file(run).parent / "generator.onnx"
    out = out or default
    run_export(run, out, atol=atol, force=force or same_path(out, default))


@app.command("train-classifier")
def train_classifier(
    data: DataSet = typer.Option(DataSet.mnist),
    out: Path | None = typer.Option(
        None,
        help="Output .onnx file. Default runs/DATA-classifier.onnx (the shipped "
        "ones are in inference/gankit_runtime/models/).",
    ),
    epochs: int = typer.Option(4, min=1),
    seed: int = typer.Option(0, min=0, max=MAX_SEED),
    data_dir: Path | None = typer.Option(None, help="Data set cache. Default $GANKIT_DATA or ~/.cache/gankit."),
    threads: int | None = typer.Option(None, min=1, help="torch CPU threads."),
    force: bool = typer.Option(False, "--force", **_flag("Replace an existing --out.")),
):
    """Train a classifier that eval uses as its feature space, and export it to ONNX."""
    _training_side()
    import torch
    from gankit.classifier import export_classifier
    from gankit.classifier import train_classifier as run
    from gankit_runtime.files import prepare_output_file

    out = prepare_output_file(out or Path(f"runs/{data.value}-classifier.onnx"), force=force)
    _check_threads(threads)
    if threads:
        torch.set_num_threads(threads)
    model, acc = run(data.value, epochs=epochs, seed=seed, data_dir=data_dir)
    export_classifier(model, out, acc, data.value)
    typer.echo(f"wrote {out}: test accuracy {acc:.2%}")
