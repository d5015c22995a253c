"""EMA of the generator, eval figures during training, the best checkpoint, the plot, failure warnings."""

import io
import json

import pytest
import torch
from gankit.config import ModelConfig, TrainConfig
from gankit.export import load_generator
from gankit.monitor import D_FAKE_PATIENCE, FailureWatch
from gankit.train import train
from gankit_runtime.evaluation.evaluate import DEFAULT_CLASSIFIER as CLASSIFIER
from helpers import CONFIGS, trainer


def test_ema_update_follows_its_half_life():
    t = trainer(CONFIGS["dcgan28"], batch_size=8, ema_kimg=0.008)  # half-life 8 images = one batch
    with torch.no_grad():
        for p in t.G_ema.parameters():
            p.zero_()
        for p in t.G.parameters():
            p.fill_(1.0)
    t.step = 1000  # far past the ramp-up: the half-life is the configured one, so beta = 0.5
    t._update_ema()
    assert all(torch.allclose(p, torch.full_like(p, 0.5)) for p in t.G_ema.parameters())
    t.step = 1  # ramp-up: half-life 5% of 8 images, beta ~ 0: the EMA jumps to G
    t._update_ema()
    assert all(torch.allclose(p, torch.ones_like(p), atol=1e-6) for p in t.G_ema.parameters())


def test_ema_generator_is_used_for_samples_and_export(tmp_path):
    t = trainer(CONFIGS["dcgan28"], steps=3, batch_size=8, ema_kimg=1.0)
    assert t.G_out is t.G_ema
    assert any(not torch.equal(a, b) for a, b in zip(t.G.parameters(), t.G_ema.parameters()))
    from gankit.checkpoint import save_checkpoint

    save_checkpoint(t.state_dict(), tmp_path / "checkpoint.pt")
    g, _, state = load_generator(tmp_path)
    for a, b in zip(g.parameters(), t.G_ema.parameters()):
        assert torch.equal(a, b)


def test_resume_is_exact_with_ema(image_folder, tmp_path):
    model = ModelConfig(kind="dcgan", size=16, channels=3, width=4)
    cfg = TrainConfig(data=str(image_folder), batch_size=4, epochs=10, ema_kimg=0.05)
    a = torch.load(train(tmp_path / "a", model, cfg, max_steps=9), weights_only=True)
    train(tmp_path / "b", model, cfg, max_steps=4)
    b = torch.load(train(tmp_path / "b", None, None, resume=True, max_steps=9), weights_only=True)
    for name in a["generator_ema"]:
        assert torch.equal(a["generator_ema"][name], b["generator_ema"][name]), name


def test_failure_watch_warns_once():
    log = io.StringIO()
    w = FailureWatch(log)
    for _ in range(D_FAKE_PATIENCE - 1):
        w.step(0.001)
    w.step(0.5)  # one healthy step resets the count
    for _ in range(D_FAKE_PATIENCE - 1):
        w.step(0.001)
    assert log.getvalue() == ""
    for _ in range(3 * D_FAKE_PATIENCE):
        w.step(0.001)
    assert log.getvalue().count("discriminator wins") == 1
    w.classes({"class_share_max": 0.1, "class_counts": [1] * 10})
    assert "collapsing" not in log.getvalue()
    w.classes({"class_share_max": 0.6, "class_counts": [6, 4] + [0] * 8})
    assert "collapsing" in log.getvalue()


@pytest.mark.network  # MNIST on a cold cache
@pytest.mark.skipif(not CLASSIFIER.is_file(), reason="no classifier")
@pytest.mark.parametrize("conditional", [False, True])
def test_eval_every_records_figures_keeps_best_and_plots(tmp_path, conditional):
    model = ModelConfig(kind="dcgan", size=28, channels=1, width=4)
    cfg = TrainConfig(data="mnist", batch_size=8, epochs=1, eval_every=2, eval_samples=300)
    train(tmp_path / "r", model, cfg, max_steps=4, conditional=conditional)
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert {"fd", "kid", "precision", "recall", "confident", "class_share_min", "class_entropy"} <= set(
        evals[0]["eval"]
    )
    assert evals[0]["best"] is True
    assert (tmp_path / "r" / "best.pt").is_file() and (tmp_path / "r" / "plot.png").is_file()
    # A conditional generator is also scored on whether each sample is the class it was asked for.
    assert ("label_accuracy" in evals[0]["eval"]) == conditional


def test_eval_every_needs_mnist(image_folder, tmp_path):
    from gankit_runtime import GankitError

    model = ModelConfig(kind="dcgan", size=16, channels=3, width=4)
    with pytest.raises(GankitError, match="needs --data mnist or fashion-mnist"):
        train(tmp_path / "r", model, TrainConfig(data=str(image_folder), batch_size=4, eval_every=2), max_steps=2)
