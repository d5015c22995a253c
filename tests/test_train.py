import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gankit.config import ModelConfig, TrainConfig
from gankit.data import Dataset
from gankit.train import discriminator_loss, generator_loss, train
from gankit.trainer import R1_EVERY, TOP_K_DECAY, Trainer, r1_penalty, top_k_share
from gankit_runtime import GankitError
from helpers import CONFIGS, synthetic_data, trainer


def test_discriminator_loss_is_bce_real_1_fake_0():
    lr, lf = torch.randn(16), torch.randn(16)
    expected = F.binary_cross_entropy(torch.sigmoid(lr), torch.ones(16)) + F.binary_cross_entropy(
        torch.sigmoid(lf), torch.zeros(16)
    )
    torch.testing.assert_close(discriminator_loss(lr, lf), expected)


def test_one_sided_label_smoothing_targets_real_images_only():
    lr, lf = torch.randn(16), torch.randn(16)
    expected = F.binary_cross_entropy(torch.sigmoid(lr), torch.full((16,), 0.9)) + F.binary_cross_entropy(
        torch.sigmoid(lf), torch.zeros(16)
    )
    torch.testing.assert_close(discriminator_loss(lr, lf, 0.1), expected)


def test_generator_losses():
    lf = torch.randn(16)
    d = torch.sigmoid(lf)
    torch.testing.assert_close(generator_loss(lf, "non-saturating"), -torch.log(d).mean())
    torch.testing.assert_close(generator_loss(lf, "minimax"), torch.log(1 - d).mean())
    # Early on D(G(z)) ~ 0: the minimax gradient vanishes, the non-saturating one does not.
    low = torch.full((4,), -8.0, requires_grad=True)
    generator_loss(low, "minimax").backward()
    g_mm = low.grad.abs().max().item()
    low.grad = None
    generator_loss(low, "non-saturating").backward()
    assert low.grad.abs().max().item() > 100 * g_mm


def test_hinge_losses():
    lr, lf = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, -0.5, 1.0])
    # relu(1 - real) = [0, 0.5, 2], relu(1 + fake) = [0, 0.5, 2]: each side averages 2.5 / 3
    torch.testing.assert_close(discriminator_loss(lr, lf, kind="hinge"), torch.tensor(5.0 / 3))
    torch.testing.assert_close(generator_loss(lf, "non-saturating", "hinge"), torch.tensor(0.5))  # -mean(fake)


def test_r1_penalty_is_the_squared_slope_at_real_images():
    x = torch.randn(5, 1, 4, 4, requires_grad=True)
    w = torch.arange(16.0).view(1, 1, 4, 4)
    logits = (w * x).sum(dim=(1, 2, 3)) + (x**2).sum(dim=(1, 2, 3))  # grad: w + 2x
    expected = ((w + 2 * x.detach()) ** 2).sum(dim=(1, 2, 3)).mean()
    torch.testing.assert_close(r1_penalty(logits, x), expected)


def test_top_k_share_anneals_to_its_floor():
    assert top_k_share(0.5, 0) == 1.0
    assert top_k_share(0.5, 3) == pytest.approx(TOP_K_DECAY**3) and TOP_K_DECAY**3 > 0.5
    assert top_k_share(0.5, 1000) == 0.5


def test_top_k_g_learns_from_the_best_scored_fakes_only(monkeypatch):
    import gankit.trainer as tr

    t = trainer(CONFIGS["dcgan28"], steps=0, batch_size=8, top_k=0.5)
    t.step = 100 * t.steps_per_epoch  # past the annealing: half of the fakes
    scores, learned = [], []
    t.D.register_forward_hook(lambda module, args, out: scores.append(out.detach()))
    monkeypatch.setattr(
        tr, "generator_loss", lambda logits, *a: learned.append(logits.detach()) or generator_loss(logits, *a)
    )
    t.train_step()
    # scores[-1]: D's scores of the G step's 8 fakes; G's loss saw the 4 best of them
    torch.testing.assert_close(learned[0], scores[-1].sort(descending=True).values[:4])


