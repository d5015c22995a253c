// Type-checked in CI (tsc -p test/tsconfig.json): what a TypeScript user of the package writes.
import * as ort from "onnxruntime-web";
import { generate, latents, modelInfo, parseSeeds, toImageData, type GenerateResult } from "../gankit.js";

export async function sevens(bytes: Uint8Array, canvas: HTMLCanvasElement): Promise<GenerateResult> {
  const session = await ort.InferenceSession.create(bytes);
  const { classes, outputRange } = modelInfo(bytes);
  const seeds = parseSeeds("0-7");
  const result = await generate(session, seeds, { ort, labels: seeds.map(() => classes.indexOf("7")), classes, outputRange });
  canvas.getContext("2d")?.putImageData(toImageData(result, 0), 0, 0);
  const z: Float32Array = latents(seeds, 100, 0.8);
  console.log(z.length, result.pixels.length);
  return result;
}
