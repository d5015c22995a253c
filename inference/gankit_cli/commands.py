"""The typer app with every command loaded (each commands module adds its own to app.app)."""

from . import data_commands, run_commands, train_commands  # noqa: F401
from .frame import app

__all__ = ["app"]
