"""Sample-quality metrics in numpy alone, over features from any feature extractor.

- Frechet distance (the "F" of FID) between Gaussians fitted to two feature sets;
- KID: unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets;
- precision and recall on k-NN manifolds (Kynkaanniemi et al. 2019);
- classifier figures: share of confident samples and the class histogram.
"""

from __future__ import annotations

import numpy as np


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for feature sets a [N, D] and b [M, D]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a symmetric PSD matrix.
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * trace_root)


def kernel_inception_distance(
    a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3 over random subsets."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        values.append(
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
        )
    return float(np.mean(values)), float(np.std(values))


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.maximum(d, 0)


def knn_radii(x: np.ndarray, k: int = 3, chunk: int = 2048) -> np.ndarray:
    """Squared distance from each point of x to its k-th nearest other point of x: the balls of x's manifold.
    Computed once, a real set's radii serve every precision_recall against it (an [N, N] pass each time else)."""
    radii = np.empty(len(x))
    for i in range(0, len(x), chunk):
        d = _squared_distances(x[i : i + chunk], x)
        radii[i : i + chunk] = np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself
    return radii


def covered(points: np.ndarray, manifold: np.ndarray, radii: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Whether each of `points` lies inside at least one k-NN ball of the manifold (radii: knn_radii(manifold)).
    Its mean is precision or recall; split by a label, it says which kind of point a manifold misses."""
    inside = np.empty(len(points), bool)
    for i in range(0, len(points), chunk):
        inside[i : i + chunk] = (_squared_distances(points[i : i + chunk], manifold) <= radii[None, :]).any(axis=1)
    return inside


def precision_recall(
    real: np.ndarray, fake: np.ndarray, k: int = 3, real_radii: np.ndarray | None = None
) -> tuple[float, float]:
    """Precision: share of fake samples on the real manifold; recall: share of real ones on the fake manifold.
    real_radii: knn_radii(real, k), when one real set is scored against many fake ones."""
    real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
    if real_radii is None:
        real_radii = knn_radii(real, k)
    elif np.shape(real_radii) != (len(real),):
        raise ValueError(f"real_radii has shape {np.shape(real_radii)}, expected ({len(real)},)")
    precision = float(covered(fake, real, real_radii).mean())
    recall = float(covered(real, fake, knn_radii(fake, k)).mean())
    return precision, recall


def class_figures(probabilities: np.ndarray, threshold: float = 0.9) -> dict:
    """Share of confident predictions and the predicted-class histogram (min and max share, entropy)."""
    p = np.asarray(probabilities, np.float64)
    counts = np.bincount(p.argmax(1), minlength=p.shape[1])
    share = counts / counts.sum()
    nonzero = share[share > 0]
    return {
        "confident": float((p.max(1) >= threshold).mean()),
        "class_share_min": float(share.min()),
        "class_share_max": float(share.max()),
        "class_entropy": float(-(nonzero * np.log(nonzero)).sum()),
        "class_counts": counts.tolist(),
    }
