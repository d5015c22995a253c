"""`gankit web MODEL... --out DIR`: a self-contained static site that runs generators in the browser.

DIR gets the demo page (index.html, demo.js, demo.css), gankit.js, the models under models/, models.json (what
each model takes and gives, read here from its metadata: onnxruntime-web cannot read metadata) and the
onnxruntime-web files it needs under ort/. Any static host can serve it.

Nothing is lost: the site is built in a temporary folder beside DIR (named for this host and process, so a later run
removes what a killed one left) and renamed into place. The MARKER file inside a built site is its manifest: every
file the build wrote, with its sha256. A rebuild replaces only those files that still hold what was written; a file
the user added (a CNAME, robots.txt, a page of their own) is carried into the new site, and one they edited is
refused (--force replaces it). A folder without a manifest is never replaced. DIR may never hold the page's own
sources, the working directory or a model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from gankit_runtime import GankitError, Generator
from gankit_runtime.files import _HOST, folder_aside, is_inside, remove_stale_builds, sha256_of

SOURCES = Path(__file__).resolve().parent  # this folder: the page's files (web/ in a checkout)
PAGE_FILES = ("index.html", "demo.js", "demo.css", "gankit.js")
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MARKER = ".gankit-web"  # the manifest of a folder this command built: {"files": {relative path: sha256}}


def find_ort(given: Path | None, sources: Path = SOURCES) -> Path:
    """onnxruntime-web's dist/ folder: the one given, or node_modules/onnxruntime-web/dist in the working directory,
    in its web/ (a checkout's, after npm ci) or beside the page's sources."""
    dist = Path("node_modules", "onnxruntime-web", "dist")
    candidates = [Path(given)] if given else [dist, Path("web") / dist, sources / dist]  # here, a checkout's web/
    for folder in candidates:
        if all((folder / f).is_file() for f in ORT_FILES):
            return folder
    where = f"{given}" if given else "node_modules/onnxruntime-web/dist (here, or in web/ of a checkout)"
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


def _files(folder: Path) -> list[str]:
    """Every file and link under folder (links not followed), as relative POSIX paths, the manifest left out."""
    found = []
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = Path(root, name).relative_to(folder).as_posix()
            if rel != MARKER:
                found.append(rel)
    return sorted(found)


def _manifest(out: Path) -> dict | None:
    """The files a build wrote into out ({relative path: sha256}), or None where out holds no valid manifest."""
    try:
        files = json.loads((out / MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    return files if ok else None


def check_out(out: Path, models: list[Path], force: bool) -> list[str]:
    """Refuse an --out whose replacement would lose something: a folder that holds the page's sources, the working
    directory or a model; a folder this command did not build (no manifest); a site file the user edited (unless
    force). Returns the user's own files in a site gankit built, to be carried into the new one."""
    for what, path in (
        ("the page's sources", SOURCES),
        ("the working directory", Path.cwd()),
        *((f"model {m}", Path(m)) for m in models),
    ):
        if is_inside(path, out):
            raise GankitError(f"--out {out} holds {what}, and --out is replaced: choose a new folder")
    if not os.path.lexists(out):
        return []
    if out.is_symlink() or not out.is_dir():
        raise GankitError(f"--out {out} exists and is not a folder: choose another --out")
    if not os.listdir(out):
        return []
    built = _manifest(out)
    if built is None:
        raise GankitError(
            f"{out} exists and has no manifest of a gankit web build (it is someone else's, or an older gankit's): "
            "it is never replaced; choose another --out, or empty it"
        )
    present = _files(out)
    edited = [f for f in present if f in built and (os.path.islink(out / f) or sha256_of(out / f) != built[f])]
    if edited and not force:
        raise GankitError(
            f"{out / edited[0]} was changed since gankit web built it: --force replaces it with the new build's "
            "(or choose another --out)"
        )
    return [f for f in present if f not in built]


def _carry(old: Path, build: Path, own: list[str]) -> None:
    """Copy the user's own files from the old site into the new build (links as links); a clash is refused."""
    for rel in own:
        target = build / rel
        if os.path.lexists(target):
            raise GankitError(f"{old / rel} is not the site's but the new site writes a file there: move it first")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(old / rel, target, follow_symlinks=False)


def write_site(models: list[Path], out: Path, ort_dir: Path, force: bool = False) -> list[dict]:
    """Build the site for `models` into `out`; returns models.json's entries."""
    out = Path(out)
    if not models:
        raise GankitError("give at least one .onnx generator")
    remove_stale_builds(out.parent, "gankit-build")  # first: a site a killed run left aside goes back to --out
    own = check_out(out, models, force)
    entries = [model_entry(Path(m), name) for m, name in zip(models, _names(models))]
    with folder_aside(out, "gankit-build", "the site") as build:
        for f in PAGE_FILES:
            shutil.copyfile(SOURCES / f, build / f)
        (build / "ort").mkdir()
        for f in ORT_FILES:
            shutil.copyfile(ort_dir / f, build / "ort" / f)
        (build / "models").mkdir()
        for m, entry in zip(models, entries):
            shutil.copyfile(m, build / entry["file"])
        (build / "models.json").write_text(json.dumps(entries, indent=1) + "\n")
        manifest = {"built_by": "gankit web", "files": {f: sha256_of(build / f) for f in _files(build)}}
        _carry(out, build, own)
        (build / MARKER).write_text(json.dumps(manifest, indent=1) + "\n")  # last: a half-built site has none
        os.chmod(build, 0o755)
        _replace(build, out)
    return entries


def _replace(build: Path, out: Path) -> None:
    """Rename the built folder onto `out`; an old one is moved aside first and removed after."""
    old = None
    if os.path.lexists(out):
        old = out.parent / f".{out.name}.gankit-build.{_HOST}.{os.getpid()}.old"
        os.rename(out, old)
    try:
        os.rename(build, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
