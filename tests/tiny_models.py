"""The tiny ONNX generators the tests run: real exports of narrow networks (cheap to run thousands of times), and
hand-made graphs that break the contract in one precise way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_EXPORTS: dict[tuple, bytes] = {}  # one torch export per network: the exporter takes seconds, a copy does not


def tiny_generator(
    path: Path,
    size: int = 16,
    channels: int = 1,
    width: int = 4,
    classes=None,
    metadata: dict | None = None,
    seed: int = 0,
    modes: int = 0,
    transfer: bool = False,
) -> Path:
    """An exported DCGAN with random weights (every seed, and class, still gives its own image); `classes`
    (names) makes it class-conditional, `modes` gives it modes read from z, `transfer` its classes as Gaussians in
    a latent (--transfer latent: random means and a random Cholesky factor, computed inside the graph). Metadata
    entries given replace the exporter's."""
    import onnx

    key = (size, channels, width, tuple(classes) if classes else None, seed, modes, transfer)
    if key not in _EXPORTS:
        import torch
        from gankit.config import ModelConfig
        from gankit.export import to_onnx
        from gankit.models import build_models

        torch.manual_seed(seed)
        cfg = ModelConfig(
            kind="dcgan",
            size=size,
            channels=channels,
            width=width,
            num_classes=len(classes) if classes else 0,
            modes=modes,
            transfer="latent" if transfer else "none",
        )
        g, _ = build_models(cfg)
        if transfer:
            g.join.means.normal_(0.0, 2.0)
            g.join.scale.copy_(torch.tril(0.3 * torch.randn(cfg.z_dim, cfg.z_dim)) + 0.5 * torch.eye(cfg.z_dim))
        to_onnx(g.eval(), cfg, path, {"classes": json.dumps(list(classes))} if classes else {})
        _EXPORTS[key] = Path(path).read_bytes()
    model = onnx.load_from_string(_EXPORTS[key])
    entries = {p.key: p for p in model.metadata_props}
    for name, value in (metadata or {}).items():
        if name in entries:
            entries[name].value = value
        else:
            model.metadata_props.add(key=name, value=value)
    onnx.save(model, str(path))
    return path


def shape_liar(path: Path, declared: int = 28, actual: int = 64) -> Path:
    """A graph that declares images [N, 1, declared, declared] but makes [N, 1, actual, actual] (the size comes
    from the data, so that onnxruntime's shape inference cannot see through it)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return numpy_helper.from_array(np.array(value), name)

    nodes = [
        helper.make_node("ReduceMean", ["z"], ["m"], keepdims=1, axes=[1]),
        helper.make_node("Reshape", ["m", "shape4"], ["m4"]),
        helper.make_node("ReduceMax", ["z"], ["zmax"], keepdims=0),
        helper.make_node("Mul", ["zmax", "zero"], ["z0"]),
        helper.make_node("Add", ["z0", "side"], ["sf"]),
        helper.make_node("Cast", ["sf"], ["si"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["si", "one"], ["s1"]),
        helper.make_node("Concat", ["ones", "s1", "s1"], ["big"], axis=0),
        helper.make_node("Expand", ["m4", "big"], ["e"]),
        helper.make_node("Tanh", ["e"], ["images"]),
    ]
    inits = [
        const("shape4", np.array([-1, 1, 1, 1], np.int64)),
        const("zero", np.float32(0)),
        const("side", np.float32(actual)),
        const("one", np.array([1], np.int64)),
        const("ones", np.array([1, 1], np.int64)),
    ]
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 100])
    out = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 1, declared, declared])
    model = helper.make_model(
        helper.make_graph(nodes, "liar", [z], [out], inits), opset_imports=[helper.make_opsetid("", 13)], ir_version=8
    )
    onnx.save(model, str(path))
    return path


def passthrough(path: Path, side: int = 16, pixels: bool = True) -> Path:
    """A 'generator' whose images are its z, reshaped: z [N, side * side] -> images [N, 1, side, side], so a test
    chooses the exact float values that the pixels output must round."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", side * side])
    out = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 1, side, side])
    shape = numpy_helper.from_array(np.array([-1, 1, side, side], np.int64), "shape")
    model = helper.make_model(
        helper.make_graph([helper.make_node("Reshape", ["z", "shape"], ["images"])], "pass", [z], [out], [shape]),
        opset_imports=[helper.make_opsetid("", 13)],
        ir_version=8,
    )
    if pixels:
        from gankit.export import add_pixels

        add_pixels(model)
    onnx.save(model, str(path))
    return path
