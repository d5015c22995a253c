// gankit in JavaScript: an exported generator's images from seeds, the same bytes as `gankit generate`.
//
//   import * as ort from "onnxruntime-web";                           // or onnxruntime-node
//   import { generate, modelInfo, toImageData } from "gankit-web";
//   const bytes = new Uint8Array(await (await fetch("mnist-cdcgan.onnx")).arrayBuffer());
//   const session = await ort.InferenceSession.create(bytes);
//   const { classes } = modelInfo(bytes);                             // ["0", ..., "9"]; [] if unconditional
//   const result = await generate(session, [0, 1, 42], { ort, labels: [7, 7, 7], classes });
//   ctx.putImageData(toImageData(result, 0), 0, 0);                   // result.pixels: uint8 [N, H, W, C]
//
// gankit.d.ts declares the types; README.md has the whole API.
//
// The seed formula is numpy's: numpy.random.RandomState(seed).randn(zDim).astype(float32). RandomState is MT19937
// seeded by init_genrand (a 32-bit seed), and randn is the legacy polar (Marsaglia) method on 53-bit doubles, the
// second Gaussian of each pair kept for the next draw. Each step below is numpy's, operation for operation. One
// step is not portable: log(r2). numpy calls the C library's log, and JavaScript's Math.log may differ from it by
// an ulp; that can change the float32 result only when a Gaussian lies within a few float64 ulps of a float32
// rounding boundary (about 2.4e-7 of values). There, and only there, the log is recomputed correctly rounded
// (crLog, in double-double arithmetic). So the latents equal numpy's wherever the C library's log is correctly
// rounded at those few inputs. glibc's is not always (docs/design.md measured 1 of 1,908 such inputs one ulp off), so
// over all 2^32 seeds an element or so may differ by one float32 ulp; the golden seeds and 3,000 random ones agree.

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const NEAR = 64; // float64 ulps around a float32 rounding boundary (docs/design.md, "The one trap: log")

// ---------------------------------------------------------------------------------------- near a boundary
const scratch = new Float64Array(1);
const words = new Uint32Array(scratch.buffer);
const LOW = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1; // the low word's index

/** Whether float64 v lies within NEAR ulps of a float32 rounding boundary (or below float32's normal range). */
export function nearBoundary(v) {
  scratch[0] = v;
  const dropped = words[LOW] & 0x1fffffff; // the mantissa bits float32 drops
  return Math.abs(dropped - 0x10000000) <= NEAR || Math.abs(v) < 1.1754943508222875e-38;
}

// Double-double arithmetic (Dekker, Knuth): about 106 bits, enough to round a log correctly.
function twoSum(a, b) {
  const s = a + b;
  const bb = s - a;
  return [s, (a - (s - bb)) + (b - bb)];
}
function quickTwoSum(a, b) {
  const s = a + b;
  return [s, b - (s - a)];
}
function split(a) {
  const t = 134217729 * a;
  const hi = t - (t - a);
  return [hi, a - hi];
}
function twoProd(a, b) {
  const p = a * b;
  const [ah, al] = split(a);
  const [bh, bl] = split(b);
  return [p, ((ah * bh - p) + ah * bl + al * bh) + al * bl];
}
function ddAdd(a, b) {
  const [s, e] = twoSum(a[0], b[0]);
  const [t, f] = twoSum(a[1], b[1]);
  const [u, g] = quickTwoSum(s, e + t);
  return quickTwoSum(u, g + f);
}
function ddMul(a, b) {
  const [p, e] = twoProd(a[0], b[0]);
  return quickTwoSum(p, e + (a[0] * b[1] + a[1] * b[0]));
}
function ddDiv(a, b) {
  const q1 = a[0] / b[0];
  let r = ddAdd(a, ddMul(b, [-q1, 0]));
  const q2 = r[0] / b[0];
  r = ddAdd(r, ddMul(b, [-q2, 0]));
  const q3 = r[0] / b[0];
  return ddAdd(quickTwoSum(q1, q2), [q3, 0]);
}
const LN2 = [0.6931471805599453, 2.3190468138462996e-17];
const SERIES = Array.from({ length: 24 }, (_, k) => ddDiv([1, 0], [2 * k + 1, 0])); // 1 / (2k + 1)

