"""torch eager against the exported ONNX generator run by the torch-free runtime, unconditional and
class-conditional."""

import json

import numpy as np
import pytest
import torch
from gankit.export import to_onnx
from gankit_runtime import Generator, latents_for_seeds, to_uint8
from helpers import CONFIGS, trainer

ATOL = 1e-4  # the export's default tolerance; measured differences are about 1e-6
STEPS = 1  # trained a little: weights and batch-norm statistics have moved from their initial values
# The 64x64 RGB network (the DCGAN paper's, width 128) takes seconds to train and export: CI runs it, the quick loop not.
NAMES = [pytest.param(n, marks=pytest.mark.slow) if CONFIGS[n].size == 64 else n for n in CONFIGS]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(torch generator in eval mode, path of its export) per config, trained STEPS steps, built once."""
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            t = trainer(CONFIGS[name], steps=STEPS)
            path = tmp_path_factory.mktemp("onnx") / f"{name}.onnx"
            to_onnx(t.G, CONFIGS[name], path, {"classes": json.dumps(t.data.classes)} if t.data.classes else {})
            cache[name] = (t.G.eval(), path)
        return cache[name]

    return get


def labels_for(runtime, n):
    """Mixed labels for a conditional model (every class, out of order), None for an unconditional one."""
    return (np.arange(n) * 7) % len(runtime.classes) if runtime.conditional else None


@pytest.mark.parametrize("name", NAMES)
def test_torch_and_runtime_agree(exported, name):
    g, path = exported(name)
    # training moved every generator's weights from the same initial ones, and batch-norm statistics
    torch.manual_seed(0)
    untrained = trainer(CONFIGS[name], steps=0).G
    moved = [not torch.equal(a, b) for a, b in zip(g.parameters(), untrained.parameters())]
    assert sum(moved) >= len(moved) // 2, moved
    bns = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not torch.allclose(m.running_mean, torch.zeros_like(m.running_mean)) for m in bns)
    runtime = Generator(path)
    for n in (1, 2, 16):
        z = latents_for_seeds(range(100, 100 + n), runtime.info.z_dim)
        y = labels_for(runtime, n)
        with torch.no_grad():
            ref = g(torch.from_numpy(z), None if y is None else torch.from_numpy(y)).numpy()
        got = runtime.run(z, y)
        assert got.shape == ref.shape and got.shape[0] == n
        assert np.abs(got - ref).max() < ATOL, (n, np.abs(got - ref).max())
        diff = np.abs(to_uint8(got).astype(int) - to_uint8(ref).astype(int))
        assert diff.max() <= 1
        assert (diff > 0).mean() < 1e-3  # a rounding tie now and then, no more


@pytest.mark.parametrize("name", NAMES)
def test_images_do_not_depend_on_batch_size(exported, name):
    runtime = Generator(exported(name)[1])
    seeds = list(range(37))
    y = labels_for(runtime, 37)
    whole = runtime.generate(seeds, batch_size=64, labels=y)
    assert whole.dtype == np.uint8 and whole.shape[0] == 37
    for batch_size in (1, 5):
        np.testing.assert_array_equal(runtime.generate(seeds, batch_size=batch_size, labels=y), whole)
    pick = None if y is None else y[[30, 2]]
    np.testing.assert_array_equal(runtime.generate([30, 2], labels=pick)[0], whole[30])
    assert len({whole[i].tobytes() for i in range(37)}) == 37  # distinct seeds, distinct images


@pytest.mark.parametrize("name", [n for n in CONFIGS if CONFIGS[n].conditional])
def test_the_label_steers_a_conditional_generator(exported, name):
    g, path = exported(name)
    runtime = Generator(path)
    k = len(runtime.classes)
    same_seed = runtime.generate([5] * k, labels=np.arange(k))  # one seed in every class
    assert len({image.tobytes() for image in same_seed}) == k
    with torch.no_grad():  # the embedding is what differs: the torch model agrees class by class
        ref = g(torch.from_numpy(latents_for_seeds([5] * k, 100)), torch.arange(k)).numpy()
    assert np.abs(runtime.run(latents_for_seeds([5] * k, 100), np.arange(k)) - ref).max() < ATOL


@pytest.mark.parametrize("psi", [1.0, 0.5])
def test_torch_sampling_gives_the_runtime_s_pixels(exported, psi):
    """gankit.models.sample_uint8 (what training's samples, eval-in-training and the benchmarks draw) and the
    runtime give the same images for the same seeds, labels and truncation."""
    from gankit.models import sample_uint8

    name = next(n for n in CONFIGS if CONFIGS[n].conditional)
    g, path = exported(name)
    runtime = Generator(path)
    y = labels_for(runtime, 20)
    want = runtime.generate(range(20), labels=y, truncation=psi)
    got = sample_uint8(g, range(20), runtime.info.z_dim, "cpu", batch_size=7, labels=y, truncation=psi)
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert not np.array_equal(want, runtime.generate(range(20), labels=y, truncation=1.0 if psi != 1.0 else 0.5))
