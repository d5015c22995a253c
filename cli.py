"""gankit: train GAN generators in PyTorch, export them to ONNX, generate images anywhere.

    python cli.py train --data mnist --epochs 5 --out runs/mnist-dcgan
    python cli.py export runs/mnist-dcgan                       # runs/mnist-dcgan/generator.onnx
    python cli.py generate runs/mnist-dcgan/generator.onnx --seeds 0-9999 --out out/digits

generate, info, web and eval of an .onnx need only the runtime: torch is imported by train and export alone.
"""

from __future__ import annotations

import os
import signal
import sys

try:  # a Ctrl-C during the imports, or a runtime-only install without typer: one line, not a traceback
    import threading
    import time
    from enum import Enum
    from pathlib import Path
    from typing import Optional

    import typer

    from gankit_runtime import GankitError, Generator, errors, write_npz
    from gankit_runtime.generator import THREADS_PER_CPU, usable_cpus
    from gankit_runtime.files import refuse_overlap, same_path
except KeyboardInterrupt:
    print("error: interrupted", file=sys.stderr)
    sys.exit(130)
except ImportError as _missing:
    print(f"error: the command line needs typer and gankit-runtime ({_missing}): "
          "pip install typer './inference[cpu]'", file=sys.stderr)
    sys.exit(1)

# Usage errors (bad option, bad value): typer >= 0.22 raises its own vendored-click exceptions, older typer click's.
USAGE_ERRORS: tuple = tuple(c for c in (getattr(typer.exceptions, "TyperException", None),) if c)
try:
    import click

    USAGE_ERRORS += (click.exceptions.ClickException,)
except ImportError:
    pass

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train GAN generators, export them to ONNX, generate images with onnxruntime.")


def _choices(name: str, *values: str) -> type[Enum]:
    """A str Enum of option values (typer lists them in --help and rejects others in one line); members are
    the values with '-' as '_'. Spelled out here, not imported from gankit.config: generate and info must run
    where only the runtime is installed."""
    return Enum(name, {v.replace("-", "_"): v for v in values}, type=str)


ModelKind = _choices("ModelKind", "vanilla", "dcgan")
GLoss = _choices("GLoss", "non-saturating", "minimax")
Loss = _choices("Loss", "bce", "hinge")
Format = _choices("Format", "png", "imagefolder", "npz")
DCondition = _choices("DCondition", "projection", "concat")
DNorm = _choices("DNorm", "batch", "spectral")
Augment_ = _choices("Augment_", "off", "fixed", "ada")
DataSet = _choices("DataSet", "mnist", "fashion-mnist")  # eval's and train-classifier's: a shipped classifier each


def _flag(help: str) -> dict:
    """typer.Option keywords of an on/off flag (no `<bool>` in the help: a flag takes no value)."""
    return {"help": help, "metavar": ""}


def _check_threads(threads: int | None) -> None:  # bounded as the runtime bounds its own threads
    if threads is not None and threads > THREADS_PER_CPU * usable_cpus():
        raise GankitError(f"--threads {threads} is more than {THREADS_PER_CPU} per CPU this process may use ({usable_cpus()})")


_ARGV: list[str] = []  # the command line main() was given (train --nproc starts the ranks with it)


def _training_side():
    """Import the torch side, or say in one line what is missing."""
    try:
        import torch  # noqa: F401

        import gankit.train  # noqa: F401
    except ImportError as e:
        raise GankitError(f"train and export need PyTorch and gankit's training package ({e}): "
                          "pip install torch -e .") from None


def _given(ctx: typer.Context, values: dict) -> dict:
    """The run settings the user typed on the command line (not defaults), as config field -> value."""
    from gankit.config import OPTION_FIELDS

    given = {}
    for option, field in OPTION_FIELDS.items():
        source = ctx.get_parameter_source(option)  # click's ParameterSource (typer may vendor its own click)
        if source is not None and source.name == "COMMANDLINE":
            value = values[option]
            given[field] = value.value if isinstance(value, Enum) else str(value) if isinstance(value, Path) else value
    return given


