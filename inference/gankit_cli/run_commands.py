"""The commands that need only the runtime (no torch): generate, eval, info; and web, which packages the
generators into a static site."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer
from gankit_runtime import GankitError, Generator, progress, write_npz
from gankit_runtime.files import refuse_overlap
from gankit_runtime.shipped import resolve_model, shipped_models

from .frame import DataSet, Format, _flag, _printable, _training_side, app

FILE_SUFFIXES = (".npz", ".npy", ".png", ".jpg", ".jpeg", ".json", ".onnx")  # what --out of a folder must not name


@app.command()
def generate(
    model: Path = typer.Argument(..., help="An exported .onnx generator, or a shipped one by name (gankit info)."),
    seeds: str | None = typer.Option(
        None, help="Seeds, e.g. 0-99,200,300-310; one image per seed (and class). Default 0-63."
    ),
    per_class: int | None = typer.Option(
        None, min=1, help="Conditional models: N images of each class (seeds 0..N-1). Instead of --seeds."
    ),
    classes: str | None = typer.Option(
        None, "--classes", "--class", help="Conditional models: the classes, by name or index, e.g. 0,3,7. Default all."
    ),
    truncation: float = typer.Option(1.0, help="psi: latents shrink toward the mean, z' = psi * z (1.0 = off)."),
    out: Path | None = typer.Option(
        None, help="Folder (png, imagefolder; default out/) or .npz file (default out.npz)."
    ),
    format: Format | None = typer.Option(
        None,
        "--format",
        help="png: out/<seed>.png; imagefolder: "
        "out/<class>/<seed>.png (default for conditional models); npz: one file "
        "of images, labels, seeds. Folders get metadata.jsonl.",
    ),
    shard: str | None = typer.Option(
        None,
        help="i/n: this process makes the i-th of n disjoint parts (from 0); "
        "the n parts together are the single run's files.",
    ),
    batch_size: int = typer.Option(64, min=1),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N (an error if CUDA cannot be used)."),
    tf32: bool = typer.Option(
        False,
        "--tf32",
        **_flag("CUDA: TF32 convolutions, faster on recent GPUs; pixels then differ from the CPU's by several levels."),
    ),
    threads: int | None = typer.Option(
        None,
        min=1,
        help="CPU threads for inference in all, exactly (default: the CPUs this process may use, at most 8).",
    ),
    lanes: int | None = typer.Option(
        None,
        min=1,
        help="Batches in flight at once, sharing the model (CPU default: "
        "one per thread, at most 4). Images do not depend on it.",
    ),
    grid: Path | None = typer.Option(None, help="Also write a PNG grid here: the first 64 images, or 8 per class."),
    png_level: int = typer.Option(1, min=0, max=9, help="PNG deflate level, 0-9: 1 makes small files, 0 is fastest."),
    force: bool = typer.Option(
        False, "--force", **_flag("Replace an existing npz or grid file that this command did not write.")
    ),
):
    """Generate images from seeds with onnxruntime (no torch needed); labelled data sets from conditional models.

    Interrupted? Run the same command again: it keeps the images already written and makes the rest.
    """
    from gankit_runtime import default_layout, job_for, write_folder

    format = _check_generate_options(format, out, tf32, device, shard, png_level)
    generator = Generator(model, device=device, threads=threads, tf32=tf32, lanes=lanes)
    part = job_for(generator, seeds, per_class, classes, truncation, shard)
    format = format or Format(default_layout(generator))
    if format != Format.npz and out is not None and out.suffix.lower() in FILE_SUFFIXES:
        raise GankitError(
            f"--format {format.value} writes a folder of images; --out {out} names a file (for an npz "
            "give --format npz, for one picture of them --grid)"
        )
    out = out or Path("out.npz" if format == Format.npz else "out")
    start = time.perf_counter()
    bar = progress.Progress(plain_every=progress.PLAIN_EVERY)

    def shown(done: int, total: int) -> None:
        bar.update(f"images ({done / max(time.perf_counter() - start, 1e-9):.0f}/s)", done, total)

    if format == Format.npz:
        result = write_npz(generator, part, out, batch_size=batch_size, grid=grid, force=force, progress=shown)
    else:
        result = write_folder(
            generator,
            part,
            out,
            format.value,
            batch_size=batch_size,
            grid=grid,
            png_level=png_level,
            force=force,
            progress=shown,
        )
    bar.clear()
    seconds = time.perf_counter() - start
    what = f"shard {part.part[0]}/{part.part[1]}: " if shard is not None else ""
    kept = f", kept {result.skipped} already there" if result.skipped else ""
    typer.echo(
        f"{what}wrote {result.written} images to {out}{kept} in {seconds:.1f} s "
        f"({result.written / max(seconds, 1e-9):.0f} images/s, {', '.join(generator.providers)})"
    )


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
    model: Path = typer.Argument(
        ..., help="An exported .onnx generator, a shipped one by name, or a run folder / checkpoint."
    ),
    data: DataSet = typer.Option(DataSet.mnist, help="Reference data: its test split and classifier."),
    samples: int = typer.Option(10000, min=10, max=100_000, help="Generated samples (seeds 0..N-1)."),
    out: Path | None = typer.Option(
        None,
        help="JSON file for the figures. Default: <run>/eval.json for a run, MODEL.eval.json beside an .onnx, "
        "NAME.eval.json here for a shipped model.",
    ),
    classifier: Path | None = typer.Option(
        None,
        help="Feature extractor. Default: --data's classifier shipped in gankit_runtime (models/DATA-classifier.onnx).",
    ),
    reference: bool = typer.Option(
        True, "--reference/--no-reference", **_flag("Also score real training images: the scale.")
    ),
    truncation: float = typer.Option(1.0, help="psi of the samples scored (1.0 = off), as generate's."),
    force: bool = typer.Option(False, "--force", **_flag("Replace an existing --out that eval did not write.")),
):
    """Score a generator: FD, KID, precision/recall in a classifier's features, confidence, classes."""
    import tempfile

    from gankit_runtime.evaluation.evaluate import evaluate as run_eval
    from gankit_runtime.evaluation.evaluate import table, write_json
    from gankit_runtime.files import prepare_output_file

    named, model = model, resolve_model(model)
    is_run = model.suffix != ".onnx"
    if out is None and model != named:  # a shipped model: its folder is the installed package's, not the user's
        out = Path(f"{named}.eval.json")
    if out is None:  # into the run, or beside the model: never into the working directory by surprise
        out = (model if model.is_dir() else model.parent) / "eval.json" if is_run else model.with_suffix(".eval.json")
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
            result = run_eval(
                Generator(onnx_path),
                samples=samples,
                classifier=classifier,
                data=data.value,
                with_reference=reference,
                truncation=truncation,
            )
        except GankitError as e:  # name the user's run, not the temporary export
            raise GankitError(str(e).replace(str(onnx_path), str(model))) from None
    result["model"] = str(model)
    write_json(result, out)
    typer.echo(table(result) + f"\nfigures: {out}")


