"""`python cli.py web MODEL... --out DIR`: a self-contained static site that runs generators in the browser.

Repository tooling (it packages this folder's page and node_modules), not part of the installed runtime.

DIR gets the demo page (index.html, demo.js, demo.css), gankit.js, the models under models/, models.json (what
each model takes and gives, read here from its metadata: onnxruntime-web cannot read metadata) and the
onnxruntime-web files it needs under ort/. Any static host can serve it. The folder is built beside DIR and
renamed into place, so a failed build leaves nothing, and it replaces only a folder that it wrote itself.
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
from gankit_runtime.files import is_inside

PAGE_FILES = ("index.html", "demo.js", "demo.css", "gankit.js")
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MARKER = ".gankit-web"  # names a folder this command wrote (and may replace)


def model_entry(path: Path, name: str) -> dict:
    """What the page needs to know of a model (the graph's names and shapes, the metadata's classes)."""
    g = Generator(path, threads=1)
    i = g.info
    return {"name": name, "file": f"models/{name}.onnx", "zDim": i.z_dim, "classes": list(i.classes),
            "channels": i.channels, "height": i.height, "width": i.width, "outputRange": list(i.output_range),
            "pixels": i.pixels_name is not None, "sha256": g.sha256}


def _names(models: list[Path]) -> list[str]:
    names = [re.sub(r"[^A-Za-z0-9_.-]", "-", Path(m).stem) or "model" for m in models]
    if len(set(names)) != len(names):
        raise GankitError(f"two models would share a name on the page ({', '.join(names)}): rename one")
    return names


def write_site(models: list[Path], out: Path, web_dir: Path, force: bool = False) -> list[dict]:
    """Build the site for `models` into `out`; returns models.json's entries."""
    out = Path(out)
    ort_dir = web_dir / "node_modules" / "onnxruntime-web" / "dist"
    missing = [f for f in ORT_FILES if not (ort_dir / f).is_file()]
    if missing:
        raise GankitError(f"onnxruntime-web is not installed in {web_dir} (missing {missing[0]}): run npm ci there "
                          "(it needs node and npm)")
    if not models:
        raise GankitError("give at least one .onnx generator")
    if os.path.lexists(out) and not (force or (out / MARKER).is_file() or (out.is_dir() and not any(out.iterdir()))):
        raise GankitError(f"{out} exists and was not written by cli.py web: choose another --out, or add --force")
    for m in models:
        if is_inside(m, out):
            raise GankitError(f"model {m} lies inside --out {out}, which is replaced: copy it elsewhere first")
    entries = [model_entry(Path(m), name) for m, name in zip(models, _names(models))]
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for f in PAGE_FILES:
            shutil.copyfile(web_dir / f, build / f)
        (build / "ort").mkdir()
        for f in ORT_FILES:
            shutil.copyfile(ort_dir / f, build / "ort" / f)
        (build / "models").mkdir()
        for m, entry in zip(models, entries):
            shutil.copyfile(m, build / entry["file"])
        (build / "models.json").write_text(json.dumps(entries, indent=1) + "\n")
        (build / MARKER).write_text("written by python cli.py web\n")
        os.chmod(build, 0o755)
        _replace(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return entries


def _replace(build: Path, out: Path) -> None:
    """Rename the built folder onto `out`; an old one is moved aside first and removed after."""
    old = None
    if os.path.lexists(out):
        old = out.parent / f".{out.name}.old.{os.getpid()}"
        os.rename(out, old)
    try:
        os.rename(build, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