/** The natural log of a positive finite x, correctly rounded: log x = e ln 2 + 2 atanh((m - 1) / (m + 1)) with
 * x = m 2^e, m in [sqrt(1/2), sqrt(2)), summed in double-double and rounded once. Slow: for the rare values
 * near a float32 boundary. */
export function crLog(x) {
  scratch[0] = x;
  let e = ((words[1 - LOW] >>> 20) & 0x7ff) - 1023;
  let m = x / 2 ** e; // exact: a power of two (x is a normal number here: r2 >= 2^-106)
  if (m > Math.SQRT2) {
    m /= 2;
    e += 1;
  }
  const s = ddDiv([m - 1, 0], twoSum(m, 1)); // m - 1 is exact (Sterbenz)
  const s2 = ddMul(s, s);
  let p = SERIES[SERIES.length - 1];
  for (let k = SERIES.length - 2; k >= 0; k--) p = ddAdd(ddMul(p, s2), SERIES[k]);
  const result = ddAdd(ddMul(LN2, [e, 0]), ddMul([2 * s[0], 2 * s[1]], p));
  return result[0] + result[1];
}

// ---------------------------------------------------------------------------------------- the seed formula
/** legacy_gauss's value f * x with f = sqrt(-2 log(r2) / r2), in float64, settled near a float32 boundary. */
function gaussian(x, r2, f) {
  const v = x * f;
  return nearBoundary(v) ? x * Math.sqrt(-2.0 * crLog(r2) / r2) : v;
}

const STATES = [0, 1, 2, 3].map(() => new Uint32Array(N));
const tempered = new Uint32Array(N);
const BLOCK = 128; // words twisted and tempered at a time (numpy's randn(100) needs ~260 of a seed's 624)

/** Twist words [from, to) of the state in place (in order: the same as numpy's whole-state twist) and temper
 * them into `tempered`. */
function twistWords(mt, from, to) {
  for (let k = from; k < to; k++) {
    const y = (mt[k] & 0x80000000) | (mt[k === N - 1 ? 0 : k + 1] & 0x7fffffff);
    let w = mt[k < N - M ? k + M : k + M - N] ^ (y >>> 1) ^ (-(y & 1) & MATRIX_A);
    mt[k] = w;
    w ^= w >>> 11;
    w ^= (w << 7) & 0x9d2c5680;
    w ^= (w << 15) & 0xefc60000;
    tempered[k] = w ^ (w >>> 18);
  }
}

/** init_genrand for up to four seeds from seeds[at] on, into STATES: four independent chains of its 623 steps
 * (one chain waits on each multiply; four keep the CPU busy). */
function seedFour(seeds, at) {
  const [m0, m1, m2, m3] = STATES;
  let a = seeds[at] >>> 0;
  let b = (seeds[at + 1] ?? 0) >>> 0;
  let c = (seeds[at + 2] ?? 0) >>> 0;
  let d = (seeds[at + 3] ?? 0) >>> 0;
  m0[0] = a;
  m1[0] = b;
  m2[0] = c;
  m3[0] = d;
  for (let i = 1; i < N; i++) {
    a = (Math.imul(1812433253, a ^ (a >>> 30)) + i) >>> 0;
    b = (Math.imul(1812433253, b ^ (b >>> 30)) + i) >>> 0;
    c = (Math.imul(1812433253, c ^ (c >>> 30)) + i) >>> 0;
    d = (Math.imul(1812433253, d ^ (d >>> 30)) + i) >>> 0;
    m0[i] = a;
    m1[i] = b;
    m2[i] = c;
    m3[i] = d;
  }
}

