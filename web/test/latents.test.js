// node --test web/test/: the JavaScript seed formula against numpy's recorded values and numpy itself.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { crLog, generate, latents, modelInfo, nearBoundary, toPixels } from "../gankit.js";

const here = dirname(fileURLToPath(import.meta.url));
const golden = JSON.parse(readFileSync(join(here, "golden.json"), "utf8"));
const bitsOf32 = (values) => Array.from(new Uint32Array(Float32Array.from(values).buffer));
const f64 = (hex) => new Float64Array(new BigUint64Array([BigInt("0x" + hex)]).buffer)[0];
const neighbour = (x, step) => new Float64Array(new BigUint64Array([new BigUint64Array(new Float64Array([x]).buffer)[0] +
  BigInt(step)]).buffer)[0];
const hex64 = (x) => new BigUint64Array(new Float64Array([x]).buffer)[0].toString(16).padStart(16, "0");

test("latents equal numpy's recorded values, bit for bit", () => {
  for (const [key, want] of Object.entries(golden.latents)) {
    const [, seed, zDim] = key.match(/^seed(\d+)_z(\d+)$/).map(Number);
    assert.deepEqual(bitsOf32(latents([seed], zDim)), want, key);
  }
});

test("several seeds at once are each seed alone, and truncation scales in float32", () => {
  const seeds = [5, 0, 4294967295, 42];
  const all = latents(seeds, 7);
  seeds.forEach((s, i) => assert.deepEqual(Array.from(all.subarray(i * 7, i * 7 + 7)), Array.from(latents([s], 7))));
  const half = latents(seeds, 7, 0.7);
  all.forEach((v, i) => assert.equal(half[i], Math.fround(v * Math.fround(0.7))));
  assert.throws(() => latents([2 ** 32]), RangeError);
  assert.throws(() => latents([-1]), RangeError);
  assert.throws(() => latents([1.5]), RangeError);
  assert.throws(() => latents([1], 100, -1), RangeError);
});

test("crLog is the correctly rounded log (against mpmath)", () => {
  for (const [x, want] of golden.logs) assert.equal(hex64(crLog(f64(x))), want, `log(${f64(x)})`);
});

/** x2 moved by bisection until x2 * f(r2) sits on a float32 rounding boundary (a midpoint of two float32s). */
function nearBoundaryCase(x1, x2) {
  const gauss = (x) => {
    const r2 = x1 * x1 + x * x;
    return x * Math.sqrt(-2.0 * crLog(r2) / r2);
  };
  const v32 = Math.fround(gauss(x2));
  const up = new Float32Array([v32]);
  new Uint32Array(up.buffer)[0] += 1; // the next float32 (positive values here)
  const target = (v32 + up[0]) / 2;
  let [lo, hi] = [x2 * (1 - 1e-6), x2 * (1 + 1e-6)];
  for (let i = 0; i < 80; i++) {
    const mid = (lo + hi) / 2;
    if ((gauss(mid) - target) * (gauss(lo) - target) > 0) lo = mid;
    else hi = mid;
  }
  return [x1, lo, x1 * x1 + lo * lo];
}

test("a Gaussian near a float32 boundary is settled with the correctly rounded log", async () => {
  const { gaussian } = await import("../gankit.js").then((m) => m.internals);
  let flipped = 0;
  for (const [a, b] of [[0.3, 0.5], [-0.61, 0.12], [0.7, 0.2], [-0.2, 0.8], [0.05, 0.6]]) {
    const [, x2, r2] = nearBoundaryCase(a, b);
    const exact = Math.sqrt(-2.0 * crLog(r2) / r2);
    const want = Math.fround(x2 * exact);
    for (const wrong of [neighbour(crLog(r2), 1), neighbour(crLog(r2), -1)]) { // a log an ulp off, either way
      const f = Math.sqrt(-2.0 * wrong / r2);
      assert.ok(nearBoundary(x2 * f));
      flipped += Math.fround(x2 * f) !== want;
      assert.equal(Math.fround(gaussian(x2, r2, f)), want);
    }
  }
  assert.ok(flipped > 0, "the constructed cases include values an ulp of log would round the other way");
  assert.ok(!nearBoundary(0.123456789) && !nearBoundary(-1.5));
});

function numpyLatents(seeds, zDim) {
  const python = process.env.GANKIT_PYTHON || "python3";
  const code = "import sys, json, numpy as np\n" +
    "seeds, z = json.load(sys.stdin)\n" +
    "out = np.stack([np.random.RandomState(s).randn(z).astype(np.float32) for s in seeds])\n" +
    "sys.stdout.buffer.write(out.astype('<f4').tobytes())\n";
  const r = spawnSync(python, ["-c", code], { input: JSON.stringify([seeds, zDim]), maxBuffer: 1 << 28 });
  if (r.status !== 0) return null;
  return new Float32Array(r.stdout.buffer, r.stdout.byteOffset, seeds.length * zDim);
}

test("3,000 random seeds equal numpy's RandomState", (t) => {
  let state = 12345;
  const seeds = Array.from({ length: 3000 }, () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0));
  for (const zDim of [100, 3]) {
    const want = numpyLatents(seeds, zDim);
    if (want === null) return t.skip("no python3 with numpy here (set GANKIT_PYTHON)");
    assert.deepEqual(bitsOf32(latents(seeds, zDim)), bitsOf32(want), `z_dim ${zDim}`);
  }
});

test("generate() runs a shipped model in onnxruntime-web; its pixels are the conversion of its images", async (t) => {
  let ort;
  try {
    ort = await import("onnxruntime-web");
  } catch {
    return t.skip("onnxruntime-web is not installed (npm ci in web/)");
  }
  ort.env.wasm.numThreads = 1;
  const root = join(here, "..", "..");
  for (const [name, labels] of [["mnist-dcgan", null], ["mnist-cdcgan", [0, 1, 2, 3, 4, 5, 6, 7]]]) {
    const bytes = readFileSync(join(root, "exported", `${name}.onnx`));
    const session = await ort.InferenceSession.create(bytes);
    const result = await generate(session, [0, 1, 2, 3, 4, 5, 6, 7], { ort, labels, ...modelInfo(bytes) });
    assert.equal(result.pixels.length, 8 * 28 * 28);
    assert.deepEqual(result.pixels, toPixels(result.images, [8, 1, 28, 28]));
    await assert.rejects(generate(session, [0], { ort, labels: labels ? null : [1] }));
  }
});