@app.command()
def train(
    ctx: typer.Context,
    model: ModelKind = typer.Option(ModelKind.dcgan, help="vanilla (MLP) or dcgan."),
    data: str = typer.Option("mnist", help="mnist, fashion-mnist, or a folder of images (recursive)."),
    out: Path = typer.Option(None, help="Run folder for checkpoint.pt, metrics.jsonl, samples/. "
                                        "Default: runs/<data>-<model>."),
    epochs: int = typer.Option(5, min=1, help="On --resume: the run's own unless given."),
    steps: Optional[int] = typer.Option(None, min=1, help="Stop after this many generator steps in all."),
    batch_size: int = typer.Option(64, min=1),
    lr_g: Optional[float] = typer.Option(None, help="Adam learning rate of the generator. Default 1e-3 for dcgan "
                                                    "below 64x64, else 2e-4 (measured: README, Benchmarks)."),
    lr_d: Optional[float] = typer.Option(None, help="Adam learning rate of the discriminator. Default as --lr-g's."),
    beta1: float = typer.Option(0.5),
    beta2: float = typer.Option(0.999),
    d_steps: int = typer.Option(1, min=1, help="k: discriminator steps per generator step."),
    g_loss: GLoss = typer.Option(GLoss.non_saturating, help="non-saturating -log D(G(z)), or the "
                                                             "original minimax log(1 - D(G(z)))."),
    loss: Loss = typer.Option(Loss.bce, help="bce (cross-entropy, the course's) or hinge (on logits; G maximises D)."),
    r1: Optional[float] = typer.Option(None, min=0, help="R1 penalty weight, 0 = off. Default 1 for dcgan below 64x64."),
    top_k: float = typer.Option(1.0, min=0, max=1, help="G learns from D's best-scored share of fakes; 1 = all."),
    image_size: Optional[int] = typer.Option(None, help="Default 28 for mnist/fashion-mnist, 64 for folders."),
    channels: Optional[int] = typer.Option(None, help="1 or 3. Default 1 for mnist/fashion-mnist, 3 for folders."),
    z_dim: int = typer.Option(100, min=1),
    width: Optional[int] = typer.Option(None, min=1, help="dcgan: 8*width channels at 4x4. Default 32 "
                                                           "(128 at 64x64: the DCGAN paper's 1024)."),
    label_smoothing: float = typer.Option(0.0, help="One-sided: D's target for real images is 1 - this."),
    d_norm: DNorm = typer.Option(DNorm.batch, help="dcgan: normalisation in D, batch norm or spectral norm."),
    conditional: bool = typer.Option(False, "--conditional", **_flag("Class-conditional G and D, trained on the data's "
                                                                   "labels (MNIST's digits, a folder's sub-folders).")),
    d_condition: DCondition = typer.Option(DCondition.projection, help="--conditional: how D takes the label."),
    seed: int = typer.Option(0, min=0),
    ema: float = typer.Option(10.0, min=0, help="EMA of G's weights: half-life in thousands of images; 0 = off."),
    eval_every: int = typer.Option(0, min=0, help="Eval figures every N generator steps (mnist, fashion-mnist); 0 = never."),
    eval_samples: int = typer.Option(5000, min=10, help="Samples per eval during training."),
    checkpoint_every: int = typer.Option(0, min=0, help="Checkpoint every N generator steps (besides epoch ends and "
                                                        "Ctrl-C); 0 = every 5 minutes of training."),
    augment: Augment_ = typer.Option(Augment_.off, help="Differentiable augmentation of all D sees, for few images: "
                                                         "fixed (probability --augment-p) or ada (adaptive)."),
    augment_p: float = typer.Option(1.0, min=0, max=1, help="--augment fixed: probability of each operation."),
    sync_bn: bool = typer.Option(False, "--sync-bn", **_flag("Under torchrun: batch-norm statistics of the global "
                                                             "batch (all processes), not of each process's share.")),
    data_dir: Optional[Path] = typer.Option(None, help="Data set cache. Default $GANKIT_DATA or ~/.cache/gankit."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    nproc: Optional[int] = typer.Option(None, min=1, max=1024, help="Train on N processes of this machine (DDP: "
                                                                 "torchrun --standalone --nproc-per-node N, in one "
                                                                 "command: one error line, the ranks' exit code)."),
    resume: bool = typer.Option(False, "--resume", **_flag("Continue the run in --out with its own settings; "
                                                           "--epochs, --steps, --eval-every, --eval-samples, "
                                                           "--checkpoint-every, --device, --threads may change, any "
                                                           "other setting given must match the run's.")),
):
    """Train a GAN; writes checkpoints, a sample grid per epoch and metrics.jsonl. Ctrl-C checkpoints and stops."""
    _run_training(ctx, dict(locals()))


def _run_training(ctx: typer.Context, o: dict) -> None:
    """train's body, given its options by name."""
    _training_side()
    if o["nproc"] and "RANK" not in os.environ:
        from gankit.launch import launch

        raise typer.Exit(launch(o["nproc"], _ARGV))
    import torch

    from gankit.config import new_run_configs
    from gankit.train import train as run_training

    given = _given(ctx, o)
    if "augment_p" in given and o["augment"] != Augment_.fixed and not o["resume"]:
        raise GankitError(f"--augment-p is the probability of --augment fixed; with --augment {o['augment'].value} it "
                          "would be ignored")
    _check_threads(o["threads"])
    if o["threads"]:
        torch.set_num_threads(o["threads"])
    out = o["out"] or Path("runs") / f"{Path(o['data']).name}-{o['model'].value}"
    model_cfg = train_cfg = None
    if not o["resume"]:
        plain = {k: o[k] for k in ("z_dim", "epochs", "batch_size", "beta1", "beta2", "d_steps", "label_smoothing",
                                   "seed", "eval_every", "eval_samples", "checkpoint_every", "sync_bn", "augment_p")}
        model_cfg, train_cfg = new_run_configs(
            o["model"].value, o["data"], o["image_size"], o["channels"], o["width"], o["lr_g"], o["lr_d"],
            d_norm=o["d_norm"].value, d_condition=o["d_condition"].value, data_dir=str(o["data_dir"] or ""),
            g_loss=o["g_loss"].value, loss=o["loss"].value, r1=o["r1"], top_k=o["top_k"], ema_kimg=o["ema"], augment=o["augment"].value, **plain)
    ckpt = run_training(out, model_cfg, train_cfg, resume=o["resume"], given=given, max_steps=o["steps"],
                        device=o["device"], conditional=o["conditional"])
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the group
        typer.echo(f"checkpoint: {ckpt}\nexport it:  python cli.py export {out}   (writes {out / 'generator.onnx'})")


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run folder or checkpoint file (or an older .onnx export, to upgrade)."),
    out: Path = typer.Option(None, help="Output .onnx file. Default: <run>/generator.onnx."),
    atol: float = typer.Option(1e-4, help="Largest |torch - onnxruntime| accepted."),
    force: bool = typer.Option(False, "--force", **_flag("Replace an existing --out (the run's own "
                                                         "generator.onnx is replaced without it).")),
):
    """Export a trained generator to one self-contained ONNX file, verified against torch."""
    _training_side()
    from gankit.checkpoint import checkpoint_file
    from gankit.export import export as run_export

    if run.suffix == ".onnx":  # an export of an older format: add what this format adds (the pixels output)
        from gankit.export import upgrade

        if out is None:
            raise GankitError("give --out for the upgraded copy of an .onnx (the original is kept)")
        return upgrade(run, out, force=force)
    default = checkpoint_file(run).parent / "generator.onnx"
    out = out or default
    run_export(run, out, atol=atol, force=force or same_path(out, default))


