"""`gankit check-augmentation`: does a generated set help a classifier of the user's own images, beyond what
rebalancing the real images gives for free?

Test images: --test (from `gankit split`: images the generator never saw), or, without it, a share of --real held
out afresh on each run. With --model (the generator that made --generated), test images that the generator trained
on are refused: an export of a run on an image folder records the sha256 of its training images. Without it the tool
cannot know, and says so. Either way the test images are compared with the generated ones, and the verdict is
withheld where more than MAX_COPY_SHARE of them have an exact or near copy there.

The cases, each the project's fixed small classifier (gankit.classifier.DigitClassifier) with the same steps:
  real              the real training images as they are
  oversampled       the real images repeated to the class counts of "real + generated" (the same mix, no new pixels)
  weighted          the real images, cross-entropy weighted by inverse class frequency (each class weighs the same)
  real + generated  the real images and the generated set, weighted as "weighted" is, with 1 - --real-share (default
                    REAL_SHARE) of the weight of each class that the set covers moved onto its generated images: more
                    images carry the rare classes' weight, none of it taken from the rebalancing. bench/longtail.py
                    measured this use, its (h): ahead of a plain top-up ((d)) at 5, 20 and 100 images a rare class,
                    and of repeating the real images ((f)) at 5 and 20 (level at 100)
  generated only    the generated set alone (GAN-train: the classification accuracy score)
Each run draws its own test sample (a fresh stratified split of --real, or a stratified bootstrap of --test) and
classifier seed, shared by the cases of that run, so that the gains are paired and the test set's sampling noise
is in their spread. The verdict is on real + generated against the better of the two rebalancing controls: a 95%
t interval (ddof=1) of the paired gains in balanced accuracy; helps or hurts only where it excludes 0.

Folders are read as training reads them (gankit.data.load_image_folder): class sub-folders, recursive, resized and
converted to --image-size and --channels. A folder that `gankit generate` wrote names its classes in metadata.jsonl.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gankit_runtime import GankitError
from gankit_runtime.progress import Progress

from .classifier import fit, predict
from .data import IMAGE_SUFFIXES, load_image_folder

CASES = ("real", "oversampled", "weighted", "real + generated", "generated only")
CONTROLS = ("oversampled", "weighted")
# Of a covered class's weight, the share on its real images in "real + generated"; the rest on its generated ones.
# Half, not a quarter: at this check's classifier budget a quarter gave a lower paired gain on 4 of 4 long-tail runs (a
# quarter wins at bench/longtail.py's larger budget; docs/benchmarks.md). --real-share lets a user measure either.
REAL_SHARE = 0.5
MIN_RUNS = 3  # a t interval from 2 paired differences has 1 degree of freedom: 12.7 standard errors wide
# Below 10 test images a class, one image moves that class's recall by 10 points or more: finer gains are noise
MIN_TEST_PER_CLASS = 10
NEAR_RMS = 8.0  # pixel levels (of 255): closer than this to a generated image, a test image is a near copy
MAX_COPY_SHARE = 0.02  # more test images than this with a copy in the generated set: no verdict
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093)  # Student's t, 97.5th percentile, 1 to 19 degrees of freedom  # fmt: skip


@dataclass
class LabelledImages:
    images: np.ndarray  # uint8 [N, H, W] (grey) or [N, H, W, 3]
    labels: np.ndarray  # int64 [N], indices into classes
    classes: list[str]
    digests: list[str]  # sha256 of each image's file


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


def image_shape(folder: Path) -> tuple[int, int]:
    """(size, channels) of the first image in folder's class sub-folders: the generated images' own, by default."""
    from PIL import Image, UnidentifiedImageError

    for path in sorted(Path(folder).rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not hidden:
            try:
                with Image.open(path) as im:
                    return min(im.size), 1 if im.mode in ("L", "1", "I;16", "I", "LA") else 3
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
                continue
    raise GankitError(f"{folder} holds no readable image in its class sub-folders")


def read_labelled_folder(folder: Path, what: str, size: int, channels: int) -> LabelledImages:
    """Every image in the class sub-folders of `folder`, as training reads them, or one clear error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GankitError(f"{what} {folder} is not a folder (one sub-folder of images per class)")
    ds = load_image_folder(folder, size, channels)
    if ds.labels is None:
        raise GankitError(f"{what} {folder} needs one sub-folder per class, every image inside one of them")
    names = _class_names(folder, ds.classes)
    classes = [names[c] for c in ds.classes]
    if len(set(classes)) != len(classes):
        raise GankitError(f"two class folders of {what} {folder} name the same class")
    x = ds.images.permute(0, 2, 3, 1).numpy()
    return LabelledImages(x[..., 0] if channels == 1 else x, ds.labels.numpy(), classes, ds.digests or [])


