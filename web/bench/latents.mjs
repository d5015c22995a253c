// Seeds per second of latents() in Node: node web/bench/latents.mjs [seeds] [zDim]. bench/web.py runs it beside
// numpy's anchor.
import { latents } from "../gankit.js";

const n = Number(process.argv[2] ?? 200000);
const zDim = Number(process.argv[3] ?? 100);
const seeds = Array.from({ length: n }, (_, i) => 1000000 + i);
latents(seeds.slice(0, 20000), zDim); // warm-up: the JIT
let best = Infinity;
for (let r = 0; r < 3; r++) {
  const start = process.hrtime.bigint();
  latents(seeds, zDim);
  best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
}
console.log(JSON.stringify({ seeds: n, zDim, seconds: best, seedsPerSecond: n / best }));
