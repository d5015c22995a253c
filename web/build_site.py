"""`gankit web MODEL... --out DIR`: a self-contained static site that runs generators in the browser.

DIR gets the demo page (index.html, demo.js, demo.css), gankit.js, the models under models/, models.json (what
each model takes and gives, read here from its metadata: onnxruntime-web cannot read metadata) and the
onnxruntime-web files it needs under ort/. Any static host can serve it.

Nothing is lost: the site is built in a temporary folder beside DIR (named for this process, so a later run removes
what a killed one left) and renamed into place. An existing DIR is replaced only when this command built it (the
MARKER file inside), or, with --force, when it holds nothing but a site's files. DIR may never hold the page's own
sources, the working directory or a model.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from gankit_runtime import GankitError, Generator
from gankit_runtime.files import _alive, is_inside

SOURCES = Path(__file__).resolve().parent  # this folder: the page's files (web/ in a checkout)
PAGE_FILES = ("index.html", "demo.js", "demo.css", "gankit.js")
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MARKER = ".gankit-web"  # names a folder this command built (and may replace)
SITE_ENTRIES = {*PAGE_FILES, "ort", "models", "models.json", MARKER}  # all that a built site holds
_BUILD = re.compile(r"^\..+\.gankit-build\.(\d+)(\.old)?$")  # a build (or a replaced site) of process N


def find_ort(given: Path | None, sources: Path = SOURCES) -> Path:
    """onnxruntime-web's dist/ folder: the one given, or node_modules/onnxruntime-web/dist in the working directory
    or beside the page's sources (a checkout's web/ after npm ci)."""
    candidates = (
        [Path(given)]
        if given
        else [Path("node_modules/onnxruntime-web/dist"), sources / "node_modules" / "onnxruntime-web" / "dist"]
    )
    for folder in candidates:
        if all((folder / f).is_file() for f in ORT_FILES):
            return folder
    where = f"{given}" if given else "node_modules/onnxruntime-web/dist (here or in the checkout's web/)"
    raise GankitError(
        f"onnxruntime-web not found in {where} (need {', '.join(ORT_FILES)}): npm install "
        "onnxruntime-web (or npm ci in web/), or give --ort DIST_FOLDER"
    )


def model_entry(path: Path, name: str) -> dict:
    """What the page needs to know of a model (the graph's names and shapes, the metadata's classes)."""
    g = Generator(path, threads=1)
    i = g.info
    return {
        "name": name,
        "file": f"models/{name}.onnx",
        "zDim": i.z_dim,
        "classes": list(i.classes),
        "channels": i.channels,
        "height": i.height,
        "width": i.width,
        "outputRange": list(i.output_range),
        "pixels": i.pixels_name is not None,
        "sha256": g.sha256,
    }


def _names(models: list[Path]) -> list[str]:
    names = [re.sub(r"[^A-Za-z0-9_.-]", "-", Path(m).stem) or "model" for m in models]
    if len(set(names)) != len(names):
        raise GankitError(f"two models would share a name on the page ({', '.join(names)}): rename one")
    return names


def check_out(out: Path, models: list[Path], force: bool) -> None:
    """Refuse an --out whose replacement would lose something: a folder that holds the page's sources, the working
    directory or a model; a folder this command did not build (with --force: one that holds more than a site)."""
    for what, path in (
        ("the page's sources", SOURCES),
        ("the working directory", Path.cwd()),
        *((f"model {m}", Path(m)) for m in models),
    ):
        if is_inside(path, out):
            raise GankitError(f"--out {out} holds {what}, and --out is replaced: choose a new folder")
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise GankitError(f"--out {out} exists and is not a folder: choose another --out")
    entries = set(os.listdir(out))
    if not entries or MARKER in entries:
        return
    if not force:
        raise GankitError(
            f"{out} exists and was not built by gankit web: choose another --out (--force replaces an "
            "older site's folder)"
        )
    if not entries <= SITE_ENTRIES:
        others = sorted(entries - SITE_ENTRIES)[:3]
        raise GankitError(
            f"{out} holds more than a site ({', '.join(others)}): it is never replaced, even with "
            "--force; choose another --out"
        )


def remove_stale_builds(folder: Path) -> None:
    """Take away what a killed build left beside --out: its temporary folder, or a replaced site not yet removed."""
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            m = _BUILD.match(name)
            if m and not _alive(int(m.group(1))) and (folder / name).is_dir() and not (folder / name).is_symlink():
                shutil.rmtree(folder / name, ignore_errors=True)


def write_site(models: list[Path], out: Path, ort_dir: Path, force: bool = False) -> list[dict]:
    """Build the site for `models` into `out`; returns models.json's entries."""
    out = Path(out)
    if not models:
        raise GankitError("give at least one .onnx generator")
    check_out(out, models, force)
    entries = [model_entry(Path(m), name) for m, name in zip(models, _names(models))]
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(out.parent)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=f".gankit-build.{os.getpid()}", dir=out.parent))
    try:
        (build / MARKER).write_text("built by gankit web\n")  # first: a site without it is never taken for ours
        for f in PAGE_FILES:
            shutil.copyfile(SOURCES / f, build / f)
        (build / "ort").mkdir()
        for f in ORT_FILES:
            shutil.copyfile(ort_dir / f, build / "ort" / f)
        (build / "models").mkdir()
        for m, entry in zip(models, entries):
            shutil.copyfile(m, build / entry["file"])
        (build / "models.json").write_text(json.dumps(entries, indent=1) + "\n")
        os.chmod(build, 0o755)
        _replace(build, out)
    except OSError as e:
        shutil.rmtree(build, ignore_errors=True)
        raise GankitError(f"cannot write the site to {out}: {e.strerror or e}; nothing was changed") from None
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return entries


def _replace(build: Path, out: Path) -> None:
    """Rename the built folder onto `out`; an old one is moved aside first and removed after."""
    old = None
    if os.path.lexists(out):
        old = out.parent / f".{out.name}.gankit-build.{os.getpid()}.old"
        os.rename(out, old)
    try:
        os.rename(build, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