/** out[offset .. offset + zDim) = the latent of the seed whose state `mt` holds: MT19937 in blocks of words. */
function fillLatent(out, offset, mt, zDim) {
  let pos = 0;
  let made = 0;
  for (let i = 0; i < zDim; i += 2) {
    let x1;
    let x2;
    let r2;
    do {
      if (pos === made) { // a candidate takes 4 words; N and BLOCK are multiples of 4
        if (made === N) pos = made = 0;
        const to = Math.min(made + BLOCK, N);
        twistWords(mt, made, to);
        made = to;
      }
      x1 = 2.0 * (((tempered[pos] >>> 5) * 67108864.0 + (tempered[pos + 1] >>> 6)) / 9007199254740992.0) - 1.0;
      x2 = 2.0 * (((tempered[pos + 2] >>> 5) * 67108864.0 + (tempered[pos + 3] >>> 6)) / 9007199254740992.0) - 1.0;
      pos += 4;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1.0 || r2 === 0.0);
    const f = Math.sqrt(-2.0 * Math.log(r2) / r2);
    out[offset + i] = gaussian(x2, r2, f); // the Float32Array rounds as numpy's astype(float32)
    if (i + 1 < zDim) out[offset + i + 1] = gaussian(x1, r2, f); // the pair's kept Gaussian
  }
}

function checkSeed(seed) {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(`seed ${seed} is not an integer in [0, 2^32 - 1]`);
  }
}

/** Float32Array [seeds.length * zDim]: row i is numpy.random.RandomState(seeds[i]).randn(zDim).astype(float32),
 * times `truncation` (psi, in float32 as the Python runtime does; 1 = off). */
export function latents(seeds, zDim = 100, truncation = 1.0) {
  if (!Number.isInteger(zDim) || zDim < 1) throw new RangeError(`zDim must be a positive integer, got ${zDim}`);
  if (!(Number.isFinite(truncation) && truncation >= 0)) {
    throw new RangeError(`truncation must be a finite number >= 0 (1 = off), got ${truncation}`);
  }
  const out = new Float32Array(seeds.length * zDim);
  seeds.forEach(checkSeed);
  for (let i = 0; i < seeds.length; i += 4) {
    seedFour(seeds, i);
    for (let k = 0; k < 4 && i + k < seeds.length; k++) fillLatent(out, (i + k) * zDim, STATES[k], zDim);
  }
  if (truncation !== 1) {
    const psi = Math.fround(truncation);
    for (let i = 0; i < out.length; i++) out[i] = out[i] * psi; // float32 * float32, rounded to float32
  }
  return out;
}

// ---------------------------------------------------------------------------------------- seeds as text
/** "0-99,200,300-310" -> [0, ..., 99, 200, 300, ..., 310], in the order written: the syntax of `gankit generate
 * --seeds` (ranges inclusive, seeds in [0, 2^32 - 1], none twice). At most `limit` seeds (an array holds them). */
export function parseSeeds(text, limit = 1000000) {
  const seeds = [];
  const spans = [];
  for (const term of String(text).replace(/ /g, "").split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(term);
    if (!m) throw new RangeError(`bad seeds ${JSON.stringify(text)}: ${JSON.stringify(term)} is not N or A-B (example: 0-99,200)`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo) throw new RangeError(`bad seeds ${JSON.stringify(text)}: range ${term} is empty (end before start)`);
    if (hi > 0xffffffff) throw new RangeError(`bad seeds ${JSON.stringify(text)}: seeds must be at most 4294967295`);
    if (seeds.length + hi - lo + 1 > limit) throw new RangeError(`more than ${limit} seeds: pass a larger limit`);
    spans.push([lo, hi]);
    for (let s = lo; s <= hi; s++) seeds.push(s);
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] <= spans[i - 1][1]) throw new RangeError(`bad seeds ${JSON.stringify(text)}: a seed is listed twice`);
  }
  return seeds;
}

