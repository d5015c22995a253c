"""Checkpoints: one torch.save'd dict of tensors and plain values, never pickled code.

Loaded with weights_only=True, so a checkpoint from a stranger cannot run code on load.
Written under a temporary name and renamed, so a crash or a full disk leaves the last good one.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from gankit_runtime import GankitError
from gankit_runtime.files import atomic_path

FORMAT = "gankit-checkpoint"
VERSION = 1
FILENAME = "checkpoint.pt"


def checkpoint_file(path: Path) -> Path:
    """A run folder or a checkpoint file -> the checkpoint file."""
    path = Path(path)
    return path / FILENAME if path.is_dir() else path


def save_checkpoint(state: dict, path: Path) -> None:
    state = {"format": FORMAT, "version": VERSION, **state}
    try:
        with atomic_path(Path(path)) as tmp:
            torch.save(state, tmp)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as RuntimeError (from its zip writer)
        reason = getattr(e, "strerror", None)
        if not reason:  # torch's own text ("enforce fail at inline_container.cc ... unexpected pos") means nothing
            reason = "the write failed (is the disk full?)"
        kept = "the previous checkpoint is kept" if Path(path).is_file() else "no checkpoint was written"
        raise GankitError(f"could not write checkpoint {path}: {reason}; {kept}") from None


def _names_python_objects(path: Path) -> bool:
    """Whether `path` is a bare pickle that names Python objects (what torch's weights_only refuses as possibly
    unsafe), as opposed to bytes that are no pickle at all (only corrupt)."""
    import pickletools

    try:
        data = path.read_bytes()
        return any(op.name in ("GLOBAL", "STACK_GLOBAL", "INST") for op, _, _ in pickletools.genops(data))
    except Exception:  # noqa: BLE001 - not a pickle: corrupt, not unsafe
        return False


def load_checkpoint(path: Path) -> dict:
    path = checkpoint_file(path)
    if not path.is_file():
        raise GankitError(f"checkpoint {path} not found")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise on a bad file
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, not a torch file at all, ...
        text = str(e)
        if "allowed global" in text or "Unsupported global" in text or _names_python_objects(path):
            # torch's refusal goes on to suggest weights_only=False: exactly what must not be done here.
            raise GankitError(
                f"{path} is not a gankit checkpoint: it holds Python objects other than tensors and "
                "plain values, which could run code when loaded; it was refused unread and may be "
                "unsafe"
            ) from None
        first = (text.strip().splitlines() or [type(e).__name__])[0]
        raise GankitError(
            f"{path} is not a readable checkpoint (corrupt, truncated or not made by torch.save): {first[:200]}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GankitError(f"{path} is not a gankit checkpoint")
    if state.get("version") != VERSION:
        raise GankitError(
            f"{path} is a gankit checkpoint of version {state.get('version')}; this gankit reads version {VERSION}"
        )
    return state