def test_r1_runs_lazily_and_changes_d(monkeypatch):
    calls = []
    import gankit.trainer as tr

    monkeypatch.setattr(tr, "r1_penalty", lambda logits, x: calls.append(1) or r1_penalty(logits, x))
    t = trainer(CONFIGS["dcgan28"], steps=R1_EVERY + 1, batch_size=4, r1=1.0)
    assert len(calls) == 2  # D steps 0 and R1_EVERY
    assert t.step == R1_EVERY + 1


def test_r1_is_on_by_default_where_it_was_measured():
    from gankit.config import new_run_configs

    assert new_run_configs("dcgan", "mnist")[1].r1 == 1.0  # MNIST DCGAN: measured (docs/benchmarks.md)
    assert new_run_configs("dcgan", "faces", image_size=64)[1].r1 == 0.0  # not measured at 64x64
    assert new_run_configs("vanilla", "mnist")[1].r1 == 0.0
    assert new_run_configs("dcgan", "mnist", r1=0.0)[1].r1 == 0.0
    assert new_run_configs("dcgan", "mnist", sync_bn=True)[1].r1 == 0.0  # R1 does not pass through SyncBatchNorm
    with pytest.raises(GankitError, match="sync-bn"):
        new_run_configs("dcgan", "mnist", sync_bn=True, r1=1.0)
    assert TrainConfig.from_dict({"epochs": 3}).r1 == 0.0  # a run saved before R1 existed resumes without it


@pytest.mark.parametrize(
    "bad",
    [{"loss": "wasserstein"}, {"loss": "hinge", "g_loss": "minimax"}, {"r1": -1.0}, {"top_k": 0.0}, {"top_k": 1.5}],
)
def test_bad_recipe_options_are_one_line(bad):
    with pytest.raises(GankitError):
        TrainConfig(**bad)


@pytest.mark.parametrize("k", [1, 3])
def test_k_discriminator_steps_per_generator_step(k):
    t = trainer(CONFIGS["dcgan28"], steps=2, batch_size=4, d_steps=k)
    step_count = lambda opt: int(next(iter(opt.state.values()))["step"])  # noqa: E731
    assert step_count(t.opt_g) == 2 and step_count(t.opt_d) == 2 * k


def test_each_network_is_frozen_while_the_other_trains():
    t = trainer(CONFIGS["dcgan28"], batch_size=4)
    grads = {}

    def snapshot(module):
        return {n: None if p.grad is None else p.grad.clone() for n, p in module.named_parameters()}

    def before_d_step(optimizer, args, kwargs):
        grads["G at D's step"] = snapshot(t.G)

    def before_g_step(optimizer, args, kwargs):
        grads["D at G's step"] = snapshot(t.D)
        grads["G at G's step"] = snapshot(t.G)

    t.opt_d.register_step_pre_hook(before_d_step)
    t.opt_d.register_step_post_hook(lambda *a: grads.__setitem__("D after D's step", snapshot(t.D)))
    t.opt_g.register_step_pre_hook(before_g_step)
    t.train_step()
    # D's step: G was frozen (no_grad), so none of G's parameters has a gradient.
    assert all(g is None for g in grads["G at D's step"].values())
    # G's step: every gradient of D is exactly what D's own step left, parameter by parameter: the generator's
    # loss reached none of them (D was frozen). Every parameter of G got a gradient.
    for name, g in grads["D at G's step"].items():
        assert torch.equal(g, grads["D after D's step"][name]), name
    assert all(g is not None and g.abs().sum() > 0 for g in grads["G at G's step"].values())


def _folder_data_cfgs(image_folder):
    model = ModelConfig(kind="dcgan", size=16, channels=3, width=4)
    # 24 images, batch 4, k=2: 3 generator steps per epoch, so 8 steps cross two epoch boundaries.
    return model, TrainConfig(data=str(image_folder), batch_size=4, d_steps=2, epochs=10, seed=3)