@app.command()
def web(
    models: list[Path] | None = typer.Argument(
        None, help="Exported .onnx generators (or shipped ones by name). Default: the shipped ones."
    ),
    out: Path = typer.Option(Path("out/web"), help="Folder for the site (replaced if this command built it)."),
    ort: Path | None = typer.Option(
        None,
        help="onnxruntime-web's dist/ folder (ort.wasm.min.mjs, ...). Default: "
        "node_modules/onnxruntime-web/dist here, or in the checkout's web/.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        **_flag(
            "Replace --out when it holds a site an older gankit built (only a site's files; anything else is refused)."
        ),
    ),
):
    """Write a static site that runs the generators in the browser (onnxruntime-web): seeds, classes,
    truncation, a grid and an interpolation. Serve it with any static server, e.g. python -m http.server."""
    from gankit_web import build_site as site  # the page ships in the runtime: no torch needed

    sources = Path(site.__file__).resolve().parent
    shipped = sorted(shipped_models().values(), key=lambda p: ("cdcgan" in p.name, p.name))
    models = [resolve_model(m) for m in models or []]
    entries = site.write_site(models or shipped, out, ort_dir=site.find_ort(ort, sources), force=force)
    typer.echo(
        f"wrote {out} ({len(entries)} model{'s' if len(entries) > 1 else ''}): serve it, e.g. "
        f"python -m http.server -d {out} 8000, then open http://127.0.0.1:8000"
    )


@app.command()
def info(
    model: Path | None = typer.Argument(
        None, help="An exported .onnx generator, or a shipped one by name. Default: list the shipped models."
    ),
):
    """Show what an exported generator takes and gives, and its metadata; without MODEL, the shipped models."""
    if model is None:
        for name, path in shipped_models().items():
            i = Generator(path, threads=1).info
            kind = f"{len(i.classes)} classes" if i.conditional else "unconditional"
            typer.echo(f"{name:<16} {i.metadata.get('dataset', '?'):<14} {kind:<14} {i.channels}x{i.height}x{i.width}")
        return
    i = Generator(model).info
    typer.echo(f"{_printable(i.path)}\n  input  {_printable(i.input_name)}: float32 [N, {i.z_dim}]")
    if i.conditional:
        classes = ", ".join(f"{n}={_printable(c)}" for n, c in enumerate(i.classes))
        typer.echo(f"  input  {_printable(i.labels_name)}: int64 [N], class index: {classes}")
    typer.echo(
        f"  output {_printable(i.output_name)}: float32 [N, {i.channels}, {i.height}, {i.width}] in "
        f"{list(i.output_range)}"
    )
    if i.pixels_name:
        typer.echo(f"  output {_printable(i.pixels_name)}: uint8 [N, {i.height}, {i.width}, {i.channels}]")
    for key, value in sorted(i.metadata.items()):
        typer.echo(f"  {_printable(key)}: {_printable(value)}")
