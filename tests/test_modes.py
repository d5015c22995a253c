"""Discrete modes for an unconditional generator (gankit.modes): the mode comes from z inside the graph, InfoGAN's
head and loss, self-conditioning's clusters, and the contract kept (z alone in, an image per seed)."""

import numpy as np
import pytest
import torch
from gankit.config import ModelConfig, TrainConfig
from gankit.models import build_models, mode_of
from gankit.modes import kmeans
from gankit.train import train
from gankit_runtime import GankitError, latents_for_seeds
from helpers import CONFIGS, trainer


def test_the_mode_of_a_seed_is_uniform_and_truncation_keeps_it():
    z = torch.from_numpy(latents_for_seeds(range(20000), 100))
    modes = mode_of(z, 10)
    shares = torch.bincount(modes, minlength=10) / len(z)
    assert shares.min() > 0.09 and shares.max() < 0.11, shares
    assert torch.equal(mode_of(0.5 * z, 10), modes)


def test_the_generator_joins_the_embedding_of_its_z_s_mode():
    g, _ = build_models(CONFIGS["dcgan28-infogan"])
    z = torch.from_numpy(latents_for_seeds(range(16), 100))
    joined = g.join(z, None)
    assert joined.shape == (16, 100 + 32)
    expected = g.join.embed.weight[z[:, :10].argmax(dim=1)]
    assert torch.equal(joined[:, :100], z) and torch.equal(joined[:, 100:], expected)


def test_infogan_d_predicts_the_mode_and_both_steps_minimise_the_info_loss(monkeypatch):
    import gankit.trainer

    calls, grads = [], []
    real_info_loss = gankit.trainer.info_loss

    def spy(code, modes, weight):
        calls.append((code.shape, modes.shape, weight))
        loss = real_info_loss(code, modes, weight)
        assert torch.allclose(loss, weight * torch.nn.functional.cross_entropy(code, modes))
        loss.register_hook(lambda grad: grads.append(float(grad)))  # how much of it reaches the backward
        return loss

    monkeypatch.setattr(gankit.trainer, "info_loss", spy)
    t = trainer(CONFIGS["dcgan28-infogan"], steps=2, batch_size=8, d_steps=2, info_weight=0.25)
    assert calls == [((8, 10), (8,), 0.25)] * 6  # per step: 2 D steps and the G step, each with the run's lambda
    assert grads == [1.0] * 6  # each is added to its step's loss whole
    logit, code = t.D(torch.zeros(3, 1, 28, 28), code=True)
    assert logit.shape == (3,) and code.shape == (3, 10)
    with pytest.raises(ValueError, match="no code head"):
        build_models(CONFIGS["dcgan28"])[1](torch.zeros(1, 1, 28, 28), code=True)


def test_infogan_learns_modes_that_its_head_tells_apart():
    """A tiny run on noise images: after 150 steps Q names the mode of G's images far above chance (1 in 4)."""
    torch.manual_seed(0)
    cfg = ModelConfig(kind="vanilla", hidden=(32, 64, 128), size=8, modes=4)
    t = trainer(cfg, steps=150, batch_size=32, lr_g=2e-3, lr_d=2e-3)
    z = torch.from_numpy(latents_for_seeds(range(1000, 1512), 100))
    with torch.no_grad():
        _, code = t.D(t.G(z), code=True)
    accuracy = (code.argmax(dim=1) == mode_of(z, 4)).float().mean().item()
    assert accuracy > 0.9, accuracy


def test_kmeans_finds_separate_groups_and_keeps_their_numbers():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = torch.arange(300) % 3
    x = centres[truth] + 0.5 * torch.randn(300, 2, generator=g)
    found = kmeans(x, 3, None, seed=1)
    # the same partition as the truth, whatever the numbering
    assert len({(int(a), int(b)) for a, b in zip(found, truth)}) == 3
    # started from earlier clusters, cluster i stays cluster i (here: a numbering the data could not suggest)
    renumbered = (truth + 1) % 3
    assert torch.equal(kmeans(x, 3, renumbered, seed=1), renumbered)
    # more clusters than groups: none left empty
    assert torch.bincount(kmeans(x, 5, None, seed=1), minlength=5).min() > 0


