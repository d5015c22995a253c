"""`gankit check-augmentation`: does a generated set help a classifier of the user's own images?

Part of the user's real images (a share of each class, chosen by a seed) is held out. The project's fixed small
classifier (gankit.classifier.DigitClassifier: same steps, same batches, 2-pixel shifts) is trained, on each of a few
seeds, on the rest of the real images alone, on them plus the generated set, and on the generated set alone
(GAN-train, the classification accuracy score of Ravuri & Vinyals 2019), and each is measured on the held-out real
images: recall per class and balanced accuracy (their mean). The gain of real + generated over real alone is
paired by seed; its spread is the standard deviation of those paired differences. The verdict: helps when the mean
gain exceeds twice the spread, hurts when the loss does, else no measurable effect.

Folders are read as torchvision's ImageFolder reads them: one sub-folder per class. A folder that `gankit generate`
wrote names its classes in metadata.jsonl (class_name), whatever its folder names, and so does this reader.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gankit_runtime import GankitError

from .classifier import fit, predict

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_IMAGES = 200_000  # per folder: they are held in memory


@dataclass
class LabelledImages:
    images: np.ndarray  # uint8 [N, H, W] (grey) or [N, H, W, 3]
    labels: np.ndarray  # int64 [N], indices into classes
    classes: list[str]


def _class_names(folder: Path, subfolders: list[str]) -> dict[str, str]:
    """Sub-folder -> class name: metadata.jsonl's class_name where gankit wrote the folder, else the folder name."""
    names = {f: f for f in subfolders}
    meta = folder / "metadata.jsonl"
    if meta.is_file():
        try:
            for line in meta.read_text().splitlines():
                r = json.loads(line)
                if isinstance(r, dict) and isinstance(r.get("class_name"), str) and "/" in str(r.get("file_name")):
                    names[r["file_name"].split("/")[0]] = r["class_name"]
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise GankitError(f"{meta} is not a readable metadata.jsonl ({e}): remove it or fix it") from None
    return names


def read_labelled_folder(folder: Path, what: str) -> LabelledImages:
    """Every image in the class sub-folders of `folder`, one size and one mode (grey or RGB), or one clear error."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise GankitError(f"{what} {folder} is not a folder (one sub-folder of images per class)")
    subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise GankitError(f"{what} {folder} has no class sub-folders (one sub-folder of images per class)")
    names = _class_names(folder, subfolders)
    images, labels, classes, first = [], [], [], None
    for sub in subfolders:
        files = sorted(p for p in (folder / sub).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            continue
        classes.append(names[sub])
        for path in files:
            try:
                with Image.open(path) as im:
                    im.load()
                    grey = im.mode in ("L", "1", "I;16", "I")
                    array = np.asarray(im.convert("L" if grey else "RGB"))
            except (OSError, UnidentifiedImageError, ValueError) as e:
                raise GankitError(f"{path} is not a readable image ({e})") from None
            if first is None:
                first = (array.shape, path)
            elif array.shape != first[0]:
                raise GankitError(
                    f"images of different sizes or modes in {what} {folder}: {first[1]} is "
                    f"{list(first[0])}, {path} is {list(array.shape)}; resize them to one size first"
                )
            images.append(array)
            labels.append(len(classes) - 1)
            if len(images) > MAX_IMAGES:
                raise GankitError(f"{what} {folder} holds more than {MAX_IMAGES} images: check a sample of them")
    if not images:
        raise GankitError(f"{what} {folder} holds no images in its class sub-folders")
    if len(set(classes)) != len(classes):
        raise GankitError(f"two class folders of {what} {folder} name the same class")
    return LabelledImages(np.stack(images), np.array(labels, np.int64), classes)


def split(real: LabelledImages, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices): `holdout` of each class (at least one image each side), by seed."""
    rng = np.random.default_rng([seed, 2019])
    train, test = [], []
    for c, name in enumerate(real.classes):
        members = rng.permutation(np.flatnonzero(real.labels == c))
        if len(members) < 2:
            raise GankitError(
                f"class {name!r} of the real images has {len(members)} image: too few to hold any out "
                "(each class needs at least 2)"
            )
        k = min(len(members) - 1, max(1, round(holdout * len(members))))
        test.append(members[:k])
        train.append(members[k:])
    return np.concatenate(train), np.concatenate(test)


