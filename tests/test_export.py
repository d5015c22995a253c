import hashlib
import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from gankit.checkpoint import save_checkpoint
from gankit.export import RANDOM_OPS, export
from gankit_runtime import GankitError, Generator
from helpers import CONFIGS, trainer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    save_checkpoint(trainer(CONFIGS["dcgan28"], steps=2).state_dict(), d / "checkpoint.pt")
    return d


def test_export_is_one_verified_self_contained_file(run_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "g.onnx"
    (tmp_path / "sub").mkdir()
    report = export(run_dir, out)
    assert report.worst < 1e-4 and set(report.max_abs) == {1, 2, 64}
    assert "max |torch - onnxruntime|" in capsys.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == ["g.onnx"]  # no .onnx.data, no temporary file

    model = onnx.load(str(out))
    (inp,), (outp, pixels) = model.graph.input, model.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert inp.name == "z" and dims(inp)[1] == 100 and isinstance(dims(inp)[0], str)
    assert outp.name == "images" and dims(outp)[1:] == [1, 28, 28] and dims(outp)[0] == dims(inp)[0]
    assert pixels.name == "pixels" and dims(pixels) == [dims(inp)[0], 28, 28, 1]
    assert pixels.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert not {n.op_type for n in model.graph.node} & RANDOM_OPS

    props = {p.key: p.value for p in model.metadata_props}
    assert props["checkpoint_sha256"] == hashlib.sha256((run_dir / "checkpoint.pt").read_bytes()).hexdigest()
    assert props["training_steps"] == "2" and props["dataset"] == "synthetic" and props["model_kind"] == "dcgan"
    assert (props["z_dim"], props["channels"], props["height"], props["width"]) == ("100", "1", "28", "28")
    assert json.loads(props["config"])["width"] == 32 and props["output_range"] == "-1,1"

    # The file alone is enough: copied elsewhere, the runtime uses it.
    lonely = tmp_path / "elsewhere" / "copy.onnx"
    lonely.parent.mkdir()
    shutil.copy(out, lonely)
    assert Generator(lonely).generate([0, 1]).shape == (2, 28, 28, 1)


def test_export_refuses_beyond_tolerance_and_leaves_nothing(run_dir, tmp_path):
    out = tmp_path / "g.onnx"
    with pytest.raises(GankitError, match="export rejected"):
        export(run_dir, out, atol=1e-12)
    assert list(tmp_path.iterdir()) == []


def test_export_uses_eval_mode_batch_norm(run_dir, tmp_path):
    # The export must use batch norm's running statistics (eval mode), not each batch's own (train mode):
    # the runtime's output equals torch in eval mode and is far from torch in train mode on the same latents.
    from gankit.export import load_generator

    out = tmp_path / "g.onnx"
    export(run_dir, out)
    g, _, _ = load_generator(run_dir)
    z = np.random.RandomState(0).randn(8, 100).astype(np.float32)
    got = Generator(out).run(z)
    with torch.no_grad():
        eval_mode = g.eval()(torch.from_numpy(z)).numpy()
        train_mode = g.train()(torch.from_numpy(z)).numpy()
    assert np.abs(got - eval_mode).max() < 1e-4
    assert np.abs(got - train_mode).max() > 100 * np.abs(got - eval_mode).max() + 1e-3


def test_ctrl_c_inside_torch_s_exporter_stays_an_interruption(run_dir, tmp_path, monkeypatch):
    def interrupted_export(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:  # what torch.export does: its own error, the interrupt as its cause
            raise RuntimeError("\x1b[96mFailed to export the model with torch.export\x1b[0m") from e

    monkeypatch.setattr(torch.onnx, "export", interrupted_export)
    with pytest.raises(KeyboardInterrupt):
        export(run_dir, tmp_path / "g.onnx")
    monkeypatch.setattr(
        torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("\x1b[96mbad\x1b[0m op"))
    )
    with pytest.raises(GankitError, match=r"torch.onnx.export failed: bad op$"):
        export(run_dir, tmp_path / "g.onnx")
    assert list(tmp_path.iterdir()) == []


def test_the_pixels_output_rounds_exactly_as_the_runtime(tmp_path):
    """pixels = clip(floor((x + 1) * 127.5 + 0.5), 0, 255) in float32, NHWC: byte for byte the runtime's to_uint8,
    at every rounding boundary (each k - 0.5 level and its float32 neighbours), beyond the range, and at +-1."""
    from gankit_runtime import to_uint8
    from tiny_models import passthrough

    g = Generator(passthrough(tmp_path / "p.onnx", side=16))
    levels = (np.arange(257, dtype=np.float32) - np.float32(0.5)) / np.float32(127.5) - np.float32(1)
    values = np.concatenate(
        [
            levels,
            np.nextafter(levels, np.float32(-2)),
            np.nextafter(levels, np.float32(2)),
            np.float32([-1, 1, -1.5, 1.5, 0, -0.0, 1e-30, 3.0e38, -3.0e38]),
        ]
    )
    rng = np.random.default_rng(0)
    values = np.concatenate([values, rng.uniform(-1.1, 1.1, 256 * 64 - len(values)).astype(np.float32)])
    z = values.reshape(64, 256)
    images, pixels = g._checked(z, None, pixels=True)
    assert pixels.shape == (64, 16, 16, 1) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, to_uint8(images))
    assert len(np.unique(pixels)) == 256


def test_a_format_1_export_is_upgraded_and_still_works_as_it_is(tmp_path, capsys):
    from conftest import ROOT, call

    old = ROOT / "tests" / "fixtures" / "mnist-dcgan-format1.onnx"
    g = Generator(old)
    assert g.info.pixels_name is None and g.info.metadata["gankit.format"] == "1"
    rc, _ = call(capsys, "export", old, "--out", tmp_path / "new.onnx")
    new = Generator(tmp_path / "new.onnx")
    assert rc == 0 and new.info.pixels_name == "pixels" and new.info.metadata["gankit.format"] == "2"
    np.testing.assert_array_equal(new.generate(range(300)), g.generate(range(300)))
    np.testing.assert_array_equal(new.run(new.latents(range(8))), g.run(g.latents(range(8))))
