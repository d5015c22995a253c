"""The long tail: does the README's rare-class recipe give data that helps the rare classes, beyond rebalancing?

    python bench/longtail.py [--data mnist] [--seeds 0,1,2] [--head 1000] [--tail 20] [--work DIR]

The split: 5 head classes of --head real training images each and 5 tail classes of --tail each (which 5 are rare
is drawn per subset seed, so no digit's own difficulty decides the result), written as a folder of class
sub-folders, as a user has it.

The generator is the README's recipe as printed: its `gankit train --data ~/my-digits ...` line, read from
README.md (the line after <!-- rare-class-recipe -->), run on that folder, then `gankit export`. Then one fixed
classifier (gankit.classifier.DigitClassifier, --clf-steps batches of 128, Adam, one-cycle, 2-pixel shifts) is trained on
  (a) real: the imbalanced set as it is
  (b) oversampled: the tail's images repeated to the head's count
  (c) weighted: the real set, cross-entropy weighted by inverse class frequency
  (d) generated top-up: each tail class topped up to the head's count with generated images
  (e) filtered top-up: as (d), keeping only generated images that (b)'s classifier reads as the class asked for
  (f) mixed: each tail class at the head's count, --real-share of it its real images repeated, the rest generated
  (h) weighted mix: the real set and (d)'s generated images, the loss weighted as in (c) (each class weighs the
      same) with 1 - --real-share of a tail class's weight moved onto its generated images: check-augmentation's
      "real + generated" (gankit.augcheck.mixed_weights)
  (g) oracle: each tail class topped up with real training images the subset does not hold (the ceiling)
and measured on the real test split (all 10,000): balanced accuracy, tail recall, head recall. (d)-(h) are paired
with the best of (a)-(c) by subset seed: mean and 95% t interval (ddof=1); and the share of the gap between the best
rebalancing and the oracle that each use of the generated set closes. (f) is to (b) and (h) is to (c) what
adding the generated images to a rebalancing changes.

--remedy="WORDS" (repeatable; the = keeps WORDS from reading as options: --remedy="--transfer latent") trains one
more generator per remedy, the recipe's command with WORDS added (a later option replaces the recipe's), on the same
folder; (d), (e), (f) and (h) are measured with its images too, and its training time is printed as a ratio to the
recipe's.

Then the check a user runs, as printed: `gankit check-augmentation --real FOLDER --test TEST --generated SYNTH
--model MODEL` at its defaults, where SYNTH is `gankit generate MODEL --per-class N --class TAILS` and TEST 100 real
test images a class (never seen by the generator); its verdict is printed beside the benchmark's own result.
--check-steps and --check-real-share pass the check its --steps and --real-share.
--work DIR keeps each seed's folder, runs and generated set, and reuses a generator already trained there; and each
case's score (scores.json), reused when the case, the classifier settings and the generator's file are the same.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import shutil
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import numpy as np
import torch
from gankit.augcheck import T975, mixed_weights
from gankit.classifier import fit, predict
from gankit_runtime import Generator
from gankit_runtime.evaluation.datasets import CLASSES, default_data_dir, load_mnist_like
from gankit_runtime.evaluation.evaluate import CLASSIFIERS, FeatureExtractor
from gankit_runtime.files import sha256_of
from PIL import Image

import cli

CASES = (
    "a real",
    "b oversampled",
    "c weighted",
    "d generated top-up",
    "e filtered top-up",
    "f mixed",
    "g oracle",
    "h weighted mix",
)
CONTROLS = CASES[:3]  # rebalancing the real images
USES = (*CASES[3:6], CASES[7])  # the generated set's: (d), (e), (f), (h)
ORACLE = CASES[6]


def readme_recipe() -> list[str]:
    """The README's rare-class training command, as its words (`gankit train --data ~/my-digits ...`)."""
    text = (common.ROOT / "README.md").read_text()
    m = re.search(r"<!-- rare-class-recipe -->\s*```bash\n(.*?)```", text, re.S)
    lines = [ln for ln in (m.group(1).splitlines() if m else []) if ln.startswith("gankit train ")]
    if not lines:
        raise SystemExit(
            "README.md lost its rare-class recipe (the gankit train line after <!-- rare-class-recipe -->)"
        )
    return shlex.split(lines[0])[1:]


