"""The data-set side of the torch commands: split (hold out test images before training) and check-augmentation
(does a generated set help a classifier, beyond rebalancing?). Each imports gankit (and torch) only when run."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from gankit_runtime import GankitError
from gankit_runtime.files import is_inside

from .frame import MAX_SEED, _check_threads, _flag, _training_side, app


@app.command()
def split(
    folder: Path = typer.Argument(..., help="Your labelled images: one sub-folder per class."),
    out: Path = typer.Option(..., help="New folder for train/ and test/ (hard links, or copies) and the manifest."),
    holdout: float = typer.Option(0.2, help="Share of each class's distinct images held out for testing."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Seed of the choice."),
):
    """Hold out a share of each class before training: train the generator on OUT/train, and check the generated set
    on OUT/test, images it never saw (check-augmentation --real OUT/train --test OUT/test)."""
    _training_side()
    from gankit.split import MANIFEST, split_folder

    manifest = split_folder(folder, out, holdout, seed)
    typer.echo(
        f"wrote {out}: {len(manifest['train'])} images in train/, {len(manifest['test'])} in test/ "
        f"(files listed with their sha256 in {out / MANIFEST})"
    )


def _is_check_json(path: Path) -> bool:  # a file check-augmentation wrote: replaced by a rerun without --force
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "gain_over_control" in data and "verdict" in data


def _refuse_same_folders(folders: dict) -> None:
    named = [(k, v) for k, v in folders.items() if v is not None]
    for i, (a, pa) in enumerate(named):
        for b, pb in named[i + 1 :]:
            if is_inside(pa, pb) or is_inside(pb, pa):
                raise GankitError(
                    f"{a} {pa} and {b} {pb} are the same folder, or one holds the other: give three apart"
                )


def _trained_on(model: Path | None, generated: Path) -> set[str] | None:
    """The training-image record of --model (None without one), after checking it made --generated."""
    if model is None:
        return None
    from gankit_runtime import Generator
    from gankit_runtime.contract import TRAINING_IMAGES

    g = Generator(model, threads=1)
    job = generated / "gankit-job.json"
    try:
        made_by = json.loads(job.read_text()).get("model_sha256") if job.is_file() else None
    except (OSError, ValueError, AttributeError):
        made_by = None
    if made_by is not None and made_by != g.sha256:
        raise GankitError(f"--generated {generated} was made by another model than --model {model}")
    record = g.info.metadata.get(TRAINING_IMAGES)
    if record is None:
        raise GankitError(
            f"--model {model} has no record of its training images (exported by an older gankit, or trained on "
            "a built-in data set): leave --model out"
        )
    return set(record.split(","))


@app.command("check-augmentation")
def check_augmentation(
    real: Path = typer.Option(..., help="Your real training images: one sub-folder per class."),
    generated: Path = typer.Option(
        ..., help="The generated set: the folder gankit generate wrote, or any folder of class sub-folders."
    ),
    test: Path | None = typer.Option(
        None, help="Real test images the generator never saw (gankit split's test/). Default: hold out of --real."
    ),
    model: Path | None = typer.Option(
        None, help="The generator that made --generated: test images it trained on are refused (its record)."
    ),
    holdout: float = typer.Option(0.2, help="Without --test: share of each real class held out on each run."),
    runs: int = typer.Option(3, min=3, max=20, help="Paired runs, each with its own test sample and seed."),
    steps: int = typer.Option(500, min=1, help="Classifier steps (batches of 64), the same for every case."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Seed of the runs (run r uses seed + r)."),
    real_share: float | None = typer.Option(
        None,
        help="In real + generated: the share of a covered class's weight on its real images, the rest on its "
        "generated ones, between 0 and 1. Default: 0.5.",
    ),
    image_size: int | None = typer.Option(
        None, min=8, help="Images are resized to this. Default: the generated set's."
    ),
    channels: int | None = typer.Option(None, min=1, max=3, help="1 or 3. Default: the generated set's."),
    threads: int | None = typer.Option(None, min=1, help="torch CPU threads."),
    out: Path | None = typer.Option(None, help="Also write the figures to this JSON file."),
    force: bool = typer.Option(
        False, "--force", **_flag("Replace an --out file that check-augmentation did not write.")
    ),
):
    """Does a generated set help a classifier of your images, beyond rebalancing? Trains the fixed small classifier
    on your real images as they are, oversampled to the same class mix, with a class-weighted loss, with the
    generated set (that loss, half of each generated class's weight on its generated images), and on the generated
    set alone; measures each on real test images the generator never saw."""
    _training_side()
    import torch
    from gankit.augcheck import REAL_SHARE, check, check_settings, image_shape, read_labelled_folder, table
    from gankit_runtime.evaluation.evaluate import write_json
    from gankit_runtime.files import prepare_output_file

    _check_threads(threads)
    share = REAL_SHARE if real_share is None else real_share
    check_settings(holdout, runs, share)
    if channels not in (None, 1, 3):
        raise GankitError(f"--channels must be 1 or 3, got {channels}")
    _refuse_same_folders({"--real": real, "--generated": generated, "--test": test})
    if threads:
        torch.set_num_threads(threads)
    if out is not None:
        out = prepare_output_file(out, ours=_is_check_json, force=force)
    if (image_size is None or channels is None) and generated.is_dir():
        shape = image_shape(generated)
        image_size, channels = image_size or shape[0], channels or shape[1]
    size, channels = image_size or 28, channels or 1
    trained_on = _trained_on(model, generated)
    real_set = read_labelled_folder(real, "--real", size, channels)
    generated_set = read_labelled_folder(generated, "--generated", size, channels)
    test_set = None if test is None else read_labelled_folder(test, "--test", size, channels)
    result = check(real_set, generated_set, test_set, holdout, runs, steps, seed, trained_on, real_share=share)
    if trained_on is not None:
        note = "the test images are not among the generator's training images (--model's record)"
    elif test is not None:
        note = "note: without --model the tool cannot know whether the generator trained on the --test images"
    else:
        note = (
            "note: the test images are held out of --real; if the generator trained on --real, it saw them and the "
            "generated set's figures are flattered: gankit split before training, then --test (or give --model)"
        )
    result["leak_check"] = note
    typer.echo(table(result, note))
    if out is not None:
        write_json(result, out)  # eval's writer: whole or not at all, a full disk named in one line
