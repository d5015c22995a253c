"""The generators that ship inside the runtime (models/), named as rembg names its models: `gankit generate
mnist-dcgan ...` works after `pip install`, with no clone. A path that exists always wins over a name."""

from __future__ import annotations

from pathlib import Path

MODELS = Path(__file__).resolve().parent / "models"


def shipped_models() -> dict[str, Path]:
    """name -> file of each shipped generator (the classifiers that eval uses are not generators)."""
    return {p.stem: p for p in sorted(MODELS.glob("*.onnx")) if not p.stem.endswith("-classifier")}


def resolve_model(model: str | Path) -> Path:
    """The file a model argument means: the path itself where it exists or looks like a path, else the shipped
    generator of that name, else the path (whose absence is then reported by whoever opens it)."""
    path = Path(model)
    if path.exists() or path.suffix or len(path.parts) != 1:
        return path
    return shipped_models().get(str(model), path)
