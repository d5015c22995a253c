"""Discrete modes for an unconditional generator (ModelConfig.modes), learned without labels.

G's mode is c = argmax(z[:modes]) (models.mode_of): it comes from z inside the graph, so the exported model
still takes z alone, and an image still depends on its seed alone. How G learns to make the modes distinct:

- InfoGAN (Chen et al. 2016): D carries a head Q that predicts c from an image; D (with Q) and G both minimise
  lambda * cross-entropy(Q(G(z)), c), a lower bound on the mutual information between c and G(z)
  (lambda: TrainConfig.info_weight).
- Self-conditioned (Liu et al. 2020): D is conditioned on a label, as in a conditional GAN: a fake's label is its
  c, a real image's is its cluster among k-means clusters of D's own features, recomputed every epoch. Each new
  clustering starts from the centroids of the last one's clusters (in D's new features), so cluster i stays
  cluster i and G's mode i keeps meaning the same kind of image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .data import to_model_range

KMEANS_ITERATIONS = 20
FEATURE_BATCH = 1000


def info_loss(code_logits: torch.Tensor, modes: torch.Tensor, weight: float) -> torch.Tensor:
    """weight * cross-entropy of Q's prediction against the mode G was given."""
    return weight * F.cross_entropy(code_logits.float(), modes)


@torch.no_grad()
def real_features(D, images: torch.Tensor, device, memory_format) -> torch.Tensor:
    """D's pooled last features of every training image (uint8 [N, C, H, W]), L2-normalised, in eval mode (its
    running batch-norm statistics): float32 [N, F] on the device."""
    was_training = D.training
    D.eval()
    out = []
    for start in range(0, len(images), FEATURE_BATCH):
        batch = images[start : start + FEATURE_BATCH].to(device)
        out.append(D.features(to_model_range(batch).contiguous(memory_format=memory_format)).float())
    D.train(was_training)
    return F.normalize(torch.cat(out), dim=1)


def kmeans(features: torch.Tensor, k: int, previous: torch.Tensor | None, seed: int) -> torch.Tensor:
    """Cluster index (int64 [N]) of each feature row. With `previous` clusters, Lloyd's iterations start from the
    means of those clusters in these features (cluster i stays cluster i); otherwise from k-means++ seeds drawn with
    `seed`. A cluster left empty takes the point farthest from its centroid, so there are always k."""
    rng = np.random.default_rng(seed)
    n = len(features)
    if previous is None:
        centroids = features[[int(rng.integers(n))]]
        while len(centroids) < k:  # k-means++: the next seed drawn in proportion to the squared distance
            d2 = torch.cdist(features, centroids).min(dim=1).values.square().double().cpu().numpy()
            centroids = torch.cat([centroids, features[[int(rng.choice(n, p=d2 / d2.sum()))]]])
        labels = torch.cdist(features, centroids).argmin(dim=1)
    else:
        labels = previous.clone()
    for _ in range(KMEANS_ITERATIONS):
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros(k, features.shape[1], device=features.device).index_add_(0, labels, features)
        centroids = sums / counts.clamp(min=1)[:, None]
        for empty in torch.nonzero(counts == 0).flatten().tolist():
            far = int((features - centroids[labels]).norm(dim=1).argmax())
            labels[far] = empty
            centroids[empty] = features[far]
        new = torch.cdist(features, centroids).argmin(dim=1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels
