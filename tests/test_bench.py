"""Every benchmark runs (tiny settings): a benchmark that crashes is found here, not after an hour of measuring.
The figures themselves are not tested: speed lives in the benchmarks, never in timed tests."""

import runpy
import sys

import pytest
import torch
from conftest import ROOT

pytestmark = pytest.mark.slow

MNIST = ["--samples", "200"]
ONE = ["--threads", "1"]  # two test processes share the two cores: a second thread each would only contend
CASES = {
    "generation": ["bench/generation.py", "--quick", *ONE],
    "training": ["bench/training.py", "--quick", *ONE],
    "gpu_check": ["bench/gpu_check.py", "--device", "cpu"],
    "distributed": ["bench/distributed.py", "--quick"],
    "time_to_quality": [
        "bench/time_to_quality.py",
        "--kimg",
        "0.2",
        "--conditional",
        "--ema",
        "0",
        "--ema-long",
        "1",
        *MNIST,
        *ONE,
    ],
    "time_to_quality_modes": [
        "bench/time_to_quality.py",
        "--kimg",
        "0.2",
        "--modes",
        "10",
        "--mode-learning",
        "infogan",
        *MNIST,
        *ONE,
    ],
    "modes": ["bench/modes.py", str(ROOT / "exported" / "mnist-dcgan.onnx"), "--samples", "200"],
    "augmentation": [
        *["bench/augmentation.py", "--steps", "3", "--seeds", "0", "--cases", "3", "--per-class", "100"],
        *["--test", "500", *ONE],
    ],
    "web": ["bench/web.py", "--seeds", "2000"],
    "lanes": ["bench/lanes.py", "--batch", "8", "--rounds", "1"],
    "lowdata": [
        "bench/lowdata.py",
        "--n",
        "500",
        "--seeds",
        "0",
        "--gan-steps",
        "3",
        "--clf-steps",
        "3",
        "--modes",
        "ada",
        "--uses",
        "plain,filtered",
        "--truncation",
        "0.8",
        "--test",
        "300",
        "--per-class",
        "20",
        *MNIST,
        *ONE,
    ],
    "longtail": [
        "bench/longtail.py",
        "--seeds",
        "0",
        "--head",
        "30",
        "--tail",
        "3",
        "--gan-steps",
        "2",
        "--clf-steps",
        "2",
        "--check-steps",
        "2",
        "--check-real-share",
        "0.75",
        "--test",
        "300",
        "--remedy=--transfer latent --transfer-steps 2",
        *ONE,
    ],
}


@pytest.mark.parametrize("name", CASES)
def test_benchmark_runs(name, tmp_path, capsys, monkeypatch):
    """Each benchmark runs as `python bench/NAME.py ARGS`, but in this process: torch and its optimizers' lazy
    torch._dynamo are imported once here, not once per benchmark (seconds each on two cores). What a benchmark
    changes for the process (argv, the working folder, torch's thread count) is put back afterwards."""
    script, *args = CASES[name]
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    monkeypatch.setattr(sys, "argv", [str(ROOT / script), *map(str, args)])
    monkeypatch.chdir(tmp_path)
    import common

    monkeypatch.setattr(common, "SMOKE", True)  # one call per timing: see that it runs, do not measure
    monkeypatch.setenv("GANKIT_BENCH_SMOKE", "1")  # and so in the processes a benchmark starts
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    except SystemExit as e:  # a benchmark that refuses says why and exits non-zero
        assert e.code in (0, None), e.code
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err[-3000:]
    assert out.out.strip()
    if name == "longtail":  # the remedy's generator was trained and its cases measured beside the recipe's
        assert "f mixed [--transfer latent --transfer-steps 2]" in out.out and "the recipe's time" in out.out
        assert "| h weighted mix [--transfer latent --transfer-steps 2] |" in out.out  # weighted, not repeated
        assert "- --transfer latent --transfer-steps 2: balanced " in out.out.split("(h) minus (f)")[1]
        assert "--transfer latent --transfer-steps 2 minus the recipe" in out.out  # paired against the recipe
        assert "real + generated: 75% of a covered class's weight on its real images" in out.out  # the check's share