@app.command()
def generate(
    model: Path = typer.Argument(..., help="An exported .onnx generator."),
    seeds: Optional[str] = typer.Option(None, help="Seeds, e.g. 0-99,200,300-310; one image per seed (and class). "
                                                   "Default 0-63."),
    per_class: Optional[int] = typer.Option(None, min=1, help="Conditional models: N images of each class "
                                                              "(seeds 0..N-1). Instead of --seeds."),
    classes: Optional[str] = typer.Option(None, "--classes", "--class", help="Conditional models: the classes, by "
                                                                             "name or index, e.g. 0,3,7. Default all."),
    truncation: float = typer.Option(1.0, help="psi: latents shrink toward the mean, z' = psi * z (1.0 = off)."),
    out: Optional[Path] = typer.Option(None, help="Folder (png, imagefolder; default out/) or .npz file "
                                                  "(default out.npz)."),
    format: Optional[Format] = typer.Option(None, "--format", help="png: out/<seed>.png; imagefolder: "
                                            "out/<class>/<seed>.png (default for conditional models); npz: one file "
                                            "of images, labels, seeds. Folders get metadata.jsonl."),
    shard: Optional[str] = typer.Option(None, help="i/n: this process makes the i-th of n disjoint parts (from 0); "
                                                   "the n parts together are the single run's files."),
    batch_size: int = typer.Option(64, min=1),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N (an error if CUDA cannot be used)."),
    tf32: bool = typer.Option(False, "--tf32", **_flag("CUDA: TF32 convolutions, faster on recent GPUs; pixels then "
                                                       "differ from the CPU's by several levels.")),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads for inference in all, exactly (default: "
                                                            "the CPUs this process may use, at most 8)."),
    lanes: Optional[int] = typer.Option(None, min=1, help="Batches in flight at once, sharing the model (CPU default: "
                                                          "one per thread, at most 4). Images do not depend on it."),
    grid: Optional[Path] = typer.Option(None, help="Also write a PNG grid here: the first 64 images, or 8 per class."),
    png_level: int = typer.Option(1, min=0, max=9, help="PNG deflate level, 0-9: 1 makes small files, 0 is fastest."),
    force: bool = typer.Option(False, "--force", **_flag("Replace an existing npz or grid file that this command "
                                                         "did not write.")),
):
    """Generate images from seeds with onnxruntime (no torch needed); labelled data sets from conditional models.

    Interrupted? Run the same command again: it keeps the images already written and makes the rest.
    """
    from gankit_runtime import default_layout, job_for, write_folder

    format = _check_generate_options(format, out, tf32, device, shard, png_level)
    generator = Generator(model, device=device, threads=threads, tf32=tf32, lanes=lanes)
    part = job_for(generator, seeds, per_class, classes, truncation, shard)
    format = format or Format(default_layout(generator))
    out = out or Path("out.npz" if format == Format.npz else "out")
    start = time.perf_counter()
    if format == Format.npz:
        result = write_npz(generator, part, out, batch_size=batch_size, grid=grid, force=force)
    else:
        result = write_folder(generator, part, out, format.value, batch_size=batch_size, grid=grid,
                              png_level=png_level, force=force)
    seconds = time.perf_counter() - start
    what = f"shard {part.part[0]}/{part.part[1]}: " if shard is not None else ""
    kept = f", kept {result.skipped} already there" if result.skipped else ""
    typer.echo(f"{what}wrote {result.written} images to {out}{kept} in {seconds:.1f} s "
               f"({result.written / max(seconds, 1e-9):.0f} images/s, {', '.join(generator.providers)})")