// ---------------------------------------------------------------------------------------- the model file
/** A model file's metadata_props (ONNX ModelProto field 14: key/value strings) as an object. onnxruntime-web and
 * -node do not expose them; this reads them from the file's protobuf bytes (the top level only). */
export function readMetadata(bytes) {
  const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const text = new TextDecoder();
  const fields = (from, to, each) => {
    let at = from;
    const varint = () => {
      let value = 0;
      for (let scale = 1; ; scale *= 128) {
        if (at >= to || scale > 2 ** 56) throw new Error("not an ONNX model: bad protobuf varint");
        const b = data[at++];
        value += (b & 0x7f) * scale;
        if (b < 0x80) return value;
      }
    };
    while (at < to) {
      const key = varint();
      const wire = key % 8;
      const field = Math.floor(key / 8);
      if (wire === 0) varint();
      else if (wire === 1 || wire === 5) {
        at += wire === 1 ? 8 : 4;
        if (at > to) throw new Error("not an ONNX model: a field runs past the end");
      } else if (wire === 2) {
        const length = varint();
        if (at + length > to) throw new Error("not an ONNX model: a field runs past the end");
        each(field, at, at + length);
        at += length;
      } else throw new Error(`not an ONNX model: protobuf wire type ${wire}`);
    }
  };
  const metadata = {};
  fields(0, data.length, (field, from, to) => {
    if (field !== 14) return;
    const entry = {};
    fields(from, to, (f, a, b) => { entry[f] = text.decode(data.subarray(a, b)); });
    if (entry[1] !== undefined) metadata[entry[1]] = entry[2] ?? "";
  });
  return metadata;
}

/** What a gankit export says of itself: { classes: the class names (label i is classes[i]; [] for an unconditional
 * model), outputRange: [low, high] of its images, metadata: every metadata_props entry }. The metadata is checked
 * as the Python runtime checks it: a JSON list of distinct, non-empty class names; a finite range low < high. */
export function modelInfo(bytes) {
  const metadata = readMetadata(bytes);
  let classes = [];
  if (metadata.classes !== undefined) {
    try {
      classes = JSON.parse(metadata.classes);
    } catch {
      throw new Error("the model's classes metadata is not JSON: the file is not a valid gankit export");
    }
    if (!Array.isArray(classes) || !classes.every((c) => typeof c === "string" && c.length > 0)) {
      throw new Error("the model's classes metadata is not a list of non-empty names");
    }
    if (new Set(classes).size !== classes.length || classes.length < 2) {
      throw new Error("the model's classes metadata must name at least 2 distinct classes");
    }
  }
  return { classes, outputRange: parseRange(metadata.output_range ?? "-1,1"), metadata };
}

function parseRange(text) {
  const parts = String(text).split(",");
  const [low, high] = parts.map((v) => (/^\s*[-+0-9.eE]+\s*$/.test(v) ? Number(v) : NaN));
  const scale = Math.fround(255 / Math.fround(high - low));
  if (parts.length !== 2 || !(Number.isFinite(low) && Number.isFinite(high) && low < high && Number.isFinite(scale) && scale > 0)) {
    throw new Error(`bad output_range metadata ${JSON.stringify(String(text).slice(0, 40))} (need finite low < high)`);
  }
  return [low, high];
}

/** The session's inputs and outputs as gankit's contract has them, or an Error that says what it has instead:
 * z float32 [N, zDim] (and labels int64 [N]); images float32 [N, 1|3, H, W] (and pixels uint8 [N, H, W, C]). */
