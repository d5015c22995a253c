"""Generator -> one self-contained ONNX file, verified against torch before it is kept.

The file takes z float32 [N, z_dim] (N dynamic; and labels int64 [N] when conditional) and gives images
float32 [N, C, H, W] in [-1, 1] and pixels uint8 [N, H, W, C], the runtime's own conversion of images done in
the graph (add_pixels), so that any language gets image bytes; its metadata_props carry everything else the
runtime needs (see gankit_runtime.contract).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from gankit_runtime import GankitError, Generator, latents_for_seeds, to_uint8
from gankit_runtime import contract as meta
from gankit_runtime.files import atomic_path, prepare_output_file, refuse_overlap, sha256_of
from torch import nn

from . import __version__
from .checkpoint import checkpoint_file, load_checkpoint
from .config import ModelConfig
from .models import build_models
from .runfolder import TRAINING_IMAGES

RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
PARITY_BATCHES = (1, 2, 64)


def load_generator(path: Path) -> tuple[nn.Module, ModelConfig, dict]:
    """(generator in eval mode, its config, the checkpoint dict) from a run folder or checkpoint."""
    state = load_checkpoint(path)
    if not isinstance(state.get("model_config"), dict) or not isinstance(state.get("generator"), dict):
        raise GankitError(f"{path} is not a complete gankit checkpoint (no model config or generator weights)")
    cfg = ModelConfig.from_dict(state["model_config"])
    g, _ = build_models(cfg)
    try:  # the EMA generator, when the run kept one: that is the one to use
        g.load_state_dict(state.get("generator_ema", state["generator"]))
    except (RuntimeError, TypeError, AttributeError, KeyError) as e:
        raise GankitError(f"checkpoint weights do not fit its model config: {str(e).splitlines()[0][:200]}") from None
    return g.eval(), cfg, state


def onnx_program(
    model: nn.Module,
    examples: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    metadata: dict[str, str],
):
    """torch's dynamo exporter with one dynamic batch dimension shared by all inputs, metadata set, quietly.

    The exporter logs progress and unrelated registry warnings (torchvision ops); they stay out of
    the user's terminal. `examples` have a batch of 2: a dynamic dimension cannot come from a size-1 one.
    """
    args = list(inspect.signature(model.forward).parameters)[: len(examples)]
    batch = torch.export.Dim("batch")
    quiet = io.StringIO()
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        logger.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(
                model.eval(),
                tuple(examples),
                dynamo=True,
                input_names=input_names,
                output_names=output_names,
                verbose=False,
                dynamic_shapes={arg: {0: batch} for arg in args},
            )
        except Exception as e:
            cause: BaseException | None = e
            while cause is not None:  # torch wraps a Ctrl-C inside the exporter into its own error
                if isinstance(cause, KeyboardInterrupt):
                    raise KeyboardInterrupt from None
                cause = cause.__cause__ or cause.__context__
            first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines()[0][:300]  # no terminal colour codes
            raise GankitError(f"torch.onnx.export failed: {first}") from e
        finally:
            logger.setLevel(level)
    if program is None:  # torch returns None only for the legacy exporter (dynamo=False)
        raise GankitError("torch.onnx.export gave no program")
    program.model.metadata_props.update(metadata)
    return program


def to_onnx(g: nn.Module, cfg: ModelConfig, path: Path, metadata: dict[str, str], pixels: bool = True) -> None:
    """The generator as one file (weights inside): input z [N, z_dim] (and labels int64 [N] when
    conditional), outputs images [N, C, H, W] and (pixels=True) pixels uint8 [N, H, W, C]."""
    if cfg.conditional:
        program = onnx_program(
            g, (torch.zeros(2, cfg.z_dim), torch.tensor([0, 1])), ["z", "labels"], ["images"], metadata
        )
    else:
        program = onnx_program(g, (torch.zeros(2, cfg.z_dim),), ["z"], ["images"], metadata)
    program.save(str(path), external_data=False)
    if pixels:
        import onnx

        model = onnx.load(str(path))
        add_pixels(model)
        onnx.save(model, str(path))


def add_pixels(model, low: float = -1.0, high: float = 1.0) -> None:
    """Give an exported generator its `pixels` output: uint8 [N, H, W, C] = clip(floor((images - low) * 255 /
    (high - low) + 0.5), 0, 255), in float32 step by step exactly as gankit_runtime.images.to_uint8 computes it
    (so the bytes are equal on the CPU), then NHWC. Standard operators only; images stays as it is."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    images = graph.output[0]  # the contract's first output, whatever its name (checked by the runtime on load)
    dims = images.type.tensor_type.shape.dim
    consts = {
        "gankit_low": low,
        "gankit_scale": 255.0 / (high - low),
        "gankit_half": 0.5,
        "gankit_zero": 0.0,
        "gankit_max": 255.0,
    }
    graph.initializer.extend(numpy_helper.from_array(np.array(v, np.float32), k) for k, v in consts.items())
    graph.node.extend(
        [
            helper.make_node("Sub", [images.name, "gankit_low"], ["gankit_shifted"], name="pixels_shift"),
            helper.make_node("Mul", ["gankit_shifted", "gankit_scale"], ["gankit_scaled"], name="pixels_scale"),
            helper.make_node("Add", ["gankit_scaled", "gankit_half"], ["gankit_rounded"], name="pixels_half"),
            helper.make_node(
                "Clip", ["gankit_rounded", "gankit_zero", "gankit_max"], ["gankit_clipped"], name="pixels_clip"
            ),
            helper.make_node("Floor", ["gankit_clipped"], ["gankit_floor"], name="pixels_floor"),
            helper.make_node("Cast", ["gankit_floor"], ["gankit_bytes"], to=TensorProto.UINT8, name="pixels_cast"),
            helper.make_node("Transpose", ["gankit_bytes"], ["pixels"], perm=[0, 2, 3, 1], name="pixels_nhwc"),
        ]
    )
    batch = dims[0].dim_param or "batch"
    graph.output.append(
        helper.make_tensor_value_info(
            "pixels", TensorProto.UINT8, [batch, dims[2].dim_value, dims[3].dim_value, dims[1].dim_value]
        )
    )
    meta_props = {p.key: p for p in model.metadata_props}
    if meta.FORMAT in meta_props:
        meta_props[meta.FORMAT].value = meta.FORMAT_VERSION