def _check_generate_options(format, out, tf32: bool, device: str, shard, png_level: int):
    """The format asked for (--out x.npz is an npz); options that would be ignored are refused."""
    if format is None and out is not None and out.suffix == ".npz":
        format = Format.npz
    if tf32 and not device.startswith("cuda"):
        raise GankitError("--tf32 is for CUDA convolutions: it has no effect on the CPU")
    if shard is not None and format == Format.npz:
        raise GankitError("--shard needs a folder layout (png or imagefolder): an npz is one file")
    if png_level != 1 and format == Format.npz:
        raise GankitError("--png-level is for PNG folders: an npz holds raw pixels")
    return format


def _is_eval_json(path: Path) -> bool:
    """Figures that eval wrote (so that a rerun replaces them, and nothing else)."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "generated" in data


@app.command("eval")
def evaluate(
    model: Path = typer.Argument(..., help="An exported .onnx generator, or a run folder / checkpoint."),
    data: DataSet = typer.Option(DataSet.mnist, help="Reference data: its test split and classifier."),
    samples: int = typer.Option(10000, min=10, max=100_000, help="Generated samples (seeds 0..N-1)."),
    out: Optional[Path] = typer.Option(None, help="JSON file for the figures. Default: <run>/eval.json for a run, "
                                                  "<model name>.eval.json in the working directory for an .onnx."),
    classifier: Optional[Path] = typer.Option(None, help="Feature extractor. Default: --data's classifier shipped in "
                                                          "gankit_runtime (models/DATA-classifier.onnx)."),
    reference: bool = typer.Option(True, help="Also score real training images: the scale."),
    truncation: float = typer.Option(1.0, help="psi of the samples scored (1.0 = off), as generate's."),
    force: bool = typer.Option(False, "--force", **_flag("Replace an existing --out that eval did not write.")),
):
    """Score a generator: FD, KID, precision/recall in a classifier's features, confidence, classes."""
    import tempfile

    from gankit_runtime.evaluate import evaluate as run_eval, table, write_json
    from gankit_runtime.files import prepare_output_file

    is_run = model.suffix != ".onnx"
    # The figures go to the working directory (an .onnx) or the run folder, never beside a shipped model.
    if out is None:
        out = (model if model.is_dir() else model.parent) / "eval.json" if is_run else Path(f"{model.stem}.eval.json")
    checkpoint = (model / "checkpoint.pt" if model.is_dir() else model) if is_run else None
    refuse_overlap(out, "--out", {"the model": model, "the checkpoint": checkpoint, "the classifier": classifier})
    out = prepare_output_file(out, ours=_is_eval_json, force=force)  # checked before the work
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "generator.onnx" if is_run else model
        try:
            if is_run:  # a run folder or checkpoint: export it first (verified, as always)
                _training_side()
                from gankit.export import export as run_export

                with open(os.devnull, "w") as quiet:
                    run_export(model, onnx_path, log=quiet)
            result = run_eval(Generator(onnx_path), samples=samples, classifier=classifier, data=data.value,
                              with_reference=reference, truncation=truncation)
        except GankitError as e:  # name the user's run, not the temporary export
            raise GankitError(str(e).replace(str(onnx_path), str(model))) from None
    result["model"] = str(model)
    write_json(result, out)
    typer.echo(table(result) + f"\nfigures: {out}")


