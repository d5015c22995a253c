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
    (inp,), (outp,) = model.graph.input, model.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert inp.name == "z" and dims(inp)[1] == 100 and isinstance(dims(inp)[0], str)
    assert outp.name == "images" and dims(outp)[1:] == [1, 28, 28] and dims(outp)[0] == dims(inp)[0]
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
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("\x1b[96mbad\x1b[0m op")))
    with pytest.raises(GankitError, match=r"torch.onnx.export failed: bad op$"):
        export(run_dir, tmp_path / "g.onnx")
    assert list(tmp_path.iterdir()) == []
