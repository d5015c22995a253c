// Types of gankit.js. `ort` is the onnxruntime namespace the caller imports (onnxruntime-web or onnxruntime-node);
// only the few members gankit uses are declared, so either package fits.

/** The parts of an onnxruntime namespace that gankit uses. */
export interface Ort {
  Tensor: new (type: "float32" | "int64", data: Float32Array | BigInt64Array, dims: readonly number[]) => unknown;
}

/** The parts of an onnxruntime InferenceSession that gankit uses. */
export interface Session {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata?: readonly unknown[];
  readonly outputMetadata?: readonly unknown[];
  run(feeds: Record<string, unknown>, fetches: readonly string[]): Promise<Record<string, unknown>>;
}

export interface GenerateOptions {
  /** The onnxruntime namespace (default: globalThis.ort). */
  ort?: Ort;
  /** Class-conditional models: one class index per seed, integers in [0, classes). */
  labels?: readonly number[] | null;
  /** The class names (modelInfo(bytes).classes) or their number; required for a class-conditional model. */
  classes?: readonly string[] | number | null;
  /** [low, high] of the model's images (modelInfo(bytes).outputRange; default [-1, 1]). */
  outputRange?: readonly [number, number] | readonly number[];
  /** psi: latents shrink toward the mean, z' = psi * z (1 = off). */
  truncation?: number;
  /** The latent size (default: read from the session's input metadata). */
  zDim?: number;
}

export interface GenerateResult {
  /** uint8 [n, height, width, channels]: the bytes `gankit generate` writes for the same seeds. */
  pixels: Uint8Array;
  /** float32 [n, channels, height, width] in [-1, 1]. */
  images: Float32Array;
  /** float32 [n, zDim]: the latents. */
  z: Float32Array;
  n: number;
  height: number;
  width: number;
  channels: number;
}

export interface ModelInfo {
  /** Label i is classes[i]; [] for an unconditional model. */
  classes: string[];
  /** [low, high] of the model's images (metadata output_range; [-1, 1] when absent). */
  outputRange: [number, number];
  /** Every metadata_props entry of the file. */
  metadata: Record<string, string>;
}

/** float32 [seeds.length * zDim]: row i is numpy.random.RandomState(seeds[i]).randn(zDim).astype(float32), bit for
 * bit but for the one-ulp caveat that gankit.js states (a C library's log that is not correctly rounded). */
export function latents(seeds: readonly number[], zDim?: number, truncation?: number): Float32Array;
/** Images of an exported generator for seeds (and labels): the same pixels as `gankit generate`. */
export function generate(session: Session, seeds: readonly number[], options?: GenerateOptions): Promise<GenerateResult>;
/** The generator on latents z (n rows), e.g. mixed from two seeds' latents. */
export function run(session: Session, z: Float32Array, n: number, options?: GenerateOptions): Promise<GenerateResult>;
/** "0-99,200,300-310" -> the seeds, as `gankit generate --seeds` reads them; at most `limit` (default 1,000,000). */
export function parseSeeds(text: string, limit?: number): number[];
/** A model file's metadata_props. */
export function readMetadata(bytes: Uint8Array | ArrayBuffer): Record<string, string>;
/** A gankit export's class names and metadata. */
export function modelInfo(bytes: Uint8Array | ArrayBuffer): ModelInfo;
/** uint8 NHWC pixels from float NCHW images: clip(floor((x - low) * 255 / (high - low) + 0.5), 0, 255) in float32. */
export function toPixels(images: Float32Array, dims: readonly number[], low?: number, high?: number): Uint8Array;
/** Image `index` of a result as RGBA bytes (grey replicated). */
export function toRGBA(result: GenerateResult, index: number): Uint8ClampedArray;
/** Image `index` of a result as an ImageData (browsers). */
export function toImageData(result: GenerateResult, index: number): ImageData;
/** The natural log, correctly rounded (used near float32 rounding boundaries). */
export function crLog(x: number): number;
/** Whether a float64 lies within a few ulps of a float32 rounding boundary. */
export function nearBoundary(v: number): boolean;