@app.command("train-classifier")
def train_classifier(
    data: DataSet = typer.Option(DataSet.mnist),
    out: Optional[Path] = typer.Option(None, help="Output .onnx file. Default runs/DATA-classifier.onnx (the shipped "
                                                  "ones are in inference/gankit_runtime/models/)."),
    epochs: int = typer.Option(4, min=1),
    seed: int = typer.Option(0, min=0),
    data_dir: Optional[Path] = typer.Option(None, help="Data set cache. Default $GANKIT_DATA or ~/.cache/gankit."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads."),
    force: bool = typer.Option(False, "--force", **_flag("Replace an existing --out.")),
):
    """Train a classifier that eval uses as its feature space, and export it to ONNX."""
    _training_side()
    import torch

    from gankit.classifier import export_classifier, train_classifier as run
    from gankit_runtime.files import prepare_output_file

    out = prepare_output_file(out or Path(f"runs/{data.value}-classifier.onnx"), force=force)
    _check_threads(threads)
    if threads:
        torch.set_num_threads(threads)
    model, acc = run(data.value, epochs=epochs, seed=seed, data_dir=data_dir)
    export_classifier(model, out, acc, data.value)
    typer.echo(f"wrote {out}: test accuracy {acc:.2%}")


@app.command()
def web(
    models: Optional[list[Path]] = typer.Argument(None, help="Exported .onnx generators. Default: the shipped ones."),
    out: Path = typer.Option(Path("out/web"), help="Folder for the site (replaced if cli.py web wrote it)."),
    force: bool = typer.Option(False, "--force", **_flag("Replace --out even if cli.py web did not write it.")),
):
    """Write a static site that runs the generators in the browser (onnxruntime-web): seeds, classes,
    truncation, a grid and an interpolation. Serve it with any static server, e.g. python -m http.server."""
    root = Path(__file__).resolve().parent
    sys.path.insert(0, str(root / "web"))  # repository tooling, not part of the installed runtime
    import build_site as site
    models = models or sorted((root / "exported").glob("*.onnx"), key=lambda p: ("cdcgan" in p.name, p.name))
    entries = site.write_site(models, out, root / "web", force=force)
    typer.echo(f"wrote {out} ({len(entries)} model{'s' if len(entries) > 1 else ''}): serve it, e.g. "
               f"python -m http.server -d {out} 8000, then open http://127.0.0.1:8000")


def _printable(text: object) -> str:
    """Untrusted text (a model's metadata) with control characters escaped: no terminal escape sequences."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


@app.command()
def info(model: Path = typer.Argument(..., help="An exported .onnx generator.")):
    """Show what an exported generator takes and gives, and its metadata."""
    i = Generator(model).info
    typer.echo(f"{_printable(i.path)}\n  input  {_printable(i.input_name)}: float32 [N, {i.z_dim}]")
    if i.conditional:
        classes = ", ".join(f"{n}={_printable(c)}" for n, c in enumerate(i.classes))
        typer.echo(f"  input  {_printable(i.labels_name)}: int64 [N], class index: {classes}")
    typer.echo(f"  output {_printable(i.output_name)}: float32 [N, {i.channels}, {i.height}, {i.width}] in "
               f"{list(i.output_range)}")
    if i.pixels_name:
        typer.echo(f"  output {_printable(i.pixels_name)}: uint8 [N, {i.height}, {i.width}, {i.channels}]")
    for key, value in sorted(i.metadata.items()):
        typer.echo(f"  {_printable(key)}: {_printable(value)}")


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _stop_on_signal(signum, frame):
    errors.received_signal = signum  # exit code 128 + signum: 143 for SIGTERM, 129 for SIGHUP
    raise KeyboardInterrupt  # handled as Ctrl-C: temporaries removed, whole files kept


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a user's mistake becomes one line on stderr and a non-zero exit code."""
    main_thread = threading.current_thread() is threading.main_thread()  # signals can only be set there
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    errors.received_signal = signal.SIGINT
    _ARGV[:] = sys.argv[1:] if argv is None else list(argv)
    if main_thread:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _stop_on_signal)
    try:
        rc = typer.main.get_command(app).main(args=argv, prog_name="cli.py", standalone_mode=False)
    except typer.Exit as e:
        rc = e.exit_code
    except USAGE_ERRORS as e:
        if e.format_message():  # empty when typer has just shown the help (no arguments given)
            print(f"error: {e.format_message()}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except GankitError as e:  # Interrupted too: its message says what was kept
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the group
            print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # disk full, permission denied, ... while writing
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    finally:
        if main_thread:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if isinstance(rc, int) and rc == 130:  # typer turned a KeyboardInterrupt outside our handlers into 130
        print("error: interrupted (files are written whole or not at all: run the same command again)",
              file=sys.stderr)
        return 128 + int(errors.received_signal)
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
