"""Metric code on cases with known answers."""

import numpy as np
import pytest
from gankit_runtime.evaluation import metrics as M


def test_fd_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(2000, 16))
    assert abs(M.frechet_distance(x, x)) < 1e-6


def test_fd_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(1)
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    a = mu_a + np.sqrt(var_a) * rng.normal(size=(200_000, 3))
    b = mu_b + np.sqrt(var_b) * rng.normal(size=(200_000, 3))
    closed = ((mu_a - mu_b) ** 2).sum() + (var_a + var_b - 2 * np.sqrt(var_a * var_b)).sum()
    assert M.frechet_distance(a, b) == pytest.approx(closed, rel=0.02)


def test_fd_with_full_covariances():
    # Rotating one set changes only its covariance's orientation: FD = tr(S_a + S_b - 2 (S_a S_b)^(1/2)).
    rng = np.random.default_rng(2)
    a = rng.normal(size=(100_000, 2)) * [3.0, 0.5]
    theta = np.pi / 2
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    b = a @ rot.T
    # diag(9, .25) against diag(.25, 9): 2 * (9 + .25 - 2 * 1.5) = 12.5
    assert M.frechet_distance(a, b) == pytest.approx(12.5, rel=0.03)


def test_kid_is_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(3000, 8)), rng.normal(size=(3000, 8))
    same, _ = M.kernel_inception_distance(a, b, subsets=20, subset_size=500)
    shifted, _ = M.kernel_inception_distance(a, b + 1.0, subsets=20, subset_size=500)
    assert abs(same) < 0.01 and shifted > 0.1


def test_precision_recall():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(1500, 4))
    p, r = M.precision_recall(real, rng.normal(size=(1500, 4)))
    assert p > 0.85 and r > 0.85
    # One image repeated: every sample is a real-looking one (high precision), nothing else is covered.
    one = np.repeat(real[:1], 1500, axis=0)
    p, r = M.precision_recall(real, one)
    assert p == 1.0 and r < 0.01
    far = rng.normal(size=(1500, 4)) + 20
    assert M.precision_recall(real, far) == (0.0, 0.0)


def test_precision_recall_with_the_real_radii_computed_once():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(800, 4)), rng.normal(size=(600, 4))
    radii = M.knn_radii(np.asarray(real, np.float32))
    assert M.precision_recall(real, fake, real_radii=radii) == M.precision_recall(real, fake)
    p, r = M.precision_recall(real, fake, real_radii=np.zeros(len(real)))  # the radii given are the ones used
    assert p == 0.0 and r == M.precision_recall(real, fake)[1]
    with pytest.raises(ValueError, match="real_radii"):
        M.precision_recall(real, fake, real_radii=radii[:-1])


def test_covered_says_which_points_lie_on_the_manifold():
    # A manifold of points 0, 1, 2 and 10 on a line: with k = 1 each ball's squared radius is the squared distance
    # to its nearest other point (1, 1, 1, 64), so 10's ball reaches from 2 to 18.
    manifold = np.array([[0.0], [1.0], [2.0], [10.0]])
    radii = M.knn_radii(manifold, k=1)
    assert radii.tolist() == [1.0, 1.0, 1.0, 64.0]
    points = np.array([[-0.5], [3.5], [17.0], [18.5], [-1.5]])
    assert M.covered(points, manifold, radii, chunk=2).tolist() == [True, True, True, False, False]


def test_class_figures():
    probs = np.zeros((10, 4))
    probs[np.arange(10), [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]] = 1.0
    probs[0] = [0.5, 0.3, 0.1, 0.1]
    f = M.class_figures(probs)
    assert f["confident"] == 0.9 and f["class_counts"] == [4, 2, 2, 2]
    assert f["class_share_min"] == 0.2 and f["class_share_max"] == 0.4
    assert f["class_entropy"] == pytest.approx(-(0.4 * np.log(0.4) + 3 * 0.2 * np.log(0.2)))


def test_label_accuracy_of_a_conditional_generator():
    from gankit_runtime.evaluation.evaluate import eval_labels, figures

    labels = eval_labels(40, 10)
    assert labels.tolist() == list(range(10)) * 4 and eval_labels(5, 0) is None
    rng = np.random.default_rng(0)
    feats, real = rng.normal(size=(40, 8)), rng.normal(size=(60, 8))
    probs = np.eye(10)[labels]  # the classifier agrees with every requested label ...
    probs[:6] = np.eye(10)[(labels[:6] + 1) % 10]  # ... but six
    f = figures(feats, probs, real, labels)
    assert f["label_accuracy"] == pytest.approx(34 / 40)
    assert "label_accuracy" not in figures(feats, probs, real)
