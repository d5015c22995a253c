"""The rare-class remedies: --transfer latent (gankit.transfer: each class a Gaussian with one shared covariance in an
autoencoder's latent, fitted before the GAN; computed inside the exported graph, so the contract, z and label in and
an image per seed, holds) and --class-head (AC-GAN: D names the class, G is trained so that D names its class)."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import call, expect_error
from gankit.config import ModelConfig, TrainConfig
from gankit.models import build_models
from gankit.train import train
from gankit.transfer import class_gaussians
from gankit_runtime import GankitError, Generator

TRANSFER = ModelConfig(kind="dcgan", size=16, channels=3, width=4, num_classes=2, transfer="latent")
BOTH = dataclasses.replace(TRANSFER, class_head=True)


def test_class_means_and_the_pooled_within_class_covariance():
    # class 0 spreads along x, class 1 along y: pooled, each axis has variance (1 + 1) / (4 codes - 2 classes) = 1
    codes = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0], [5.0, 5.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    means, scale = class_gaussians(codes, labels, 3)
    assert torch.equal(means, torch.tensor([[1.0, 0.0], [0.0, 5.0], [5.0, 5.0]]))
    # 5 codes, 3 classes: 2 degrees of freedom; the spreads are (+-1, 0) and (0, +-1): covariance I
    assert torch.allclose(scale, torch.eye(2), atol=1e-3), scale
    assert torch.equal(scale, torch.tril(scale))  # a Cholesky factor: w = mean + scale @ z has that covariance


def test_a_class_without_images_is_one_line():
    with pytest.raises(GankitError, match="every class"):
        class_gaussians(torch.zeros(3, 2), torch.tensor([0, 0, 2]), 3)


def test_g_draws_each_class_around_its_mean_with_the_shared_spread():
    g, _ = build_models(TRANSFER)
    g.join.means.copy_(torch.tensor([[3.0] * 100, [-3.0] * 100]))
    scale = torch.tril(torch.randn(100, 100))  # lower triangular: each w_i = mean_i + sum over j <= i of L_ij z_j
    g.join.scale.copy_(scale)
    z = torch.randn(4, 100)
    w = g.join(z, torch.tensor([0, 1, 0, 1]))
    assert torch.allclose(w[2], g.join.means[0] + (scale * z[2]).sum(1), atol=1e-5)
    assert torch.allclose(w[1, :1], g.join.means[1, :1] + scale[0, 0] * z[1, 0])  # the first, from z_0 alone
    g.eval()
    assert torch.equal(g(z, torch.tensor([0, 1, 0, 1])), g.decode(w))


def test_a_run_with_both_remedies_fits_the_latent_first_and_resumes_exactly(image_folder, tmp_path):
    cfg = TrainConfig(data=str(image_folder), batch_size=4, epochs=10, seed=3, transfer_steps=5)  # 6 steps an epoch
    straight = train(tmp_path / "a", BOTH, cfg, max_steps=8)
    train(tmp_path / "b", BOTH, cfg, max_steps=4)
    resumed = train(tmp_path / "b", None, None, resume=True, max_steps=8)
    a, b = (torch.load(p, weights_only=True) for p in (straight, resumed))
    for key in ("generator", "generator_ema", "discriminator"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    means, scale = a["generator"]["join.means"], a["generator"]["join.scale"]
    assert not torch.equal(means[0], means[1])  # fitted: each class its own mean
    assert torch.all(scale.diagonal() > 0) and not torch.equal(scale, torch.eye(100))
    assert torch.equal(a["generator_ema"]["join.means"], means)  # the EMA generator draws from the same latent
    assert a["model_config"]["transfer"] == "latent" and a["train_config"]["transfer_steps"] == 5
    assert a["discriminator"]["head.code.weight"].shape[0] == 2  # D's class head: one output per class


def test_the_exported_transfer_model_keeps_the_contract(image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--data", image_folder, "--conditional", "--transfer", "latent", "--transfer-steps", 3]
    rc, out = call(capsys, "train", *args, "--image-size", 16, "--width", 4, "--batch-size", 4, "--steps", 2,
                   "--out", run)  # fmt: skip
    assert rc == 0, out.err
    assert "transfer: autoencoder 3 steps" in out.err and "transfer latent" in out.err
    rc, out = call(capsys, "export", run)  # verified against torch inside
    assert rc == 0, out.err
    g = Generator(run / "generator.onnx")
    assert g.conditional and g.classes == ("cats", "dogs")
    assert [i.name for i in g.session.get_inputs()] == ["z", "labels"]
    one = g.generate([5, 6, 7], labels=[0, 1, 1])
    alone = g.generate([7], labels=[1])  # an image depends on its seed and label alone
    assert np.array_equal(one[2:], alone)
    assert not np.array_equal(g.generate([5], labels=[0]), g.generate([5], labels=[1]))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--transfer", "latent"], "needs --conditional"),
        (["--transfer-steps", "5"], "add --transfer latent"),
        (["--transfer", "latent", "--modes", "2"], "needs --conditional"),
        (["--conditional", "--transfer", "sideways"], "sideways"),
        (["--class-head"], "needs --conditional"),
    ],
)
def test_transfer_options_a_run_would_ignore_are_one_line(capsys, image_folder, tmp_path, args, fragment):
    expect_error(capsys, ["train", "--data", image_folder, *args, "--out", tmp_path / "r"], fragment)
    assert not (tmp_path / "r").exists()


def test_a_checkpoint_s_transfer_is_checked():
    with pytest.raises(GankitError, match="unknown transfer"):
        ModelConfig.from_dict({**TRANSFER.to_dict(), "transfer": "magic"})
    with pytest.raises(GankitError, match="not --modes"):
        ModelConfig(transfer="latent", modes=3)
    with pytest.raises(GankitError, match="transfer-steps"):
        TrainConfig(transfer_steps=0)
    with pytest.raises(GankitError, match="no classes"):  # a crafted config: transfer without classes
        build_models(ModelConfig(transfer="latent"))
    with pytest.raises(GankitError, match="takes no --modes"):
        ModelConfig(class_head=True, modes=3)


def test_the_class_head_learns_from_real_images_and_g_from_it(monkeypatch):
    """--class-head: each D step adds the cross-entropy of D's class head on the real batch; the G step adds it on
    the fakes, against the classes G was asked for; each is added to its step's loss whole."""
    import gankit.trainer
    from helpers import trainer

    calls, grads = [], []

    class Spy:  # torch.nn.functional, with cross_entropy watched
        def __getattr__(self, name):
            return getattr(torch.nn.functional, name)

        def cross_entropy(self, logits, labels):
            calls.append((tuple(logits.shape), labels.tolist()))
            loss = torch.nn.functional.cross_entropy(logits, labels)
            loss.register_hook(lambda grad: grads.append(float(grad)))
            return loss

    monkeypatch.setattr(gankit.trainer, "F", Spy())
    cfg = ModelConfig(kind="dcgan", size=28, channels=1, width=8, num_classes=10, class_head=True)
    t = trainer(cfg, steps=2, batch_size=8, d_steps=2)
    assert [shape for shape, _ in calls] == [(8, 10)] * 6  # per step: 2 D steps (real images) and the G step
    assert grads == [1.0] * 6
    assert calls[1][1] == calls[2][1]  # the G step's fakes carry the last real batch's labels
    logit, named = t.D(torch.zeros(3, 1, 28, 28), torch.tensor([0, 1, 2]), code=True)
    assert logit.shape == (3,) and named.shape == (3, 10)
