"""The runtime alone (numpy and onnxruntime; no torch, no training package, no Pillow), on the shipped models.

CI also runs this file (with tests/test_seeds.py) in an environment holding the oldest versions the runtime
declares (numpy 1.24, onnxruntime 1.18) and nothing else it could lean on, so the declared minimums are tested
ones and the runtime's own PNG encoder is all it needs.
"""

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, call, expect_error
from gankit_runtime import Generator, job_for, write_folder, write_npz
from gankit_runtime.evaluation.datasets import default_data_dir

# Recorded once with onnxruntime 1.32 (CPU): a model's pixels may move by one level between onnxruntime builds
# (rounding ties), not more, and rarely.
GOLDEN = np.load(Path(__file__).parent / "golden" / "shipped-images.npz")
DCGAN, CDCGAN = ROOT / "exported" / "mnist-dcgan.onnx", ROOT / "exported" / "mnist-cdcgan.onnx"
FORMAT1 = ROOT / "tests" / "fixtures" / "mnist-dcgan-format1.onnx"  # the unconditional model shipped before R1


def close_to_golden(got: np.ndarray, want: np.ndarray) -> None:
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())


def test_the_shipped_generators_give_their_recorded_images():
    close_to_golden(Generator(DCGAN).generate(range(16), batch_size=5), GOLDEN["dcgan_r1_seeds_0_15"])
    close_to_golden(Generator(FORMAT1).generate(range(16), batch_size=5), GOLDEN["dcgan_seeds_0_15"])
    c = Generator(CDCGAN)
    close_to_golden(c.generate(range(8), labels=[c.class_index("7")] * 8), GOLDEN["cdcgan_seeds_0_7_class_7"])


def png_pixels(path: Path) -> np.ndarray:
    """The pixels of a small grey PNG as the runtime writes it (one IDAT, unfiltered rows), read with zlib alone."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[-12:] == b"\0\0\0\0IEND\xaeB`\x82"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    start = data.index(b"IDAT") + 4
    rows = np.frombuffer(
        zlib.decompress(data[start : start + int.from_bytes(data[start - 8 : start - 4], "big")]), np.uint8
    ).reshape(height, 1 + width)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:, None]


def test_data_sets_through_the_api_and_the_cli(tmp_path, capsys):
    c = Generator(CDCGAN, threads=1)
    job = job_for(c, per_class=2, classes="3,7")
    assert write_folder(c, job, tmp_path / "ds", "imagefolder", grid=tmp_path / "grid.png").written == 4
    assert sorted(p.relative_to(tmp_path / "ds").as_posix() for p in (tmp_path / "ds").rglob("*.png")) == [
        "3/000000.png",
        "3/000001.png",
        "7/000000.png",
        "7/000001.png",
    ]
    write_npz(c, job, tmp_path / "ds.npz")
    with np.load(tmp_path / "ds.npz") as f:
        assert f["labels"].tolist() == [3, 3, 7, 7] and f["images"].shape == (4, 28, 28, 1)
        np.testing.assert_array_equal(png_pixels(tmp_path / "ds" / "7" / "000001.png"), f["images"][3])
    rc, out = call(capsys, "generate", DCGAN, "--seeds", "0-9", "--out", tmp_path / "png")
    assert rc == 0 and "wrote 10 images" in out.out
    expect_error(capsys, ["generate", DCGAN, "--seeds", "0-3,2", "--out", tmp_path / "bad"], "listed twice")


@pytest.mark.network  # MNIST on a cold cache
@pytest.mark.skipif(not (default_data_dir() / "mnist.npz").is_file(), reason="MNIST not in the data cache yet")
def test_eval_runs_on_the_runtime_alone(tmp_path, capsys):
    rc, _ = call(capsys, "eval", DCGAN, "--samples", 50, "--no-reference", "--out", tmp_path / "e.json")
    assert rc == 0
    assert sum(json.loads((tmp_path / "e.json").read_text())["generated"]["class_counts"]) == 50