@dataclass
class ParityReport:
    max_abs: dict[int, float]  # batch size -> max |torch - onnxruntime| over the float outputs
    pixels_off: dict[int, int]  # batch size -> uint8 pixels that differ
    pixels_max_diff: int  # the largest uint8 difference seen
    pixels: dict[int, int]  # batch size -> pixels compared

    @property
    def worst(self) -> float:
        return max(self.max_abs.values())


def parity(
    g: nn.Module, onnx_path: Path, batch_sizes=PARITY_BATCHES, device: str = "cpu", first_seed: int = 0
) -> ParityReport:
    """torch eager (eval mode) against the runtime on the same seeds, at each batch size."""
    try:
        runtime = Generator(onnx_path, device=device)
    except GankitError as e:  # the pixels probe, a NaN: about the export, not its temporary's name
        raise GankitError(f"{str(e).replace(str(onnx_path), 'the exported model')}; nothing exported") from None
    report = ParityReport({}, {}, 0, {})
    for n in batch_sizes:
        z = latents_for_seeds(range(first_seed, first_seed + n), runtime.info.z_dim)
        labels = np.arange(n, dtype=np.int64) % len(runtime.classes) if runtime.conditional else None
        with torch.no_grad():
            ref = g.eval()(torch.from_numpy(z), None if labels is None else torch.from_numpy(labels)).numpy()
        if not np.isfinite(ref).all():
            raise GankitError("the generator gives NaN or infinite values (a diverged run?): nothing exported")
        got = runtime.run(z, labels)
        if runtime.info.pixels_name:  # the graph's pixels are the runtime's conversion of its images, byte for byte
            images, pixels = runtime._checked(z, labels, pixels=True)
            if not np.array_equal(pixels, to_uint8(images)):
                raise GankitError(
                    "the exported pixels output differs from the runtime's conversion of images: nothing exported"
                )
        report.max_abs[n] = float(np.abs(got - ref).max())
        diff = np.abs(to_uint8(got).astype(np.int16) - to_uint8(ref).astype(np.int16))
        report.pixels_off[n] = int((diff > 0).sum())
        report.pixels[n] = diff.size
        report.pixels_max_diff = max(report.pixels_max_diff, int(diff.max()))
    return report


def check_graph(path: Path) -> None:
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise GankitError(f"exported model fails onnx.checker: {str(e).splitlines()[0][:300]}") from None
    random_ops = {n.op_type for n in model.graph.node} & RANDOM_OPS
    if random_ops:
        raise GankitError(
            f"exported model has random operators {sorted(random_ops)}: its output would not depend on z alone"
        )