def aligned(real: LabelledImages, generated: LabelledImages) -> LabelledImages:
    """The generated set's labels as the real set's class indices; its classes must be among the real ones."""
    unknown = [c for c in generated.classes if c not in real.classes]
    if unknown:
        raise GankitError(
            f"the generated set has classes the real images lack ({', '.join(unknown[:5])}); the real "
            f"classes are {', '.join(real.classes[:12])}"
        )
    if generated.images.shape[1:] != real.images.shape[1:]:
        raise GankitError(
            f"generated images are {list(generated.images.shape[1:])}, the real ones "
            f"{list(real.images.shape[1:])}: give images of one size and mode"
        )
    index = np.array([real.classes.index(c) for c in generated.classes])
    return LabelledImages(generated.images, index[generated.labels], real.classes)


def recalls(model, images: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    pred = predict(model, images)
    return np.array([(pred[labels == c] == c).mean() for c in range(classes)])


def check(
    real: LabelledImages,
    generated: LabelledImages,
    holdout: float = 0.2,
    runs: int = 3,
    steps: int = 500,
    seed: int = 0,
    log=None,
) -> dict:
    """The figures of the three training sets on `runs` classifier seeds, and the verdict."""
    log = log or sys.stderr
    if not 0 < holdout < 1:
        raise GankitError(f"--holdout must lie between 0 and 1, got {holdout}")
    generated = aligned(real, generated)
    train, test = split(real, holdout, seed)
    k = len(real.classes)
    print(
        f"real: {len(real.images)} images in {k} classes ({len(test)} held out); generated: "
        f"{len(generated.images)} images in {len(set(generated.labels.tolist()))} classes",
        file=log,
        flush=True,
    )
    xr, yr = real.images[train], real.labels[train]
    reps = max(1, len(generated.images) // len(xr))  # real repeated so that batches are about half real
    sets = {
        "real": (xr, yr),
        "real + generated": (
            np.concatenate([np.repeat(xr, reps, axis=0), generated.images]),
            np.concatenate([np.repeat(yr, reps), generated.labels]),
        ),
        "generated only": (generated.images, generated.labels),
    }
    figures: dict = {name: [] for name in sets}
    started = time.perf_counter()
    for run in range(runs):
        for name, (x, y) in sets.items():
            model = fit(x, y, steps, batch_size=min(64, len(x)), seed=seed + run, classes=k)
            r = recalls(model, real.images[test], real.labels[test], k)
            figures[name].append(r)
            print(
                f"run {run + 1}/{runs}: {name}: balanced accuracy {r.mean():.2%} "
                f"({time.perf_counter() - started:.0f} s)",
                file=log,
                flush=True,
            )
    gain = np.array([g.mean() - r.mean() for g, r in zip(figures["real + generated"], figures["real"])])
    spread = float(gain.std()) if runs > 1 else float("nan")
    if runs < 2:
        verdict = "unknown: one run has no spread (give --runs 3 or more)"
    elif gain.mean() > 2 * spread and gain.mean() > 0:
        verdict = "helps"
    elif gain.mean() < -2 * spread and gain.mean() < 0:
        verdict = "hurts"
    else:
        verdict = "no measurable effect"
    return {
        "classes": real.classes,
        "real_train": int(len(train)),
        "real_held_out": int(len(test)),
        "generated": int(len(generated.images)),
        "held_out_per_class": np.bincount(real.labels[test], minlength=k).tolist(),
        "recall": {name: np.mean(v, axis=0).tolist() for name, v in figures.items()},
        "balanced_accuracy": {name: [float(r.mean()) for r in v] for name, v in figures.items()},
        "gain": float(gain.mean()),
        "gain_spread": spread,
        "runs": runs,
        "steps": steps,
        "verdict": verdict,
    }


def table(result: dict) -> str:
    names = list(result["recall"])
    width = max(12, *(len(c) for c in result["classes"]))
    lines = [f"{'recall':<{width}}  " + "  ".join(f"{n:>16}" for n in names)]
    for c, cls in enumerate(result["classes"]):
        lines.append(f"{cls:<{width}}  " + "  ".join(f"{result['recall'][n][c]:>16.2%}" for n in names))
    lines.append(
        f"{'balanced acc.':<{width}}  " + "  ".join(f"{np.mean(result['balanced_accuracy'][n]):>16.2%}" for n in names)
    )
    spread = result["gain_spread"]
    lines.append(
        f"real + generated against real: {100 * result['gain']:+.2f} points"
        + ("" if np.isnan(spread) else f" (spread {100 * spread:.2f} over {result['runs']} runs)")
        + f"; held out {result['real_held_out']} real images ({min(result['held_out_per_class'])} or more a class)"
    )
    lines.append(f"verdict: {result['verdict']}")
    return "\n".join(lines)
