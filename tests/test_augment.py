"""Differentiable augmentation for few-image training (--augment fixed | ada)."""

import pytest
import torch
from gankit.augment import ADA_INTERVAL, Augment, cutout, translate
from gankit.config import ModelConfig, TrainConfig
from gankit.models import build_models
from gankit.train import train


def images(n=8, c=3, size=16, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_identity_at_strength_zero(channels):
    x = images(c=channels)
    y = Augment("fixed", 1.0, seed=0, global_batch=8, rows=slice(None), device="cpu")(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    assert torch.equal(Augment("fixed", 0.0, 0, 8, slice(None), "cpu")(x), x)
    assert torch.equal(Augment("off", 1.0, 0, 8, slice(None), "cpu")(x), x)
    assert torch.equal(Augment("ada", 1.0, 0, 8, slice(None), "cpu")(x), x)  # ada starts at p = 0


def test_same_seed_same_augmentation_and_a_process_s_slice_is_the_whole_batch_s_rows():
    x = images()
    whole = Augment("fixed", 0.7, 5, 8, slice(None), "cpu")(x)
    torch.testing.assert_close(Augment("fixed", 0.7, 5, 8, slice(None), "cpu")(x), whole, rtol=0, atol=0)
    assert not torch.equal(Augment("fixed", 0.7, 6, 8, slice(None), "cpu")(x), whole)
    second_half = Augment("fixed", 0.7, 5, 8, slice(4, 8), "cpu")(x[4:])  # rank 1 of 2 under torchrun
    assert torch.equal(second_half, whole[4:])


def test_gradients_reach_the_generator_through_the_augmentation():
    cfg = ModelConfig(kind="dcgan", size=16, channels=3, width=4)
    g, _ = build_models(cfg)
    augment = Augment("fixed", 1.0, 0, 4, slice(None), "cpu")
    augment(g(torch.randn(4, 100), None)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())


def test_translation_moves_pixels_and_cutout_zeroes_a_square():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 3] = 1.0
    # shift draws in [0, 1): (draw * (2 * limit + 1)).floor() - limit; limit 1: 0.9 -> +1, 0.0 -> -1
    moved = translate(x, torch.tensor([[0.9, 0.0]]), torch.tensor([True]), 1)
    assert moved[0, 0, 4, 2] == 1.0 and moved.sum() == 1.0
    assert torch.equal(translate(x, torch.tensor([[0.9, 0.0]]), torch.tensor([False]), 1), x)
    ones = torch.ones(1, 1, 8, 8)
    holed = cutout(ones, torch.tensor([[0.5, 0.5]]), torch.tensor([True]), 4)
    assert holed.sum() == 64 - 16 and holed[0, 0, 2:6, 2:6].sum() == 0


def test_ada_raises_p_while_d_is_sure_of_the_reals_and_lowers_it_after():
    a = Augment("ada", 0.0, 0, 64, slice(None), "cpu")
    for step in range(1, 4 * ADA_INTERVAL + 1):
        a.observe(torch.full((64,), 3.0))  # sign(D(real)) = +1 > target 0.6: overfitting
        a.adjust(step, 64)
    high = float(a.p)
    assert high > 0
    for step in range(1, 2 * ADA_INTERVAL + 1):
        a.observe(torch.full((64,), -3.0))
        a.adjust(step, 64)
    assert 0 <= float(a.p) < high


@pytest.mark.parametrize("mode", ["fixed", "ada"])
def test_a_resumed_augmented_run_is_exact(image_folder, tmp_path, mode):
    model = ModelConfig(kind="dcgan", size=16, channels=3, width=4)
    cfg = TrainConfig(data=str(image_folder), batch_size=4, epochs=10, augment=mode, augment_p=0.5)
    straight = torch.load(train(tmp_path / "a", model, cfg, max_steps=9), weights_only=True)
    train(tmp_path / "b", model, cfg, max_steps=5)
    resumed = torch.load(train(tmp_path / "b", None, None, resume=True, max_steps=9), weights_only=True)
    for key in ("p", "signs", "seen", "rng"):
        assert torch.equal(straight["augment"][key], resumed["augment"][key]), key
    for name, value in straight["generator"].items():
        assert torch.equal(value, resumed["generator"][name]), name
    if mode == "fixed":  # the augmentation changed the training (ada's p may still be 0 after 9 steps)
        plain = torch.load(
            train(tmp_path / "c", model, TrainConfig(data=str(image_folder), batch_size=4, epochs=10), max_steps=9),
            weights_only=True,
        )
        assert any(not torch.equal(v, plain["generator"][n]) for n, v in straight["generator"].items())


def test_d_sees_reals_and_fakes_augmented_in_both_steps():
    from helpers import trainer

    t = trainer(ModelConfig(kind="dcgan", size=16, channels=3, width=4), batch_size=4, augment="fixed", augment_p=1.0)
    seen = []
    real_augment = t.augment.__call__

    class Recorder:  # what passes through the augmentation, in order: must be the D step's real and fake batches
        def __getattr__(self, name):
            return getattr(t.augment_inner, name)

        def __call__(self, x):
            seen.append(x.requires_grad)
            return real_augment(x)

    t.augment_inner, t.augment = t.augment, Recorder()
    t.train_step()
    # D step: real (no grad) and fake (made under no_grad); G step: the fake, with G's gradient
    assert seen == [False, False, True]
