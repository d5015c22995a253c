// The demo page: shipped generators, seeds, classes, truncation, a grid, and an interpolation between two seeds.
// Served as static files by any web server (gankit web MODEL --out DIR writes the whole folder).
import * as ort from "./ort/ort.wasm.min.mjs";
import { latents, run, toRGBA } from "./gankit.js";

ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which a plain static host does not give

const MAX_IMAGES = 1024;
const SCALE = 3; // screen pixels per image pixel
const $ = (id) => document.getElementById(id);
const status = (text, error = false) => {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
};
const sessions = new Map(); // model file -> InferenceSession
let models = [];

/** "0-63,100" -> seeds, as `generate --seeds` reads them (inclusive ranges, no seed twice). */
export function parseSeeds(text) {
  const seeds = [];
  for (const term of text.replace(/\s/g, "").split(",")) {
    const m = term.match(/^(\d+)(?:-(\d+))?$/);
    if (!m) throw new Error(`bad seeds: ${JSON.stringify(term)} is not N or A-B`);
    const [lo, hi] = [Number(m[1]), Number(m[2] ?? m[1])];
    if (hi < lo || hi > 0xffffffff) throw new Error(`bad seeds: ${term} (ranges go up, seeds up to 4294967295)`);
    if (seeds.length + hi - lo + 1 > MAX_IMAGES) throw new Error(`at most ${MAX_IMAGES} images on this page`);
    for (let s = lo; s <= hi; s++) seeds.push(s);
  }
  if (new Set(seeds).size !== seeds.length) throw new Error("bad seeds: a seed is listed twice");
  return seeds;
}

async function session(model) {
  if (!sessions.has(model.file)) {
    try {
      sessions.set(model.file, await ort.InferenceSession.create(model.file));
    } catch (e) {
      throw new Error(`could not load ${model.file}: ${String(e.message ?? e).split("\n")[0]}`);
    }
  }
  return sessions.get(model.file);
}

/** Images of the model for seeds (and labels), drawn `columns` to a row. */
function draw(canvas, result, columns) {
  const { n, width, height } = result;
  const rows = Math.ceil(n / columns);
  canvas.width = columns * (width + 2) * SCALE;
  canvas.height = rows * (height + 2) * SCALE;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  const tile = new OffscreenCanvas(width, height);
  for (let i = 0; i < n; i++) {
    tile.getContext("2d").putImageData(new ImageData(toRGBA(result, i), width, height), 0, 0);
    const [r, c] = [Math.floor(i / columns), i % columns];
    ctx.drawImage(tile, (c * (width + 2) + 1) * SCALE, (r * (height + 2) + 1) * SCALE, width * SCALE, height * SCALE);
  }
}

/** What the controls ask for: { model, seeds, labels, truncation, columns }. */
function request() {
  const model = models[Number($("model").value)];
  let seeds = parseSeeds($("seeds").value);
  let labels = null;
  let columns = Math.min(8, seeds.length);
  if (model.classes.length) {
    const chosen = $("class").value;
    if (chosen === "all") { // a row per class
      seeds = seeds.slice(0, 8);
      columns = seeds.length;
      labels = model.classes.flatMap((_, c) => seeds.map(() => c));
      seeds = model.classes.flatMap(() => seeds);
    } else {
      labels = seeds.map(() => Number(chosen));
    }
  }
  return { model, seeds, labels, truncation: Number($("truncation").value), columns };
}

/** For the page and for tests: latents, images and pixels of a model, as Python's generate makes them. */
async function generateWith(modelIndex, seeds, labels = null, truncation = 1.0) {
  const model = models[modelIndex];
  const z = latents(seeds, model.zDim, truncation);
  return run(await session(model), z, seeds.length, { ort, labels, classes: model.classes, outputRange: model.outputRange });
}

async function showGrid(event) {
  event?.preventDefault();
  try {
    const { model, seeds, labels, truncation, columns } = request();
    const start = performance.now();
    const result = await generateWith(models.indexOf(model), seeds, labels, truncation);
    draw($("grid"), result, columns);
    status(`${result.n} images from ${model.name} in ${(performance.now() - start).toFixed(0)} ms`);
    return result;
  } catch (e) {
    status(String(e.message ?? e), true);
    return null;
  }
}

/** Spherical interpolation between two seeds' latents (the latents are Gaussian: slerp keeps their norm). */
async function showInterpolation(event) {
  event?.preventDefault();
  try {
    const { model, labels, truncation } = request();
    const [a, b] = [Number($("from").value), Number($("to").value)];
    const frames = Math.max(2, Math.min(64, Number($("frames").value)));
    const za = latents([a], model.zDim, truncation);
    const zb = latents([b], model.zDim, truncation);
    const dot = za.reduce((s, v, i) => s + v * zb[i], 0) /
      Math.sqrt(za.reduce((s, v) => s + v * v, 0) * zb.reduce((s, v) => s + v * v, 0));
    const omega = Math.acos(Math.min(1, Math.max(-1, dot)));
    const z = new Float32Array(frames * model.zDim);
    for (let f = 0; f < frames; f++) {
      const t = f / (frames - 1);
      const [wa, wb] = omega < 1e-6 ? [1 - t, t] :
        [Math.sin((1 - t) * omega) / Math.sin(omega), Math.sin(t * omega) / Math.sin(omega)];
      for (let i = 0; i < model.zDim; i++) z[f * model.zDim + i] = wa * za[i] + wb * zb[i];
    }
    const frameLabels = labels ? Array(frames).fill(labels[0]) : null;
    const result = await run(await session(model), z, frames, {
      ort, labels: frameLabels, classes: model.classes, outputRange: model.outputRange,
    });
    draw($("strip"), result, frames);
    status(`seed ${a} to seed ${b} in ${frames} frames (${model.name})`);
  } catch (e) {
    status(String(e.message ?? e), true);
  }
}

function chooseModel() {
  const model = models[Number($("model").value)];
  $("class-label").hidden = !model.classes.length;
  $("class").replaceChildren(...(model.classes.length ? [["all", "all (a row each)"], ...model.classes.map((c, i) => [i, c])] : [])
    .map(([value, text]) => Object.assign(document.createElement("option"), { value, textContent: text })));
}

async function main() {
  try {
    const response = await fetch("models.json");
    if (!response.ok) throw new Error(`models.json: HTTP ${response.status}`);
    models = await response.json();
  } catch (e) {
    status(`could not read the list of models (${e.message ?? e})`, true);
    return;
  }
  $("model").replaceChildren(...models.map((m, i) => Object.assign(document.createElement("option"),
    { value: i, textContent: `${m.name} (${m.classes.length ? "conditional" : "unconditional"})` })));
  chooseModel();
  $("model").addEventListener("change", () => { chooseModel(); showGrid(); showInterpolation(); });
  $("truncation").addEventListener("input", () => { $("truncation-value").value = Number($("truncation").value).toFixed(2); });
  $("controls").addEventListener("submit", showGrid);
  $("interpolation").addEventListener("submit", showInterpolation);
  const first = await showGrid();
  window.gankitDemo.firstGridMs = first ? performance.now() : null; // since navigation started
  await showInterpolation(); // the strip is drawn from the start, not left black until asked
  window.gankitDemo.ready = true;
}

window.gankitDemo = { generateWith, parseSeeds, ready: false, models: () => models };
main();