def recipe_command(folder: Path, run: Path, threads: int, gan_steps: int | None) -> list[str]:
    """The recipe's train command on `folder` into `run`: its data and out paths replaced, --threads added (a
    setting of this machine, not of the recipe); --gan-steps replaces --steps only for a quick look."""
    words = readme_recipe()
    words[words.index("--data") + 1] = str(folder)
    words[words.index("--out") + 1] = str(run)
    if gan_steps is not None:
        words[words.index("--steps") + 1] = str(gan_steps)
    return [*words, "--threads", str(threads)]


def long_tail_subset(y: np.ndarray, head: int, tail: int, tails: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the imbalanced subset, the tail classes): `tails` classes drawn at random get `tail` images."""
    rng = np.random.default_rng([seed, 28])
    rare = np.sort(rng.choice(10, tails, replace=False))
    pick = [rng.choice(np.flatnonzero(y == c), tail if c in rare else head, replace=False) for c in range(10)]
    return np.concatenate(pick), rare


def write_folder(folder: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """Images as PNGs in class sub-folders 0 ... 9, as a user's folder."""
    for c in range(10):
        (folder / str(c)).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(x, y)):
        Image.fromarray(image).save(folder / str(label) / f"{i:05d}.png")
    return folder


def copy_ratio(synth, synth_labels, xs, ys, x_test, y_test, rare, per_class: int = 200) -> float:
    """How close generated tail images lie to the tail's few training images, against how close real unseen images
    of the same class lie to them: the mean pixel distance to the nearest training image, generated over real.
    Near 1: the generator varies as the class does; well below 1: it mostly replays its training images."""
    ratios = []
    for c in rare:
        train = xs[ys == c].reshape(-1, 784).astype(np.float32)

        def nearest(images):
            d = ((images.reshape(-1, 784).astype(np.float32)[:, None] - train[None]) ** 2).sum(-1)
            return np.sqrt(d.min(1)).mean()

        ratios.append(nearest(synth[synth_labels == c][:per_class]) / nearest(x_test[y_test == c][:per_class]))
    return float(np.mean(ratios))


def recalls(model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    pred = predict(model, x)
    return np.array([(pred[y == c] == c).mean() for c in range(10)])


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="mnist", choices=["mnist", "fashion-mnist"])
    ap.add_argument("--seeds", default="0,1,2", help="subset seeds (also the classifiers' seeds)")
    ap.add_argument("--head", type=int, default=1000, help="real images of each head class")
    ap.add_argument("--tail", type=int, default=20, help="real images of each tail class")
    ap.add_argument("--tails", type=int, default=5, help="how many of the 10 classes are rare")
    ap.add_argument("--gan-steps", type=int, default=None, help="replace the recipe's --steps (a quick look only)")
    ap.add_argument("--clf-steps", type=int, default=1000, help="classifier steps of batch 128, every case")
    ap.add_argument("--real-share", type=float, default=0.5, help="(f), (h): the real images' share of a tail class")
    ap.add_argument("--candidates", type=int, default=2, help="(e): generated candidates per image kept")
    ap.add_argument("--check-steps", type=int, default=None, help="check-augmentation's --steps (default: its own)")
    ap.add_argument(
        "--check-real-share", type=float, default=None, help="check-augmentation's --real-share (default: its own)"
    )
    ap.add_argument("--remedy", action="append", default=[], help='recipe words to add: --remedy="--transfer latent"')
    ap.add_argument("--skip-check", action="store_true", help="no check-augmentation (classifier variants only)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--test", type=int, default=10000, help="score on the first N test images (a quick look)")
    ap.add_argument("--work", default=None, help="keep each seed's folder, run and generated set here (and reuse)")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args()
    if not 0 < args.real_share < 1:
        raise SystemExit(
            f"--real-share is a share of a tail class's real and generated images, in (0, 1), not {args.real_share}"
        )
    if args.test < 100:
        raise SystemExit(f"--test takes at least 100 test images, not {args.test}")
    return args


