"""The `gankit` command (`python cli.py` in a checkout): train, export, generate, eval, info, web, ...

generate, info, eval and web need only the runtime (gankit-runtime); train, export and train-classifier need the
gankit package (torch). Importing this package does nothing and loads nothing heavy: main() first asks, in a rank
that torchrun or `train --nproc` started, for its death signal (gankit_runtime.rank_guard), then loads the commands."""

from __future__ import annotations

from typing import Any


def main(argv: list[str] | None = None) -> int:
    from gankit_runtime.rank_guard import stop_with_launcher

    stop_with_launcher()
    from .commands import app  # noqa: F401  (the commands join the app as they load)
    from .frame import main as run_cli

    return run_cli(argv)


def __getattr__(name: str) -> Any:
    if name == "app":  # the typer app with every command: for tests and tools that drive it
        from .commands import app

        return app
    raise AttributeError(f"module 'gankit_cli' has no attribute {name!r}")


__all__ = ["app", "main"]
