"""CUDA: what is asked of onnxruntime (checked anywhere, with a stand-in session), and parity on a real GPU
(skipped without one; `python bench/gpu_check.py` runs these and the GPU figures in one go)."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import ROOT, assert_one_line_error
from gankit.config import ModelConfig, TrainConfig
from gankit.train import train
from gankit_runtime import GankitError, Generator
from gankit_runtime import contract as runtime_contract

HAS_ORT_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
SHIPPED = [ROOT / "exported" / "mnist-dcgan.onnx", ROOT / "exported" / "mnist-cdcgan.onnx"]


class FakeSession:
    """Stands in for onnxruntime.InferenceSession: records what it was asked, runs on the 'providers' given."""

    asked: list = []

    def __init__(self, path, options, providers):
        FakeSession.asked.append(providers)
        self._providers = FakeSession.runs_on

    def get_providers(self):
        return self._providers


@pytest.fixture
def fake_cuda(monkeypatch):
    """onnxruntime with a CUDA provider listed, whose sessions run where FakeSession.runs_on says."""
    logged = []
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    monkeypatch.setattr(ort, "set_default_logger_severity", lambda level: logged.append(level))
    FakeSession.asked, FakeSession.runs_on = [], ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return logged


def test_cuda_sessions_run_without_tf32_unless_asked(fake_cuda):
    path = SHIPPED[0]
    runtime_contract.open_session(path, device="cuda:1")
    runtime_contract.open_session(path, device="cuda", tf32=True)
    (cuda_1, cpu), (cuda_0, _) = FakeSession.asked
    assert cuda_1 == ("CUDAExecutionProvider", {"device_id": 1, "use_tf32": 0}) and cpu == "CPUExecutionProvider"
    assert cuda_0 == ("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 1})
    assert fake_cuda and set(fake_cuda) == {4}  # onnxruntime's own log: fatal only (our one line says the rest)


def test_a_silent_fallback_to_the_cpu_is_an_error(fake_cuda):
    FakeSession.runs_on = ["CPUExecutionProvider"]
    with pytest.raises(GankitError, match="fell back"):
        runtime_contract.open_session(SHIPPED[0], device="cuda")


@pytest.mark.skipif(HAS_ORT_CUDA, reason="this onnxruntime has CUDA")
def test_cuda_asked_for_where_onnxruntime_has_none(capsys, tmp_path):
    import cli

    with pytest.raises(GankitError, match="no CUDA provider"):
        Generator(SHIPPED[0], device="cuda")
    rc = cli.main(["generate", str(SHIPPED[0]), "--device", "cuda", "--out", str(tmp_path / "o")])
    assert_one_line_error(capsys.readouterr().err, rc, "CUDA")
    if not torch.cuda.is_available():
        rc = cli.main(["train", "--device", "cuda", "--out", str(tmp_path / "r")])
        assert_one_line_error(capsys.readouterr().err, rc, "CUDA")
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------------ on a GPU
def cuda_generator(path, **kw):
    try:
        return Generator(path, device="cuda", **kw)
    except GankitError as e:
        pytest.skip(f"CUDA provider listed but unusable here: {e}")


def parity(path, seeds=4096, batch=512, tf32=False) -> dict:
    """CUDA against CPU on the same seeds: max abs difference, and uint8 pixels off (share, largest)."""
    gpu, cpu = cuda_generator(path, tf32=tf32), Generator(path)
    labels = np.arange(seeds) % len(cpu.classes) if cpu.conditional else None
    worst, off, most, total = 0.0, 0, 0, 0
    for start in range(0, seeds, batch):
        z = cpu.latents(range(start, start + batch))
        y = None if labels is None else labels[start : start + batch]
        a, b = gpu.run(z, y), cpu.run(z, y)
        worst = max(worst, float(np.abs(a - b).max()))
        d = np.abs(
            gpu.generate(range(start, start + batch), batch, y).astype(int)
            - cpu.generate(range(start, start + batch), batch, y).astype(int)
        )
        off, most, total = off + int((d > 0).sum()), max(most, int(d.max())), total + d.size
    return {"max_abs": worst, "pixels_off": off / total, "max_pixel_diff": most}


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_ORT_CUDA, reason="needs onnxruntime-gpu and a CUDA GPU")
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_models_on_cuda_match_the_cpu(path):
    p = parity(path)
    assert p["max_abs"] <= 1e-4 and p["max_pixel_diff"] <= 1 and p["pixels_off"] <= 1e-4, p


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_ORT_CUDA, reason="needs onnxruntime-gpu and a CUDA GPU")
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_cuda_images_do_not_depend_on_batch_size(path):
    gpu = cuda_generator(path)
    labels = np.arange(300) % 10 if gpu.conditional else None
    whole = gpu.generate(range(300), 300, labels)
    for batch in (1, 7, 64):
        np.testing.assert_array_equal(gpu.generate(range(300), batch, labels), whole)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("staged", [False, True], ids=["data-on-gpu", "pinned-staging"])
def test_cuda_training_with_bf16_autocast_and_pinned_staging(image_folder, tmp_path, monkeypatch, staged):
    import gankit.trainer

    if staged:  # the data set counts as too large for the GPU: batches go through the pinned staging buffer
        monkeypatch.setattr(gankit.trainer, "GPU_DATA_SHARE", 0.0)
        real_init = gankit.trainer.Trainer.__init__
        made = []

        def init(self, *args, **kwargs):
            real_init(self, *args, **kwargs)
            made.append(self._staging is not None)

        monkeypatch.setattr(gankit.trainer.Trainer, "__init__", init)
    model = ModelConfig(kind="dcgan", size=16, channels=3, width=8)
    cfg = TrainConfig(data=str(image_folder), batch_size=4, epochs=3, ema_kimg=0.05)
    ckpt = train(tmp_path / "r", model, cfg, max_steps=8, device="cuda")
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 8
    assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert all(0 < json.loads(line)["d_real"] < 1 for line in lines)
    if staged:
        assert made == [True]