def run_name(remedy: str) -> str:
    """The run folder of the recipe ("run") or of the recipe plus a remedy ("run-transfer-latent")."""
    return "run" + "".join("-" + w.strip("-") for w in shlex.split(remedy))


def train_recipe(args, work: Path, xs: np.ndarray, ys: np.ndarray, remedy: str = "") -> tuple[Path, float]:
    """The README's recipe (plus a remedy's words) on the subset's folder: (the exported generator, minutes of
    training, export included); reused when --work already holds it."""
    run = work / run_name(remedy)
    onnx = run / "generator.onnx"
    if onnx.is_file():
        timing = run / "minutes.txt"
        return onnx, float(timing.read_text()) if timing.is_file() else float("nan")
    shutil.rmtree(run, ignore_errors=True)
    if not (work / "folder").is_dir():
        shutil.rmtree(work, ignore_errors=True)
        write_folder(work / "folder", xs, ys)
    folder = work / "folder"
    command = recipe_command(folder, run, args.threads, args.gan_steps) + shlex.split(remedy)
    print("  gankit " + " ".join(command), flush=True)
    start = time.perf_counter()
    if cli.main(command) != 0 or cli.main(["export", str(run)]) != 0:
        raise SystemExit("the recipe failed")
    minutes = (time.perf_counter() - start) / 60
    (run / "minutes.txt").write_text(f"{minutes:.3f}\n")
    return onnx, minutes


def user_check(args, work: Path, onnx: Path, rare: np.ndarray, need: int, x_test, y_test) -> dict:
    """check-augmentation as a user runs it, at its defaults: its verdict and figures, and its wall time."""
    synth, test, out = work / "synth", work / "test", work / "check.json"
    for path in (synth, out):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    if not test.is_dir():
        pick = np.concatenate([np.flatnonzero(y_test == c)[:100] for c in range(10)])
        write_folder(test, x_test[pick], y_test[pick])
    classes = ",".join(str(c) for c in rare)
    assert cli.main(["generate", str(onnx), "--per-class", str(need), "--class", classes, "--out", str(synth)]) == 0
    command = ["check-augmentation", "--real", str(work / "folder"), "--test", str(test), "--generated", str(synth)]
    command += ["--model", str(onnx), "--threads", str(args.threads), "--out", str(out)]
    command += ["--steps", str(args.check_steps)] if args.check_steps else []
    command += ["--real-share", str(args.check_real_share)] if args.check_real_share is not None else []
    start = time.perf_counter()
    if cli.main(command) != 0:
        raise SystemExit("check-augmentation failed")
    result = json.loads(out.read_text())
    return {"verdict": result["verdict"], "control": result["control"], "gain": result["gain_over_control"],
            "seconds": time.perf_counter() - start}  # fmt: skip


def generated_cases(remedy: str) -> tuple[str, ...]:
    """The cases that use a generator's images, (d), (e), (f) and (h), named for the remedy when there is one."""
    return USES if not remedy else tuple(f"{case} [{remedy}]" for case in USES)


class Scores:
    """Each case's score per seed, kept in --work's scores.json: a case is reused when it, the classifier settings,
    the settings it uses (--candidates for (e), --real-share for (f) and (h)) and (for the generated cases) the
    generator's file are the same."""

    def __init__(self, args, scratch: Path):
        self.path, self.args = scratch / "scores.json", args
        self.saved = json.loads(self.path.read_text()) if args.work and self.path.is_file() else {}

    def key(self, case: str, seed: int, onnx: Path | None) -> str:
        a = self.args
        made_by = sha256_of(onnx)[:16] if onnx is not None else "-"
        uses = {"e": f"cand{a.candidates}|", "f": f"real{a.real_share}|", "h": f"real{a.real_share}|"}  # (d): neither
        return f"{a.data}|{a.head}|{a.tail}|{a.tails}|seed{seed}|clf{a.clf_steps}|test{a.test}|{case}|" + (
            f"{uses.get(case[0], '')}{made_by}" if onnx is not None else "-"
        )

    def get(self, key: str):
        return self.saved.get(key)

    def put(self, key: str, row: dict) -> None:
        self.saved[key] = row
        if self.args.work:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.saved, indent=1))
            tmp.replace(self.path)