def test_self_conditioned_d_takes_clusters_of_real_images_remade_every_epoch(monkeypatch):
    import gankit.trainer

    remade = []
    real_kmeans = gankit.trainer.kmeans
    monkeypatch.setattr(gankit.trainer, "kmeans", lambda *a: remade.append(a[2] is not None) or real_kmeans(*a))
    t = trainer(CONFIGS["vanilla-selfcond"], steps=0, batch_size=8)  # 32 images: 4 steps an epoch
    for _ in range(9):
        t.train_step()
    assert remade == [False, True, True]  # epochs 0, 1, 2; from the last clusters after the first
    assert t.clusters.shape == (32,) and 0 <= t.clusters.min() and t.clusters.max() < 4
    images, labels = t._real_batch(0)
    order = t._order[1][:8]
    assert torch.equal(labels, t.clusters[order])


@pytest.mark.parametrize("extra", [{"modes": 3}, {"modes": 3, "mode_learning": "self-conditioned"}])
def test_a_resumed_run_with_modes_ends_with_the_same_weights(image_folder, tmp_path, extra):
    model = ModelConfig(kind="dcgan", size=16, channels=3, width=4, **extra)
    cfg = TrainConfig(data=str(image_folder), batch_size=4, d_steps=2, epochs=10, seed=3)  # 3 steps an epoch
    straight = train(tmp_path / "a", model, cfg, max_steps=8)
    train(tmp_path / "b", model, cfg, max_steps=4)  # stops mid-epoch
    resumed = train(tmp_path / "b", None, None, resume=True, max_steps=8)
    a, b = (torch.load(p, weights_only=True) for p in (straight, resumed))
    for key in ("generator", "discriminator"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    if "mode_learning" in extra:
        assert torch.equal(a["clusters"]["labels"], b["clusters"]["labels"]) and a["clusters"]["epoch"] == 2


def test_infogan_s_weight_may_be_lowered_on_resume_and_only_for_infogan(image_folder, tmp_path):
    model = ModelConfig(kind="dcgan", size=16, channels=3, width=4, modes=3)
    cfg = TrainConfig(data=str(image_folder), batch_size=4, epochs=10)
    train(tmp_path / "a", model, cfg, max_steps=2)
    ckpt = train(tmp_path / "a", None, None, resume=True, given={"info_weight": 0.1}, max_steps=3)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 3 and state["train_config"]["info_weight"] == 0.1
    train(tmp_path / "b", ModelConfig(kind="dcgan", size=16, channels=3, width=4), cfg, max_steps=1)
    with pytest.raises(GankitError, match="--info-weight weighs InfoGAN"):
        train(tmp_path / "b", None, None, resume=True, given={"info_weight": 0.1}, max_steps=2)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"modes": 10, "num_classes": 10}, "no --conditional"),
        ({"modes": 1}, "2 to z-dim"),
        ({"modes": 11, "z_dim": 10}, "2 to z-dim"),
        ({"modes": 4, "mode_learning": "kmeans"}, "unknown mode learning"),
    ],
)
def test_bad_modes_are_one_line(bad, message):
    with pytest.raises(GankitError, match=message):
        ModelConfig(**bad)


@pytest.mark.parametrize("weight", [0.0, -1.0, 101.0])
def test_an_info_weight_outside_its_range_is_one_line(weight):
    with pytest.raises(GankitError, match="info-weight must lie in"):
        TrainConfig(info_weight=weight)


@pytest.mark.parametrize("modes", [{}, {"modes": 10, "mode_learning": "self-conditioned"}])
def test_an_info_weight_for_a_model_without_infogan_is_refused(modes):
    with pytest.raises(GankitError, match="--info-weight weighs InfoGAN"):
        trainer(ModelConfig(kind="dcgan", size=28, channels=1, width=8, **modes), info_weight=0.5)


def test_runtime_images_depend_on_the_seed_alone_for_a_model_with_modes(tmp_path):
    from gankit_runtime import Generator
    from tiny_models import tiny_generator

    g = Generator(tiny_generator(tmp_path / "moded.onnx", modes=4))
    whole = g.generate(range(20))
    np.testing.assert_array_equal(g.generate([7, 3])[0], whole[7])
    assert g.info.z_dim == 100 and not g.conditional


@pytest.mark.parametrize("labels", [torch.zeros(5, dtype=torch.int64), torch.full((32,), 4), "not clusters"])
def test_a_checkpoint_s_clusters_are_checked_before_use(labels):
    t = trainer(CONFIGS["vanilla-selfcond"], steps=1, batch_size=8)  # 32 images, 4 modes
    state = t.state_dict()
    state["clusters"]["labels"] = labels
    with pytest.raises(GankitError, match="checkpoint does not fit"):
        trainer(CONFIGS["vanilla-selfcond"], batch_size=8).load_state_dict(state)
