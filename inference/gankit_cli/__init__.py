"""The `gankit` command (`python cli.py` in a checkout): train, export, generate, eval, info, web, ...

generate, info and eval need only the runtime (gankit-runtime); train, export, train-classifier and web need the
gankit package (torch). A rank started by `gankit train --nproc` asks for its death signal first, before any heavy
import (rank_guard)."""

from .rank_guard import stop_with_launcher

stop_with_launcher()

from . import run_commands, train_commands  # noqa: E402, F401  (they add their commands to app)
from .app import app, main  # noqa: E402  (after the rank guard, on purpose)

__all__ = ["app", "main"]