def main() -> None:
    args = arguments()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    arrays = load_mnist_like(args.data, default_data_dir())
    x_train, y_train, x_test, y_test = arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
    x_test, y_test = x_test[: args.test], y_test[: args.test]
    print(
        f"{args.data}: {10 - args.tails} head classes x {args.head}, {args.tails} tail classes x {args.tail}; "
        f"the README's recipe (gankit {' '.join(readme_recipe())}); remedies {args.remedy or 'none'}; classifier "
        f"{args.clf_steps} steps x 128; seeds {seeds}",
        flush=True,
    )
    remedies = ["", *args.remedy]
    cases = [*CONTROLS, *(c for r in remedies for c in generated_cases(r)), ORACLE]
    results: dict = {case: [] for case in cases}
    extra: dict = {k: {r: [] for r in remedies} for k in ("gan_minutes", "gan_test_tail", "copy_ratio")}
    extra |= {"tail_classes": [], "check": []}
    judge = FeatureExtractor(CLASSIFIERS[args.data])  # the shipped classifier, trained on all 60,000 images
    scratch = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="longtail-"))
    scores = Scores(args, scratch)
    for seed in seeds:
        pick, rare = long_tail_subset(y_train, args.head, args.tail, args.tails, seed)
        xs, ys = x_train[pick], y_train[pick]
        extra["tail_classes"].append(rare.tolist())
        work = scratch / f"{args.data}-{args.head}-{args.tail}-seed{seed}"

        def run(case: str, onnx: Path | None, make, weight: np.ndarray | None = None) -> None:
            """Score one case: `make()` gives its training set (x, y, and fields to keep beside its score, among
            them "sample_weight", the weight of each image in the loss, which is not kept); `weight`: per class."""
            key = scores.key(case, seed, onnx)
            row = scores.get(key)
            if row is None:
                x, y, *kept = make()
                per_image = kept[0].pop("sample_weight", None) if kept else None
                model = fit(x, y, args.clf_steps, seed=seed, class_weight=weight, sample_weight=per_image)
                r = recalls(model, x_test, y_test)
                row = {"balanced": float(r.mean()), "tail": float(r[rare].mean()),
                       "head": float(np.delete(r, rare).mean()), "per_class": r.tolist(), **(kept[0] if kept else {})}  # fmt: skip
                scores.put(key, row)
            results[case].append(row)
            print(f"seed {seed} {case}: balanced {row['balanced']:.2%}, tail {row['tail']:.2%}, head {row['head']:.2%}",
                  flush=True)  # fmt: skip

        onnx, minutes = train_recipe(args, work, xs, ys)
        tail = np.isin(ys, rare)
        run(CONTROLS[0], None, lambda: (xs, ys))
        repeat = np.where(tail, args.head // args.tail, 1)
        run(CONTROLS[1], None, lambda: (np.repeat(xs, repeat, axis=0), np.repeat(ys, repeat)))
        # torch's class weights, not mixed_weights' per-image ones: the same loss, but rounding that grows over 1,000
        # steps (MNIST tail 20 seed 0: tail recall 94.43 against 94.60), and (c)'s figures in the docs came from this
        run(CONTROLS[2], None, lambda: (xs, ys), weight=len(ys) / (10 * np.bincount(ys, minlength=10)))
        for remedy in remedies:
            onnx, minutes = (onnx, minutes) if not remedy else train_recipe(args, work, xs, ys, remedy)
            generated(args, run, remedy, onnx, minutes, seed, rare, xs, ys, x_test, y_test, judge, extra)
        unseen = np.setdiff1d(np.flatnonzero(np.isin(y_train, rare)), pick)
        need = args.head - args.tail
        more = np.concatenate([np.random.default_rng([seed, 42]).choice(unseen[y_train[unseen] == c], need,
                                                                        replace=False) for c in rare])  # fmt: skip
        run(ORACLE, None, lambda: (np.concatenate([xs, x_train[more]]), np.concatenate([ys, y_train[more]])))
        if not args.skip_check:
            onnx = work / "run" / "generator.onnx"
            extra["check"].append(user_check(args, work, onnx, rare, need, x_test, y_test))
            print(f"seed {seed} check-augmentation ({extra['check'][-1]['seconds']:.0f} s): "
                  f"{extra['check'][-1]['verdict']}", flush=True)  # fmt: skip
    report(args, results, extra, remedies)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results, **extra}, f, indent=1)
    if not args.work:
        shutil.rmtree(scratch, ignore_errors=True)