function contractOf(session) {
  const ins = session.inputNames;
  const outs = session.outputNames;
  const inMeta = session.inputMetadata;
  const outMeta = session.outputMetadata;
  const typed = (meta, i, type, rank) => !meta?.[i]?.isTensor || (meta[i].type === type && meta[i].shape.length === rank);
  let ok = (ins.length === 1 || ins.length === 2) && (outs.length === 1 || (outs.length === 2 && outs[1] === "pixels"))
    && typed(inMeta, 0, "float32", 2) && (ins.length === 1 || typed(inMeta, 1, "int64", 1))
    && typed(outMeta, 0, "float32", 4) && (outs.length === 1 || typed(outMeta, 1, "uint8", 4));
  const dims = outMeta?.[0]?.isTensor ? outMeta[0].shape.slice(1) : null; // [C, H, W]
  if (ok && dims) ok = [1, 3].includes(dims[0]) && dims.every((d) => Number.isInteger(d) && d > 0);
  if (ok && dims && outs.length === 2 && outMeta[1]?.isTensor) {
    ok = outMeta[1].shape.slice(1).join() === [dims[1], dims[2], dims[0]].join();
  }
  if (!ok) {
    const show = (names, meta) => names.map((n, i) => `${n} ${meta?.[i]?.type ?? "?"} [${meta?.[i]?.shape ?? "?"}]`).join(", ");
    throw new Error("not a gankit generator: expected inputs z float32 [N, zDim] (and labels int64 [N]), outputs "
      + `images float32 [N, 1|3, H, W] (and pixels uint8 [N, H, W, C]); it has inputs ${show(ins, inMeta)}, `
      + `outputs ${show(outs, outMeta)}`);
  }
  return { conditional: ins.length === 2, pixels: outs.length === 2, dims };
}

/** The number of classes from options.classes (names, or a count), or null when the caller did not say. */
function classCount(options) {
  const { classes = null } = options;
  if (classes === null || (Array.isArray(classes) && classes.length === 0)) return null; // [] : unconditional
  const count = Array.isArray(classes) ? classes.length : classes;
  if (!Number.isInteger(count) || count < 1) throw new RangeError("classes must be the class names or their number");
  return count;
}

function checkLabels(labels, n, count) {
  if (!labels || labels.length !== n) throw new RangeError(`this model is class-conditional: give ${n} labels, one per image`);
  if (count === null) {
    throw new RangeError("this model is class-conditional: pass { classes } (modelInfo(bytes).classes) so that its labels can be checked");
  }
  for (const l of labels) {
    if (!Number.isInteger(l) || l < 0 || l >= count) throw new RangeError(`labels must be integers in [0, ${count - 1}], got ${l}`);
  }
}

/** One session run on checked inputs: the images output alone (the graph's pixels are never read), of the shape
 * the graph declares, all finite; else an Error that says so. */
async function runChecked(session, ort, z, n, labels, dims) {
  const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", z, [n, z.length / n]) };
  if (labels) feeds[session.inputNames[1]] = new ort.Tensor("int64", BigInt64Array.from(labels, (l) => BigInt(l)), [n]);
  let out;
  try {
    out = await session.run(feeds, [session.outputNames[0]]);
  } catch (e) {
    throw new Error(`onnxruntime failed on a batch of ${n}: ${String(e.message ?? e).split("\n")[0]}`);
  }
  const images = out[session.outputNames[0]];
  const want = [n, ...(dims ?? images.dims.slice(1))];
  if (images.dims.length !== 4 || images.dims.join() !== want.join() || images.data.length !== n * want[1] * want[2] * want[3]) {
    throw new Error(`the model declares images [${want}] but made [${images.dims}]: the file is not a valid generator`);
  }
  for (const x of images.data) {
    if (!Number.isFinite(x)) throw new Error("the model gives NaN or infinite values: it is broken");
  }
  return images;
}

// ---------------------------------------------------------------------------------------- images
/** uint8 NHWC pixels from float NCHW images, the runtime's rule in float32: clip(floor((x - low) * scale + 0.5)). */
export function toPixels(images, [n, c, h, w], low = -1, high = 1) {
  const scale = Math.fround(255 / (high - low));
  const lo = Math.fround(low);
  const out = new Uint8Array(n * h * w * c);
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      for (let p = 0; p < h * w; p++) {
        const x = images[(b * c + ch) * h * w + p];
        const v = Math.fround(Math.fround(Math.fround(x - lo) * scale) + 0.5);
        out[(b * h * w + p) * c + ch] = v <= 0 ? 0 : v >= 255 ? 255 : Math.floor(v);
      }
    }
  }
  return out;
}