def test_resumed_run_ends_with_the_same_weights(image_folder, tmp_path):
    model, cfg = _folder_data_cfgs(image_folder)
    straight = train(tmp_path / "a", model, cfg, max_steps=8)
    train(tmp_path / "b", model, cfg, max_steps=4)  # stops mid-epoch
    resumed = train(tmp_path / "b", None, None, resume=True, max_steps=8)
    a, b = (torch.load(p, weights_only=True) for p in (straight, resumed))
    assert a["step"] == b["step"] == 8
    for key in ("generator", "discriminator"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    for key in ("opt_g", "opt_d"):
        for i, state in a[key]["state"].items():
            for name, value in state.items():
                assert torch.equal(value, b[key]["state"][i][name]), (key, i, name)
    assert torch.equal(a["rng"]["noise"], b["rng"]["noise"])
    # ... and differs from a run that did fewer steps: the comparison above has teeth.
    c = torch.load(train(tmp_path / "c", model, cfg, max_steps=7), weights_only=True)
    assert any(not torch.equal(a["generator"][n], c["generator"][n]) for n in a["generator"])


def test_run_folder_outputs(image_folder, tmp_path):
    model, cfg = _folder_data_cfgs(image_folder)
    train(tmp_path / "r", model, cfg, max_steps=7)
    lines = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [3, 6, 7]  # each epoch end, then the requested stop
    assert {"loss_d", "loss_g", "d_real", "d_fake", "images_per_s"} <= set(lines[0])
    assert sorted(p.name for p in (tmp_path / "r" / "samples").iterdir()) == [
        "epoch_001.png",
        "epoch_002.png",
        "step_0000007.png",
    ]
    with pytest.raises(GankitError, match="already holds a run"):
        train(tmp_path / "r", model, cfg, max_steps=8)


def test_too_little_data_is_an_error():
    cfg = CONFIGS["dcgan28"]
    data = Dataset("tiny", torch.zeros(3, 1, 28, 28, dtype=torch.uint8), None, [])
    from gankit.train import Trainer

    with pytest.raises(GankitError, match="fewer than one generator step"):
        Trainer(cfg, TrainConfig(batch_size=4), data)


def test_spectral_norm_discriminator_bounds_every_layer():
    t = trainer(ModelConfig(kind="dcgan", size=28, channels=1, width=8, d_norm="spectral"), steps=3)
    assert not [m for m in t.D.modules() if isinstance(m, torch.nn.BatchNorm2d)]  # no batch norm in D
    convs = [m for m in t.D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
    for m in convs:  # the largest singular value of each layer's weight is about 1 (one power iteration a step)
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert 0.5 < sigma < 1.2, sigma
    assert [m for m in t.G.modules() if isinstance(m, torch.nn.BatchNorm2d)]  # G keeps its batch norm


def test_balance_classes_shows_every_class_equally_often_whatever_its_count():
    from gankit.trainer import epoch_order

    labels = np.array([0] * 1000 + [1] * 20 + [2] * 5)
    order = epoch_order(0, 3, len(labels), labels).numpy()
    counts = np.bincount(labels[order], minlength=3)
    assert len(order) == len(labels) and abs(counts - len(labels) / 3).max() < 60, counts
    assert set(order[labels[order] == 2]) == set(range(1020, 1025))  # the rare images repeat, all of them
    plain = epoch_order(0, 3, len(labels)).numpy()
    assert sorted(plain) == list(range(len(labels)))  # without labels: a permutation, as before
    np.testing.assert_array_equal(order, epoch_order(0, 3, len(labels), labels).numpy())  # seeded


def test_balance_classes_needs_a_conditional_model():
    cfg = CONFIGS["dcgan28"]
    with pytest.raises(GankitError, match="--balance-classes"):
        Trainer(cfg, TrainConfig(batch_size=8, balance_classes=True), synthetic_data(cfg, n=32))
    t = trainer(CONFIGS["dcgan28-cond"], steps=1, balance_classes=True)
    assert t.step == 1
