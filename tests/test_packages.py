"""The JavaScript package as a JS developer gets it: `npm pack`'s tarball installed into an empty folder, its types
checked by tsc, and the checks gankit.js makes of a model and of labels. Skipped where node, npm or web/'s
node_modules (npm ci) are missing; .ci/run installs them. The Python wheels are installed and run by .ci/wheels."""

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import onnx
import pytest
from conftest import ROOT
from gankit_runtime import Generator
from test_refusals import tampered
from tiny_models import passthrough, shape_liar, tiny_generator

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
  const info = modelInfo(bytes);
  const seeds = parseSeeds("0-7");
  const labels = info.classes.length ? seeds.map((s) => s %% info.classes.length) : null;
  const result = await generate(session, seeds, { ort, labels, ...info });
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
    # The shipped models, a model with modes (its mode is an ArgMax over z inside the graph) and one with --transfer
    # latent (a Gather of its class's mean and a MatMul of z inside the graph)
    moded = tiny_generator(tmp_path / "moded.onnx", modes=4)
    transfer = tiny_generator(tmp_path / "transfer.onnx", classes=[str(c) for c in range(10)], transfer=True)
    models = [ROOT / "exported" / "mnist-dcgan.onnx", ROOT / "exported" / "mnist-cdcgan.onnx", moded, transfer]
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
import { generate, modelInfo, readMetadata } from "./gankit.js";
ort.env.wasm.numThreads = 1;
const [cond, tampered, pixelsOnly, liar] = process.argv.slice(2).map((p) => readFileSync(p));
const outcome = async (f) => { try { const r = await f(); return `ok ${r.n ?? ""}`; } catch (e) { return `error ${e.message}`; } };
const c = await ort.InferenceSession.create(cond);
const t = await ort.InferenceSession.create(tampered);
const p = await ort.InferenceSession.create(pixelsOnly);
const l = await ort.InferenceSession.create(liar);
const classes = ["cat", "dog"];
const withMeta = (value) => { // a ModelProto of one metadata_props entry: key "classes", this value
  const enc = new TextEncoder();
  const field = (n, bytes) => [(n << 3) | 2, bytes.length, ...bytes];
  const entry = [...field(1, enc.encode("classes")), ...field(2, enc.encode(value))];
  return new Uint8Array(field(14, entry));
};
const tamperedResult = await generate(t, [0, 1, 2, 3], { ort, labels: [0, 1, 0, 1], classes });
console.log(JSON.stringify({
  negative: await outcome(() => generate(c, [0], { ort, labels: [-1], classes })),
  beyond: await outcome(() => generate(c, [0], { ort, labels: [2], classes })),
  noClasses: await outcome(() => generate(c, [0], { ort, labels: [5] })),
  empty: await outcome(() => generate(c, [], { ort, labels: [], classes })),
  fine: await outcome(() => generate(c, [0, 1], { ort, labels: [1, 0], classes: 2 })),
  zDim: await outcome(() => generate(c, [0], { ort, labels: [0], classes, zDim: 64 })),
  tampered: Buffer.from(tamperedResult.pixels).toString("base64"),
  pixelsOnly: await outcome(() => generate(p, [0], { ort, zDim: 256 })),
  liar: await outcome(() => generate(l, [0, 1], { ort })),
  truncated: await outcome(() => readMetadata(new Uint8Array([(14 << 3) | 2, 9, (1 << 3) | 1, 1, 2, 3]))),
  notJson: await outcome(() => modelInfo(withMeta("[cat"))),
  duplicate: await outcome(() => modelInfo(withMeta('["a", "a"]'))),
  emptyName: await outcome(() => modelInfo(withMeta('["a", ""]'))),
  badRange: await outcome(() => generate(c, [0], { ort, labels: [0], classes, outputRange: [1, 1] })),
}));
"""


def test_gankit_js_checks_what_python_checks_and_never_reads_the_graph_s_pixels(tmp_path):
    cond = tiny_generator(tmp_path / "cond.onnx", classes=["cat", "dog"])
    bad = tampered(cond, tmp_path / "bad.onnx", gankit_half=100.5)  # its pixels output lies, its images do not
    model = onnx.load(str(passthrough(tmp_path / "p.onnx")))
    del model.graph.output[0]  # pixels alone: not images [N, C, H, W]
    onnx.save(model, str(tmp_path / "pixels-only.onnx"))
    liar = shape_liar(tmp_path / "liar.onnx")  # declares images [N, 1, 28, 28], makes 64x64
    shutil.copy(WEB / "gankit.js", tmp_path / "gankit.js")
    os.symlink(WEB / "node_modules", tmp_path / "node_modules")
    r = node(CHECKS, tmp_path, cond, bad, tmp_path / "pixels-only.onnx", liar)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["negative"].startswith("error labels must be integers in [0, 1], got -1")
    assert got["beyond"].startswith("error labels must be integers in [0, 1], got 2")
    assert got["noClasses"].startswith("error this model is class-conditional: pass { classes }")
    assert got["empty"] == "ok 0" and got["fine"] == "ok 2"
    assert got["zDim"].startswith("error this model takes latents of 100 values")
    g = Generator(cond)
    assert base64.b64decode(got["tampered"]) == g.generate(range(4), labels=[0, 1, 0, 1]).tobytes()
    assert got["pixelsOnly"].startswith("error not a gankit generator")
    assert got["liar"].startswith("error the model declares images [2,1,28,28] but made [2,1,64,64]")
    assert got["truncated"] == "error not an ONNX model: a field runs past the end"
    assert got["notJson"].startswith("error the model's classes metadata is not JSON")
    assert got["duplicate"].startswith("error the model's classes metadata must name at least 2 distinct")
    assert got["emptyName"].startswith("error the model's classes metadata is not a list of non-empty names")
    assert got["badRange"].startswith("error bad output_range")
