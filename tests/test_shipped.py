"""The generator that ships in exported/ works straight after install, with no training."""

import numpy as np
import pytest
from conftest import ROOT
from gankit_runtime import Generator

SHIPPED = ROOT / "exported" / "mnist-dcgan.onnx"


@pytest.fixture(scope="module")
def shipped():
    return Generator(SHIPPED)


def test_contract_and_metadata(shipped):
    i = shipped.info
    assert (i.input_name, i.output_name, i.z_dim, i.channels, i.height, i.width) == ("z", "images", 100, 1, 28, 28)
    m = i.metadata
    assert m["dataset"] == "mnist" and m["model_kind"] == "dcgan" and int(m["training_steps"]) >= 937
    assert len(m["checkpoint_sha256"]) == 64 and m["latent"].startswith("numpy.random.RandomState")
    assert not list(SHIPPED.parent.glob("*.onnx.data"))  # one self-contained file


def test_generates_digit_like_images(shipped):
    images = shipped.generate(range(64)).astype(np.float32)
    assert images.shape == (64, 28, 28, 1)
    # MNIST digits: a dark background and bright strokes (13% of real MNIST pixels are above half brightness),
    # and different seeds give different digits.
    border = np.concatenate([images[:, :3].ravel(), images[:, -3:].ravel()])
    assert border.mean() < 30
    bright = (images > 127).mean()
    assert 0.05 < bright < 0.35, bright
    assert np.std(images.reshape(64, -1).mean(axis=1)) > 1 and len({im.tobytes() for im in images}) == 64


CONDITIONAL = ROOT / "exported" / "mnist-cdcgan.onnx"
CLASSIFIER = ROOT / "inference" / "gankit_runtime" / "models" / "mnist-classifier.onnx"


def test_the_conditional_model_makes_the_digits_asked_for():
    from gankit_runtime.evaluation.evaluate import FeatureExtractor

    g = Generator(CONDITIONAL)
    i = g.info
    assert (i.input_name, i.labels_name, i.output_name) == ("z", "labels", "images")
    assert g.classes == tuple("0123456789") and i.metadata["dataset"] == "mnist"
    labels = np.arange(300) % 10
    images = g.generate(range(300), labels=labels)
    _, probs = FeatureExtractor(CLASSIFIER)(images)
    # The shipped classifier reads back the requested digit (measured: 99.43% over 10,000 samples).
    assert (probs.argmax(1) == labels).mean() >= 0.97


def test_the_graph_s_pixels_equal_the_runtime_s_and_old_files_keep_working(shipped):
    """The shipped files carry a pixels output (format 2, for other languages): it is byte for byte the runtime's
    conversion of images, which is what the runtime itself writes; a format-1 file (the model shipped before, kept
    as a test fixture) works the same way."""
    from gankit_runtime.images import to_uint8

    old = Generator(ROOT / "tests" / "fixtures" / "mnist-dcgan-format1.onnx")
    assert shipped.info.pixels_name == "pixels" and shipped.info.metadata["gankit.format"] == "2"
    assert old.info.pixels_name is None
    z = shipped.latents(range(100))
    images, pixels = shipped._checked(z, None, pixels=True)
    np.testing.assert_array_equal(pixels, to_uint8(images))
    np.testing.assert_array_equal(shipped.generate(range(100)), pixels)
    old_images = old.generate(range(4))
    assert old_images.shape == (4, 28, 28, 1) and len({im.tobytes() for im in old_images}) == 4


def test_the_fashion_model_makes_the_garments_asked_for():
    from gankit_runtime.evaluation.datasets import CLASSES
    from gankit_runtime.evaluation.evaluate import CLASSIFIERS, FeatureExtractor

    g = Generator(ROOT / "exported" / "fashion-cdcgan.onnx")
    assert g.classes == tuple(CLASSES["fashion-mnist"]) and g.info.metadata["dataset"] == "fashion-mnist"
    labels = np.arange(300) % 10
    _, probs = FeatureExtractor(CLASSIFIERS["fashion-mnist"])(g.generate(range(300), labels=labels))
    # Fashion-MNIST's own classifier reads back the class asked for (measured: 92.61% over 10,000 samples, 94% on
    # these 300; real training images 93.57%). The MNIST classifier would read back about 8%.
    assert (probs.argmax(1) == labels).mean() >= 0.88
