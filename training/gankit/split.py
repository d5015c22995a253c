"""`gankit split DIR --out SPLIT`: hold out a share of each class before a generator sees any of it.

SPLIT/train/<class>/... and SPLIT/test/<class>/... are hard links to DIR's files (copies where links cannot be
made), chosen per class by a seed; SPLIT/gankit-split.json lists both sides with each file's sha256. Files of the
same content go to the same side, so no test image is also a training image. Train the generator on SPLIT/train,
and give check-augmentation --real SPLIT/train --test SPLIT/test: its test images were never the generator's.
The split is built in a temporary folder beside SPLIT and renamed into place: it is whole or absent.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from gankit_runtime import GankitError
from gankit_runtime.files import folder_aside, is_inside, sha256_of

MANIFEST = "gankit-split.json"


def class_files(folder: Path) -> dict[str, list[Path]]:
    """Class name (first-level sub-folder) -> its files (recursive; hidden files and folders skipped)."""
    if not folder.is_dir():
        raise GankitError(f"{folder} is not a folder (one sub-folder of images per class)")
    found: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found[sub.name] = sorted(
            p
            for p in sub.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(sub).parts)
        )
    loose = [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    if not found or loose:
        raise GankitError(f"{folder} must hold one sub-folder of images per class (and no loose files: {loose[:3]})")
    return found


def choose(digests: list[str], holdout: float, rng: np.random.Generator) -> set[str]:
    """The contents held out of one class: `holdout` of its distinct contents, at least one, never all."""
    distinct = sorted(set(digests))
    if len(distinct) < 2:
        raise GankitError("fewer than 2 distinct images")
    k = min(len(distinct) - 1, max(1, round(holdout * len(distinct))))
    return set(rng.permutation(distinct)[:k].tolist())


def split_folder(source: Path, out: Path, holdout: float = 0.2, seed: int = 0) -> dict:
    """Write the split of `source` into `out` (which must not exist, or be empty); returns the manifest."""
    source, out = Path(source), Path(out)
    if not 0 < holdout < 1:
        raise GankitError(f"--holdout must lie between 0 and 1, got {holdout}")
    if is_inside(out, source) or is_inside(source, out):
        raise GankitError(f"--out {out} and {source} overlap: the split goes into a folder of its own")
    if os.path.lexists(out) and (not out.is_dir() or out.is_symlink() or os.listdir(out)):
        raise GankitError(f"--out {out} exists and is not an empty folder: choose a new one")
    rng = np.random.default_rng([seed, 41])
    manifest: dict = {"source": str(source.resolve()), "holdout": holdout, "seed": seed, "train": {}, "test": {}}
    plan = []
    for name, files in class_files(source).items():
        digests = [sha256_of(f) for f in files]
        try:
            held = choose(digests, holdout, rng)
        except GankitError:
            raise GankitError(
                f"class {name!r} of {source} has fewer than 2 distinct files: nothing to hold out"
            ) from None
        for f, d in zip(files, digests):
            side = "test" if d in held else "train"
            rel = f"{name}/{f.relative_to(source / name).as_posix()}"
            manifest[side][rel] = d
            plan.append((f, side, rel))
    with folder_aside(out, "gankit-split", "the split") as build:
        for f, side, rel in plan:
            target = build / side / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(f, target)
            except OSError:  # another file system, or one without hard links
                shutil.copy2(f, target)
        (build / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        os.chmod(build, 0o755)
        if os.path.isdir(out):
            os.rmdir(out)  # empty, checked above
        os.rename(build, out)
    return manifest