OVERSAMPLED: dict = {}  # subset seed -> the classifier of (b), which (e) filters with


def generated(args, run, remedy, onnx, minutes, seed, rare, xs, ys, x_test, y_test, judge, extra) -> None:
    """One generator's tail images: its copy ratio and GAN-test, and the cases that use them ((d)-(f))."""
    need = args.head - args.tail  # generated images per tail class for (d) and (e)
    labels = np.repeat(rare, need * args.candidates)
    synth = Generator(onnx, threads=args.threads).generate(np.tile(np.arange(need * args.candidates), len(rare)),
                                                           labels=labels)[..., 0]  # fmt: skip
    first = np.tile(np.arange(need * args.candidates) < need, len(rare))
    extra["gan_minutes"][remedy].append(minutes)
    extra["copy_ratio"][remedy].append(copy_ratio(synth[first], labels[first], xs, ys, x_test, y_test, rare))
    _, probs = judge(synth[first][..., None])
    extra["gan_test_tail"][remedy].append(float((probs.argmax(1) == labels[first]).mean()))
    print(
        f"seed {seed} {remedy or 'the recipe'}: tail classes {rare.tolist()}, GAN {minutes:.1f} min, GAN-test on the "
        f"tail {extra['gan_test_tail'][remedy][-1]:.2%}, copy ratio {extra['copy_ratio'][remedy][-1]:.2f}",
        flush=True,
    )
    top_up, kept, mixed, weighted_mix = generated_cases(remedy)
    run(top_up, onnx, lambda: (np.concatenate([xs, synth[first]]), np.concatenate([ys, labels[first]])))

    def filtered():
        if seed not in OVERSAMPLED:  # (b)'s classifier, refitted once a seed (the same seeded fit as (b))
            over = np.where(np.isin(ys, rare), args.head // args.tail, 1)
            OVERSAMPLED[seed] = fit(np.repeat(xs, over, axis=0), np.repeat(ys, over), args.clf_steps, seed=seed)
        agree = predict(OVERSAMPLED[seed], synth) == labels
        keep = agree & (np.concatenate([np.cumsum(agree[labels == c]) for c in rare]) <= need)
        return (np.concatenate([xs, synth[keep]]), np.concatenate([ys, labels[keep]]),
                {"kept_share": float(keep.sum() / (need * len(rare)))})  # fmt: skip

    run(kept, onnx, filtered)
    real_part = round(args.real_share * args.head)  # of a tail class: repeated real images, the rest generated
    reps = np.where(np.isin(ys, rare), max(1, real_part // args.tail), 1)
    some = np.tile(np.arange(need * args.candidates) < args.head - real_part, len(rare))
    run(mixed, onnx, lambda: (np.concatenate([np.repeat(xs, reps, axis=0), synth[some]]),
                                np.concatenate([np.repeat(ys, reps), labels[some]])))  # fmt: skip
    weights = mixed_weights(ys, labels[first], 10, args.real_share)  # as check-augmentation weighs real + generated
    run(weighted_mix, onnx, lambda: (np.concatenate([xs, synth[first]]), np.concatenate([ys, labels[first]]),
                                     {"sample_weight": weights}))  # fmt: skip


def paired(d: np.ndarray) -> str:
    """mean and 95% t interval (ddof=1) of paired differences, in points."""
    if len(d) < 2:
        return f"{100 * d.mean():+.2f} (one seed: no interval)"
    half = T975[len(d) - 2] * d.std(ddof=1) / math.sqrt(len(d))
    return f"{100 * d.mean():+.2f} [{100 * (d.mean() - half):+.2f}, {100 * (d.mean() + half):+.2f}]"


def report(args, results: dict, extra: dict, remedies: list[str]) -> None:
    def ms(values):
        return f"{100 * np.mean(values):.2f} +- {100 * np.std(values, ddof=1 if len(values) > 1 else 0):.2f}"

    print(f"\n{args.data}, {len(results[CONTROLS[0]])} subset seeds, tail {args.tail}; (e) keeps the images of (d) that"
          " the classifier of (b) reads as the class asked for")  # fmt: skip
    recipe = np.array(extra["gan_minutes"][""])
    for r in remedies:
        times = np.array(extra["gan_minutes"][r])
        ratio = f", {np.mean(times / recipe):.2f}x the recipe's time" if r else ""
        kept = np.mean([row.get("kept_share", np.nan) for row in results[generated_cases(r)[1]]])
        print(f"- {r or 'the recipe'}: {np.nanmean(times):.1f} min each{ratio}; GAN-test on the tail "
              f"{ms(extra['gan_test_tail'][r])}%, copy ratio {np.mean(extra['copy_ratio'][r]):.2f}; (e) kept "
              f"{kept:.0%}")  # fmt: skip
    print("| case | balanced accuracy | tail recall | head recall |\n|---|---|---|---|")
    for case, rows in results.items():
        print(f"| {case} | {ms([r['balanced'] for r in rows])} | {ms([r['tail'] for r in rows])} | "
              f"{ms([r['head'] for r in rows])} |")  # fmt: skip
    best = {k: max(CONTROLS, key=lambda c: np.mean([r[k] for r in results[c]])) for k in ("balanced", "tail")}
    print("\npaired against the best of (a)-(c), in points: mean [95% t interval]; tail gap closed = (case - best) /"
          " (oracle - best)")  # fmt: skip
    oracle = np.array([r["tail"] for r in results[ORACLE]])
    base_tail = np.array([r["tail"] for r in results[best["tail"]]])
    for case in list(results)[3:]:
        parts = []
        for key in ("balanced", "tail"):
            d = np.array([r[key] for r in results[case]]) - np.array([r[key] for r in results[best[key]]])
            parts.append(f"{key} {paired(d)} vs {best[key]}")
        gap = np.mean(np.array([r["tail"] for r in results[case]]) - base_tail) / max(1e-9, np.mean(oracle - base_tail))
        print(f"- {case}: " + "; ".join(parts) + (f"; tail gap closed {gap:.0%}" if case != ORACLE else ""))
    rare = sorted({c for tails in extra["tail_classes"] for c in tails})  # where each use wins or loses its points
    print("\ntail recall per class, mean over the seeds where the class is rare (%)")
    print(f"| case | {' | '.join(CLASSES[args.data][c] for c in rare)} |\n|---|{'---|' * len(rare)}")
    for case, rows in results.items():
        cells = [np.mean([row["per_class"][c] for row, t in zip(rows, extra["tail_classes"]) if c in t]) for c in rare]
        print(f"| {case} | " + " | ".join(f"{100 * v:.1f}" for v in cells) + " |")
    for r in remedies[1:]:  # the remedy against the recipe it is added to, the same use of the images
        print(f"\n{r} minus the recipe, tail recall in points, paired: mean [95% t interval] (per seed)")
        for mine, base in zip(generated_cases(r), generated_cases("")):
            d = np.array([m["tail"] - b["tail"] for m, b in zip(results[mine], results[base])])
            print(f"- {base}: {paired(d)} ({', '.join(f'{100 * x:+.2f}' for x in d)})")
    print("\n(h) minus (f): the generated images weighed in rather than the real ones repeated, paired, in points")
    for r in remedies:
        _, _, mixed, weighted_mix = generated_cases(r)
        parts = [f"{key} {paired(np.array([h[key] - f[key] for h, f in zip(results[weighted_mix], results[mixed])]))}"
                 for key in ("balanced", "tail")]  # fmt: skip
        print(f"- {r or 'the recipe'}: " + "; ".join(parts))
    if extra["check"]:
        print("\ncheck-augmentation at its defaults, per seed (its own control and paired gain):")
    for seed, check, d in zip(args.seeds.split(","), extra["check"], extra["tail_classes"]):
        print(f"- seed {seed} (tail {d}), {check['seconds']:.0f} s: {check['verdict']}")


if __name__ == "__main__":
    main()