def upgrade(model_path: Path, out: Path, log=None, force: bool = True) -> None:
    """A format-1 export (images only) -> format 2 (images and pixels), its graph otherwise untouched, checked:
    the new file's pixels equal the runtime's conversion of its images, and its images are the old file's."""
    import onnx

    log = log or sys.stderr
    refuse_overlap(out, "--out", {"the model this command reads": model_path})
    old = Generator(model_path)
    if old.info.pixels_name:
        raise GankitError(
            f"{model_path} already has a pixels output (gankit.format {old.info.metadata.get(meta.FORMAT, '?')})"
        )
    out = prepare_output_file(Path(out), force=force)
    try:
        model = onnx.load(str(model_path))
    except Exception as e:  # noqa: BLE001 - protobuf's own errors
        raise GankitError(f"{model_path} cannot be read by onnx: {str(e)[:200]}") from None
    if "pixels" in {o.name for o in model.graph.output} | {n.name for n in model.graph.input}:
        raise GankitError(f"{model_path} already names a tensor 'pixels': it cannot be given gankit's pixels output")
    add_pixels(model, *old.info.output_range)
    try:
        with atomic_path(out) as tmp:
            onnx.save(model, str(tmp))
            try:
                new = Generator(tmp)
            except GankitError as e:  # name the file the user asked for, not its temporary
                raise GankitError(str(e).replace(str(tmp), str(out))) from None
            z = old.latents(range(256))
            labels = np.arange(256) % len(old.classes) if old.conditional else None
            images, pixels = new._checked(z, None if labels is None else labels.astype(np.int64), pixels=True)
            if not (
                np.array_equal(images, old.run(z, labels))
                and np.array_equal(pixels, to_uint8(images, *old.info.output_range))
            ):
                raise GankitError("the upgraded model does not reproduce the original: nothing written")
    except OSError as e:  # a full disk
        raise GankitError(f"cannot write {out}: {e.strerror or e}; nothing written") from None
    print(f"wrote {out}: {model_path} with a pixels output (gankit.format {meta.FORMAT_VERSION})", file=log)


def export(run: Path, out: Path, atol: float = 1e-4, log=None, force: bool = True) -> ParityReport:
    """Export the generator of a run folder or checkpoint to `out`, verified; nothing is left on failure.
    force False: an existing `out` is refused (a shipped model, another run's export), never replaced."""
    log = log or sys.stderr
    if not atol > 0:
        raise GankitError(f"atol must be positive, got {atol}")
    refuse_overlap(out, "--out", {"the checkpoint this command reads": checkpoint_file(run)})
    out = prepare_output_file(Path(out), force=force)
    g, cfg, state = load_generator(run)
    metadata = {
        meta.FORMAT: meta.FORMAT_VERSION,
        meta.MODEL_KIND: cfg.kind,
        meta.Z_DIM: str(cfg.z_dim),
        meta.CHANNELS: str(cfg.channels),
        meta.HEIGHT: str(cfg.size),
        meta.WIDTH: str(cfg.size),
        meta.OUTPUT_RANGE: "-1,1",
        meta.LATENT: meta.LATENT_FORMULA,
        meta.DATASET: str(state.get("dataset", "")),
        meta.TRAINING_STEPS: str(state.get("step", 0)),
        meta.PACKAGE_VERSION: __version__,
        meta.CHECKPOINT_SHA256: sha256_of(checkpoint_file(run)),
        meta.CONFIG: json.dumps(cfg.to_dict(), sort_keys=True),
        "ema": "true" if "generator_ema" in state else "false",
    }
    recorded = checkpoint_file(run).parent / TRAINING_IMAGES
    if recorded.is_file():  # trained on an image folder: which images, so that a test set can be checked against them
        digests = sorted({line[:16] for line in recorded.read_text().split() if len(line) == 64})
        if len(digests) <= meta.TRAINING_IMAGES_MAX:
            metadata[meta.TRAINING_IMAGES] = ",".join(digests)
    if cfg.conditional:
        classes = [str(c) for c in state.get("classes", [])]
        if len(classes) != cfg.num_classes:
            raise GankitError(f"checkpoint names {len(classes)} classes but its model has {cfg.num_classes}")
        for c in classes:
            problem = meta.class_name_problem(c)
            if problem:
                raise GankitError(f"class name {c[:40]!r} {problem}: rename that class folder and train again")
        metadata[meta.CLASSES] = json.dumps(classes)
    try:
        with atomic_path(out) as tmp:
            to_onnx(g, cfg, tmp, metadata)
            check_graph(tmp)
            report = parity(g, tmp)
            for n in PARITY_BATCHES:
                print(
                    f"parity batch {n:>3}: max |torch - onnxruntime| = {report.max_abs[n]:.2e}, "
                    f"uint8 pixels off: {report.pixels_off[n]} of {report.pixels[n]}",
                    file=log,
                )
            if not report.worst <= atol:  # written so that NaN fails too
                raise GankitError(
                    f"export rejected: torch and onnxruntime differ by {report.worst:.2e} "
                    f"> atol {atol:g}; nothing written"
                )
    except OSError as e:
        raise GankitError(f"could not write {out}: {e.strerror or e}") from None
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {cfg.description} {cfg.channels}x{cfg.size}x{cfg.size}, "
        f"step {state.get('step', 0)})",
        file=log,
    )
    return report
