"""`python cli.py eval MODEL`: how good a generator's images are, torch-free, through a classifier per data set
shipped inside the package (models/<data>-classifier.onnx). Over N samples against the real test split, in the
classifier's penultimate features: Frechet distance (FD), KID, precision and recall (k = 3), the share of samples
classified with confidence >= 0.9 and the class histogram; real training images scored the same way give the
scale (a perfect generator scores about those)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..contract import open_session
from ..errors import GankitError
from ..files import atomic_write_bytes
from ..generator import Generator
from ..images import from_uint8
from . import metrics as M
from .datasets import CLASSES, default_data_dir, load_mnist_like

MODELS = Path(__file__).resolve().parent.parent / "models"
CLASSIFIERS = {data: MODELS / f"{data}-classifier.onnx" for data in CLASSES}  # eval --data: its feature space
DEFAULT_CLASSIFIER = CLASSIFIERS["mnist"]
DIGITS = tuple(CLASSES["mnist"])
MIN_SAMPLES = 10  # precision and recall need more samples than their 3 nearest neighbours; FD a covariance


class FeatureExtractor:
    """An exported classifier: uint8 [N, 28, 28, 1] images -> (features [N, 128], probabilities [N, 10])."""

    def __init__(self, path: Path = DEFAULT_CLASSIFIER):
        if not Path(path).is_file():
            raise GankitError(f"classifier {path} not found (train one with gankit train-classifier)")
        self.path = Path(path)
        self.session = open_session(self.path)
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        ok = (
            list(inputs) == ["images"]
            and inputs["images"][1:] == [1, 28, 28]
            and outputs.get("logits", [None, None])[1:] == [len(DIGITS)]
            and len(outputs.get("features", [])) == 2
        )
        if not ok:
            raise GankitError(
                f"{path} is not a 28x28 classifier of 10 classes (expected input images [N, 1, 28, 28], outputs "
                f"logits [N, 10] and features [N, F]; it has inputs {inputs}, outputs {outputs})"[:400]
            )

    def __call__(self, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
        feats, probs = [], []
        for i in range(0, len(images), batch_size):
            x = from_uint8(images[i : i + batch_size])
            try:
                logits, f = self.session.run(["logits", "features"], {"images": x})
            except Exception as e:  # onnxruntime's pybind exception types
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise GankitError(f"classifier {self.path} failed: {reason}") from None
            if f.ndim != 2 or len(f) != len(x) or f.shape[1] < 2 or logits.shape != (len(x), 10):
                raise GankitError(
                    f"classifier {self.path} gives logits {list(logits.shape)} and features "
                    f"{list(f.shape)} for {len(x)} images (expected [N, 10] and [N, F >= 2])"
                )
            if not (np.isfinite(logits).all() and np.isfinite(f).all()):
                raise GankitError(f"classifier {self.path} gives NaN or infinite values: it is broken")
            odds = np.exp(logits - logits.max(1, keepdims=True))
            probs.append(odds / odds.sum(1, keepdims=True))
            feats.append(f)
        return np.concatenate(feats), np.concatenate(probs)


def eval_labels(samples: int, num_classes: int) -> np.ndarray | None:
    """The labels a conditional generator is asked for in eval: seed i gets class i mod K (balanced);
    None for an unconditional one."""
    return np.arange(samples, dtype=np.int64) % num_classes if num_classes else None


def figures(
    features: np.ndarray,
    probabilities: np.ndarray,
    real_features: np.ndarray,
    labels: np.ndarray | None = None,
    real_radii: np.ndarray | None = None,
) -> dict:
    """eval's figures; with the labels a conditional generator was asked for, also the share of samples the
    classifier gives that label ("GAN-test" accuracy, Shmelkov et al. 2018). real_radii: M.knn_radii of
    real_features, computed once when one real set scores many samples."""
    kid, kid_std = M.kernel_inception_distance(features, real_features)
    precision, recall = M.precision_recall(real_features, features, real_radii=real_radii)
    result = {
        "fd": M.frechet_distance(features, real_features),
        "kid": kid,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        **M.class_figures(probabilities),
    }
    if labels is not None:
        result["label_accuracy"] = float((probabilities.argmax(1) == labels).mean())
    return result


def evaluate(
    model: Generator,
    samples: int = 10000,
    batch_size: int = 500,
    data_dir: Path | None = None,
    classifier: Path | None = None,
    with_reference: bool = True,
    truncation: float = 1.0,
    data: str = "mnist",
) -> dict:
    """eval's figures of `model` over seeds 0..samples-1 (at truncation psi) against `data` (mnist or
    fashion-mnist; its shipped classifier unless another is given), and of real images for scale."""
    i = model.info
    if data not in CLASSIFIERS:
        raise GankitError(f"eval --data takes {' or '.join(CLASSIFIERS)}, not {data!r}")
    if (i.channels, i.height, i.width) != (1, 28, 28):
        raise GankitError(
            f"eval --data {data} needs a 1x28x28 generator; {i.path} makes {i.channels}x{i.height}x{i.width}"
        )
    if samples < MIN_SAMPLES:
        raise GankitError(f"eval needs at least {MIN_SAMPLES} samples, got {samples}")
    if i.conditional and i.classes != tuple(CLASSES[data]):
        raise GankitError(
            f"eval --data {data} needs a generator of its classes {', '.join(CLASSES[data])}; "
            f"{i.path} has {', '.join(i.classes)}"
        )
    extract = FeatureExtractor(classifier or CLASSIFIERS[data])
    labels = eval_labels(samples, len(i.classes))  # the model first: a broken one fails before any download
    fake_f, fake_p = extract(
        model.generate(range(samples), batch_size=batch_size, labels=labels, truncation=truncation)
    )
    arrays = load_mnist_like(data, data_dir or default_data_dir())
    real_f, _ = extract(arrays["x_test"][..., None])
    radii = M.knn_radii(real_f)  # once, for the generated figures and the reference's
    result = {
        "model": str(i.path),
        "data": data,
        "samples": samples,
        "truncation": truncation,
        "generated": figures(fake_f, fake_p, real_f, labels, radii),
    }
    if with_reference:  # real training images in place of generated ones: the best a generator can hope for
        pick = np.random.default_rng(0).choice(
            len(arrays["x_train"]), min(samples, len(arrays["x_train"])), replace=False
        )
        ref_f, ref_p = extract(arrays["x_train"][pick][..., None])
        ref_labels = arrays["y_train"][pick].astype(np.int64) if i.conditional else None
        result["real_train"] = figures(ref_f, ref_p, real_f, ref_labels, radii)
    return result


def table(result: dict) -> str:
    rows = [
        ("FD (classifier features)", "fd", "{:.3f}"),
        ("KID", "kid", "{:.4f}"),
        ("precision (k=3)", "precision", "{:.3f}"),
        ("recall (k=3)", "recall", "{:.3f}"),
        ("confidence >= 0.9", "confident", "{:.1%}"),
        ("smallest class share", "class_share_min", "{:.1%}"),
        ("largest class share", "class_share_max", "{:.1%}"),
        ("class entropy (max 2.303)", "class_entropy", "{:.3f}"),
    ]
    cols = [k for k in ("generated", "real_train") if k in result]
    if "label_accuracy" in result["generated"]:  # conditional: is each sample the class it was asked for?
        rows.append(("label accuracy (GAN-test)", "label_accuracy", "{:.2%}"))
    lines = [f"{'':28}" + "".join(f"{c:>14}" for c in cols)]
    for label, key, fmt in rows:
        cells = []
        for c in cols:
            v = result[c][key]
            cells.append(f"{fmt.format(v):>14}")
        lines.append(f"{label:28}" + "".join(cells))
    return "\n".join(lines)


def write_json(result: dict, path: Path) -> None:
    try:
        atomic_write_bytes(Path(path), (json.dumps(result, indent=2) + "\n").encode())
    except OSError as e:  # a full disk: name the file, not its temporary
        raise GankitError(f"cannot write {path}: {e.strerror or e}") from None