def aligned(real: LabelledImages, other: LabelledImages, what: str) -> LabelledImages:
    """`other`'s labels as the real set's class indices; its classes must be among the real ones."""
    unknown = [c for c in other.classes if c not in real.classes]
    if unknown:
        raise GankitError(
            f"{what} has classes the real images lack ({', '.join(unknown[:5])}); the real classes are "
            f"{', '.join(real.classes[:12])}"
        )
    index = np.array([real.classes.index(c) for c in other.classes])
    return LabelledImages(other.images, index[other.labels], real.classes, other.digests)


def refuse_leaks(test: LabelledImages, real: LabelledImages, trained_on: set[str] | None) -> None:
    """Test images must be unseen: by the classifier (not among --real) and by the generator (not in its record)."""
    shared = set(test.digests) & set(real.digests)
    if shared:
        raise GankitError(
            f"{len(shared)} of the test images are also real training images (the same file contents): the "
            "classifier would be tested on what it trained on; hold them out (gankit split)"
        )
    if trained_on:
        seen = [d for d in test.digests if d[:16] in trained_on]
        if seen:
            raise GankitError(
                f"{len(seen)} of {len(test.digests)} test images are images the generator trained on (its "
                "metadata lists them): they flatter it; split before training (gankit split), then give --test"
            )


def near_copies(test: np.ndarray, generated: np.ndarray) -> tuple[int, int]:
    """(exact, near) copies: test images identical to a generated image, and others within NEAR_RMS of one."""
    pool = {g.tobytes() for g in generated}
    exact_mask = np.array([t.tobytes() in pool for t in test], dtype=bool)
    a = test.reshape(len(test), -1).astype(np.float32)
    b = generated.reshape(len(generated), -1).astype(np.float32)
    bb = (b * b).sum(1)
    nearest = np.empty(len(a), np.float32)
    for i in range(0, len(a), 512):  # bounded memory: 512 x len(generated) distances at a time
        block = a[i : i + 512]
        d2 = (block * block).sum(1)[:, None] + bb[None] - 2 * block @ b.T
        nearest[i : i + 512] = np.maximum(d2.min(1), 0)
    near = (np.sqrt(nearest / a.shape[1]) < NEAR_RMS) & ~exact_mask
    return int(exact_mask.sum()), int(near.sum())