/** The model's input size z_dim, as its graph declares it (onnxruntime-web >= 1.22 exposes input metadata). */
function zDimOf(session) {
  const meta = session.inputMetadata?.[0];
  const dim = meta?.shape?.[1];
  if (Number.isInteger(dim) && dim > 0) return dim;
  throw new Error("cannot read z_dim from this session: pass { zDim } to generate()");
}

/** Run the generator on seeds: { pixels: Uint8Array [N, H, W, C], images: Float32Array [N, C, H, W], z, n,
 * height, width, channels }. options: ort (the onnxruntime namespace, default globalThis.ort), labels (one class
 * index per seed, conditional models), classes (the class names or their number, from modelInfo: labels are then
 * checked against it), truncation (psi), zDim (default: from the graph). */
export async function generate(session, seeds, options = {}) {
  const zDim = options.zDim ?? zDimOf(session);
  return run(session, latents(seeds, zDim, options.truncation ?? 1.0), seeds.length, options);
}

/** Run the generator on latents z (Float32Array [n * zDim]: from latents(), or mixed from them, as an
 * interpolation does). The pixels are toPixels of the model's images, in its outputRange (options.outputRange,
 * from modelInfo; default [-1, 1]): the rule the Python runtime applies, so a file whose own `pixels` output
 * disagrees cannot change them. Non-finite images, or images of another shape than declared, are an error. */
export async function run(session, z, n, options = {}) {
  const { labels = null, ort = globalThis.ort, outputRange = [-1, 1] } = options;
  if (!ort?.Tensor) throw new Error("gankit needs onnxruntime: pass { ort } (import * as ort from 'onnxruntime-web')");
  if (!Number.isInteger(n) || n < 0 || (n === 0 ? z.length !== 0 : z.length % n !== 0)) {
    throw new RangeError(`z must hold n latents, got ${z.length} values for n = ${n}`);
  }
  const contract = contractOf(session);
  const declared = session.inputMetadata?.[0]?.shape?.[1];
  if (n > 0 && Number.isInteger(declared) && z.length / n !== declared) {
    throw new RangeError(`this model takes latents of ${declared} values (zDim), got ${z.length / n}`);
  }
  const [low, high] = parseRange(Array.isArray(outputRange) ? outputRange.join(",") : outputRange);
  const count = classCount(options);
  if (contract.conditional) checkLabels(labels, n, count);
  else if (labels) throw new RangeError("this model is unconditional: it takes no labels");
  const [channels, height, width] = contract.dims ?? [0, 0, 0];
  if (n === 0) return { pixels: new Uint8Array(0), images: new Float32Array(0), z, n, height, width, channels };
  const images = await runChecked(session, ort, z, n, labels, contract.dims);
  const [, c, h, w] = images.dims;
  const pixels = toPixels(images.data, images.dims, low, high);
  return { pixels, images: images.data, z, n, height: h, width: w, channels: c };
}

/** Image `index` of a generate() result as RGBA bytes (grey replicated), for an ImageData or a canvas. */
export function toRGBA(result, index) {
  const { pixels, height, width, channels } = result;
  const size = height * width;
  const rgba = new Uint8ClampedArray(size * 4);
  const base = index * size * channels;
  for (let p = 0; p < size; p++) {
    for (let k = 0; k < 3; k++) rgba[p * 4 + k] = pixels[base + p * channels + (channels === 3 ? k : 0)];
    rgba[p * 4 + 3] = 255;
  }
  return rgba;
}

/** Image `index` of a generate() result as an ImageData (browsers). */
export function toImageData(result, index) {
  return new ImageData(toRGBA(result, index), result.width, result.height);
}

/** For tests: the pieces behind latents(). */
export const internals = { gaussian };
