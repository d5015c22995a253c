"""The JavaScript package as a JS developer gets it: `npm pack`'s tarball installed into an empty folder, its types
checked by tsc, and the checks gankit.js makes of a model and of labels. Skipped where node, npm or web/'s
node_modules (npm ci) are missing; .ci/run installs them. The Python wheels are installed and run by .ci/wheels."""

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT
from gankit_runtime import Generator
from test_refusals import tampered
from tiny_models import passthrough, tiny_generator

WEB = ROOT / "web"
ORT_WEB = WEB / "node_modules" / "onnxruntime-web"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None or not ORT_WEB.is_dir(),
    reason="needs node, npm and onnxruntime-web (npm ci in web/)",
)

PIXELS = """
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-web";
import { generate, modelInfo, parseSeeds } from "%s";
ort.env.wasm.numThreads = 1;
const out = {};
for (const path of process.argv.slice(2)) {
  const bytes = readFileSync(path);
  const session = await ort.InferenceSession.create(bytes);
  const { classes } = modelInfo(bytes);
  const seeds = parseSeeds("0-7");
  const labels = classes.length ? seeds.map((s) => s %% classes.length) : null;
  const result = await generate(session, seeds, { ort, labels, classes });
  out[path] = Buffer.from(result.pixels).toString("base64");
}
console.log(JSON.stringify(out));
"""


def node(script: str, cwd: Path, *args) -> subprocess.CompletedProcess:
    (cwd / "script.mjs").write_text(script)
    return subprocess.run(["node", "script.mjs", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def python_pixels(path: Path) -> bytes:
    g = Generator(path)
    labels = [s % len(g.classes) for s in range(8)] if g.conditional else None
    return g.generate(range(8), labels=labels).tobytes()


@pytest.mark.slow
def test_the_npm_tarball_installs_into_an_empty_folder_and_gives_python_s_pixels(tmp_path):
    r = subprocess.run(
        ["npm", "pack", "--json", "--pack-destination", str(tmp_path)],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    packed = json.loads(r.stdout)[0]
    assert sorted(f["path"] for f in packed["files"]) == [
        "LICENSE",
        "README.md",
        "gankit.d.ts",
        "gankit.js",
        "package.json",
    ]
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "private": true, "type": "module"}\n')
    r = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--offline", str(tmp_path / packed["filename"])],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    os.symlink(ORT_WEB, app / "node_modules" / "onnxruntime-web")  # the peer dependency the user brings
    # The shipped models, and a model with modes: its mode is an ArgMax over z inside the graph
    moded = tiny_generator(tmp_path / "moded.onnx", modes=4)
    models = [ROOT / "exported" / "mnist-dcgan.onnx", ROOT / "exported" / "mnist-cdcgan.onnx", moded]
    r = node(PIXELS % "gankit-web", app, *models)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    for m in models:
        assert base64.b64decode(got[str(m)]) == python_pixels(m), m.name


@pytest.mark.slow
def test_the_typescript_example_type_checks():
    tsc = WEB / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        pytest.skip("typescript is not installed (npm ci in web/)")
    r = subprocess.run([str(tsc), "-p", "test/tsconfig.json"], cwd=WEB, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


CHECKS = """
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-web";
import { generate } from "./gankit.js";
ort.env.wasm.numThreads = 1;
const [cond, tampered, pixelsOnly] = process.argv.slice(2).map((p) => readFileSync(p));
const outcome = async (f) => { try { const r = await f(); return `ok ${r.n}`; } catch (e) { return `error ${e.message}`; } };
const c = await ort.InferenceSession.create(cond);
const t = await ort.InferenceSession.create(tampered);
const p = await ort.InferenceSession.create(pixelsOnly);
console.log(JSON.stringify({
  negative: await outcome(() => generate(c, [0], { ort, labels: [-1] })),
  beyond: await outcome(() => generate(c, [0], { ort, labels: [2], classes: ["cat", "dog"] })),
  beyondUnnamed: await outcome(() => generate(c, [0], { ort, labels: [5] })),
  empty: await outcome(() => generate(c, [], { ort, labels: [] })),
  fine: await outcome(() => generate(c, [0, 1], { ort, labels: [1, 0], classes: 2 })),
  tampered: await outcome(() => generate(t, [0], { ort, labels: [0] })),
  pixelsOnly: await outcome(() => generate(p, [0], { ort, zDim: 256 })),
}));
"""


def test_gankit_js_checks_labels_the_output_contract_and_the_pixels(tmp_path):
    cond = tiny_generator(tmp_path / "cond.onnx", classes=["cat", "dog"])
    bad = tampered(cond, tmp_path / "bad.onnx", gankit_half=100.5)
    model = onnx.load(str(passthrough(tmp_path / "p.onnx")))
    del model.graph.output[0]  # pixels alone: not images [N, C, H, W]
    onnx.save(model, str(tmp_path / "pixels-only.onnx"))
    shutil.copy(WEB / "gankit.js", tmp_path / "gankit.js")
    os.symlink(WEB / "node_modules", tmp_path / "node_modules")
    r = node(CHECKS, tmp_path, cond, bad, tmp_path / "pixels-only.onnx")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["negative"].startswith("error labels must be integers in [0,")
    assert got["beyond"].startswith("error labels must be integers in [0, 1]")
    assert got["beyondUnnamed"].startswith("error onnxruntime failed") and "label" in got["beyondUnnamed"]
    assert got["empty"] == "ok 0" and got["fine"] == "ok 2"
    assert "pixels output is not its images" in got["tampered"]
    assert got["pixelsOnly"].startswith("error not a gankit generator")
    assert np.array_equal(python_pixels(cond), python_pixels(cond))  # (the Python side reads both models too)