def interval(d: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high): the 95% t interval of the mean of paired differences d (ddof=1); at least 2 of them."""
    n = len(d)
    half = T975[min(n - 1, len(T975)) - 1] * float(np.std(d, ddof=1)) / math.sqrt(n)
    return float(np.mean(d)), float(np.mean(d)) - half, float(np.mean(d)) + half


def decide(gains: np.ndarray, control: str, fewest_test: int, copy_share: float) -> str:
    """The verdict from the paired gains of real + generated over the better rebalancing control."""
    if len(gains) < MIN_RUNS:
        return f"unknown: {len(gains)} runs are too few for an interval (give --runs {MIN_RUNS} or more)"
    if copy_share > MAX_COPY_SHARE:
        return (
            f"withheld: {copy_share:.1%} of the test images have an exact or near copy in the generated set "
            f"(more than {MAX_COPY_SHARE:.0%}): the generator may have seen them"
        )
    if fewest_test < MIN_TEST_PER_CLASS:
        return (
            f"unknown: too few held-out images (the fewest in a class: {fewest_test}; {MIN_TEST_PER_CLASS} needed "
            "for one image not to move a class's recall by more than 10 points)"
        )
    mean, low, high = interval(gains)
    shown = f"{100 * mean:+.2f} points, 95% interval {100 * low:+.2f} to {100 * high:+.2f}"
    if low > 0:
        return f"helps: the generated set beats rebalancing ({control}) by {shown}"
    if high < 0:
        return f"hurts: rebalancing alone ({control}) does better ({shown}): use it instead of the generated set"
    return f"no measurable effect: rebalancing alone ({control}) does as well ({shown}): weight your loss instead"


def mixed_weights(real: np.ndarray, generated: np.ndarray, k: int, real_share: float = REAL_SHARE) -> np.ndarray:
    """Each image's weight in the loss, for the real images' labels then the generated ones': every class weighs the
    same in all (inverse class frequency), and a class with generated images has `real_share` of its weight on its
    real images, the rest on its generated ones. With no generated images: the weighted control."""
    real_count, generated_count = np.bincount(real, minlength=k), np.bincount(generated, minlength=k)
    mass = len(real) / k  # each class's weight in all (the scale is free: a batch's loss is divided by its weight)
    share = np.where(generated_count > 0, real_share, 1.0)
    return np.concatenate([(share * mass / np.maximum(real_count, 1))[real],
                           ((1 - share) * mass / np.maximum(generated_count, 1))[generated]])  # fmt: skip


def _cases(
    xr: np.ndarray,
    yr: np.ndarray,
    gen: LabelledImages,
    k: int,
    rng: np.random.Generator,
    real_share: float = REAL_SHARE,
) -> dict:
    """case -> (images, labels, each image's weight in the loss or None) for one run."""
    counts = np.bincount(np.concatenate([yr, gen.labels]), minlength=k)  # real + generated's mix: "oversampled"'s
    over = np.concatenate([np.resize(rng.permutation(np.flatnonzero(yr == c)), counts[c]) for c in range(k)])
    weighted, mix = mixed_weights(yr, gen.labels[:0], k), mixed_weights(yr, gen.labels, k, real_share)
    return {
        "real": (xr, yr, None),
        "oversampled": (xr[over], yr[over], None),
        "weighted": (xr, yr, weighted),
        "real + generated": (np.concatenate([xr, gen.images]), np.concatenate([yr, gen.labels]), mix),
        "generated only": (gen.images, gen.labels, None),
    }


def _test_sample(real, test, holdout, rng, seed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training images' indices into real, the run's test images, their labels)."""
    if test is not None:  # a stratified bootstrap of --test: its sampling noise enters the spread
        pick = np.concatenate([rng.choice(np.flatnonzero(test.labels == c), (test.labels == c).sum()) for c in
                               np.unique(test.labels)])  # fmt: skip
        return np.arange(len(real.labels)), test.images[pick], test.labels[pick]
    train, held = split(real, holdout, seed)
    return train, real.images[held], real.labels[held]


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


def check_settings(holdout: float, runs: int, real_share: float) -> None:
    """Refuse settings that no data can make right (the command calls this before it reads any image)."""
    if not 0 < holdout < 1:
        raise GankitError(f"--holdout must lie between 0 and 1, got {holdout}")
    if runs < MIN_RUNS:
        raise GankitError(f"--runs {runs}: at least {MIN_RUNS} runs are needed for an interval of the gain")
    if not 0 < real_share < 1:  # 0 would drop the real images of a covered class, 1 the generated ones
        raise GankitError(f"--real-share must lie strictly between 0 and 1, got {real_share}")


def check(
    real: LabelledImages,
    generated: LabelledImages,
    test: LabelledImages | None = None,
    holdout: float = 0.2,
    runs: int = MIN_RUNS,
    steps: int = 500,
    seed: int = 0,
    trained_on: set[str] | None = None,
    log=None,
    real_share: float = REAL_SHARE,
) -> dict:
    """The five cases on `runs` paired runs, the gains with their intervals, and the verdict (a dict, JSON-ready)."""
    log = log or sys.stderr
    check_settings(holdout, runs, real_share)
    generated = aligned(real, generated, "the generated set")
    test = None if test is None else aligned(real, test, "the test set")
    if test is not None:
        refuse_leaks(test, real, trained_on)
    elif trained_on:  # the held-out share of --real: refused if the generator trained on it
        refuse_leaks(real, LabelledImages(real.images[:0], real.labels[:0], real.classes, []), trained_on)
    k = len(real.classes)
    pool = test if test is not None else real
    exact, near = near_copies(pool.images, generated.images)
    covered = sorted(set(generated.labels.tolist()))
    present = sorted(set(pool.labels.tolist()))
    first = _test_sample(real, test, holdout, np.random.default_rng([seed, 0, 41]), seed)
    fewest = int(min(np.bincount(first[2], minlength=k)[present]))
    print(
        f"real: {len(real.images)} images in {k} classes; test: {len(pool.images)} images "
        f"({'--test' if test is not None else f'{holdout:.0%} of --real held out on each run'}); generated: "
        f"{len(generated.images)} images in {len(covered)} classes; {exact} exact and {near} near copies of test "
        f"images among them",
        file=log,
        flush=True,
    )
    recall: dict = {c: [] for c in CASES}
    bar, started = Progress(log), time.perf_counter()
    for run in range(runs):
        rng = np.random.default_rng([seed, run, 41])
        train, x_test, y_test = _test_sample(real, test, holdout, rng, seed + run)
        cases = _cases(real.images[train], real.labels[train], generated, k, rng, real_share)
        for name, (x, y, weight) in cases.items():
            label = f"run {run + 1}/{runs}: {name}"

            def shown(step: int, total: int, label: str = label) -> None:
                bar.update(label, step, total)

            model = fit(x, y, steps, min(64, len(x)), seed + run, classes=k, on_step=shown, sample_weight=weight)
            pred = predict(model, x_test)
            recall[name].append([float((pred[y_test == c] == c).mean()) for c in present])
            bar.end(
                f"{label}: balanced accuracy {np.mean(recall[name][-1]):.2%} ({time.perf_counter() - started:.0f} s)"
            )
    copy_share = (exact + near) / len(pool.images)
    return _figures(real.classes, recall, present, covered, fewest, copy_share, runs, steps, real_share)


def _figures(classes, recall, present, covered, fewest, copy_share, runs, steps, real_share) -> dict:
    r = {name: np.array(v) for name, v in recall.items()}  # [runs, present classes]
    ba = {name: v.mean(1) for name, v in r.items()}
    control = max(CONTROLS, key=lambda c: ba[c].mean())
    mix = "real + generated"

    def gain(d: np.ndarray) -> dict:
        mean, low, high = interval(d)
        return {"mean": mean, "low": low, "high": high, "runs": d.tolist()}

    return {
        "classes": [classes[c] for c in present],
        "covered": [classes[c] for c in covered],
        "recall": {name: v.mean(0).tolist() for name, v in r.items()},
        "balanced_accuracy": {name: v.tolist() for name, v in ba.items()},
        "control": control,
        "gain_over_real": gain(ba[mix] - ba["real"]),
        "gain_over_control": gain(ba[mix] - ba[control]),
        "gain_over_control_per_class": {
            classes[c]: gain(r[mix][:, present.index(c)] - r[control][:, present.index(c)])
            for c in covered
            if c in present
        },
        "fewest_test_images_in_a_class": fewest,
        "test_copy_share": copy_share,
        "runs": runs,
        "steps": steps,
        "real_share": real_share,
        "verdict": decide(ba[mix] - ba[control], control, fewest, copy_share),
    }


def table(result: dict, note: str = "") -> str:
    names = list(result["recall"])
    width = max(12, *(len(c) for c in result["classes"]))
    lines = [f"{'recall':<{width}}  " + "  ".join(f"{n:>16}" for n in names)]
    for i, cls in enumerate(result["classes"]):
        mark = " *" if cls in result["covered"] else ""
        lines.append(f"{cls + mark:<{width}}  " + "  ".join(f"{result['recall'][n][i]:>16.2%}" for n in names))
    lines.append(
        f"{'balanced acc.':<{width}}  " + "  ".join(f"{np.mean(result['balanced_accuracy'][n]):>16.2%}" for n in names)
    )
    lines.append("(* the classes the generated set covers)")

    def shown(g: dict) -> str:
        return f"{100 * g['mean']:+.2f} points (95% interval {100 * g['low']:+.2f} to {100 * g['high']:+.2f})"

    lines.append(
        f"real + generated: {result['real_share']:.0%} of a covered class's weight on its real images, the rest on its "
        "generated ones (--real-share)"
    )
    lines.append(f"real + generated against real: {shown(result['gain_over_real'])}")
    lines.append(
        f"real + generated against {result['control']} (the better rebalancing): {shown(result['gain_over_control'])}"
    )
    for cls, g in result["gain_over_control_per_class"].items():
        lines.append(f"  class {cls}: {shown(g)}")
    lines.append(
        f"{result['runs']} runs; test images: the fewest in a class {result['fewest_test_images_in_a_class']}; "
        f"{result['test_copy_share']:.1%} of them have a copy in the generated set"
    )
    if note:
        lines.append(note)
    lines.append(f"verdict: {result['verdict']}")
    return "\n".join(lines)
