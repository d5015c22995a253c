"""The command line's frame: the typer app, the option helpers the commands share, and main(): a user's mistake
is one line on stderr and a non-zero exit code, Ctrl-C, SIGTERM and SIGHUP exit 130, 143 and 129."""

from __future__ import annotations

import os
import signal
import sys
import threading
from enum import Enum
from pathlib import Path

import typer
from gankit_runtime import GankitError, Interrupted, __version__
from gankit_runtime.generator import THREADS_PER_CPU, usable_cpus

PROG = "gankit"  # the command's name in usage lines

# Usage errors (bad option, bad value): typer >= 0.22 raises its own vendored-click exceptions, older typer click's.
USAGE_ERRORS: tuple = tuple(c for c in (getattr(typer.exceptions, "TyperException", None),) if c)
try:
    import click

    USAGE_ERRORS += (click.exceptions.ClickException,)
except ImportError:
    pass

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train GAN generators, export them to ONNX, generate images with onnxruntime.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit.", metavar=""
    ),
) -> None:
    """Train GAN generators, export them to ONNX, generate images with onnxruntime."""


# The values of choice options: typer lists them in --help and rejects others in one line. Spelled out here, not
# imported from gankit.config: generate and info must run where only the runtime is installed.
class ModelKind(str, Enum):
    vanilla = "vanilla"
    dcgan = "dcgan"


class GLoss(str, Enum):
    non_saturating = "non-saturating"
    minimax = "minimax"


class Loss(str, Enum):
    bce = "bce"
    hinge = "hinge"


class Format(str, Enum):
    png = "png"
    imagefolder = "imagefolder"
    npz = "npz"


class DCondition(str, Enum):
    projection = "projection"
    concat = "concat"


class Transfer(str, Enum):
    none = "none"
    latent = "latent"


class ModeLearning(str, Enum):
    infogan = "infogan"
    self_conditioned = "self-conditioned"


class DNorm(str, Enum):
    batch = "batch"
    spectral = "spectral"


class Augment_(str, Enum):
    off = "off"
    fixed = "fixed"
    ada = "ada"


MAX_SEED = 2**32 - 1  # every --seed (gankit.config.MAX_SEED)


class DataSet(str, Enum):  # eval's and train-classifier's: a shipped classifier each
    mnist = "mnist"
    fashion_mnist = "fashion-mnist"


def _flag(help: str) -> dict:
    """typer.Option keywords of an on/off flag (no `<bool>` in the help: a flag takes no value)."""
    return {"help": help, "metavar": ""}


def _check_threads(threads: int | None) -> None:  # bounded as the runtime bounds its own threads
    if threads is not None and threads > THREADS_PER_CPU * usable_cpus():
        raise GankitError(
            f"--threads {threads} is more than {THREADS_PER_CPU} per CPU this process may use ({usable_cpus()})"
        )


_ARGV: list[str] = []  # the command line main() was given (train --nproc starts the ranks with it)


def _training_side():
    """Import the torch side, or say in one line what is missing."""
    try:
        import gankit.train  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        raise GankitError(
            f"this command needs PyTorch and the gankit package ({e}): from a checkout, pip install torch -e .; "
            f"from the wheels, pip install torch gankit-{__version__}-py3-none-any.whl"
        ) from None


def _given(ctx: typer.Context, values: dict) -> dict:
    """The run settings the user typed on the command line (not defaults), as config field -> value."""
    from gankit.config import OPTION_FIELDS

    given = {}
    for option, field in OPTION_FIELDS.items():
        source = ctx.get_parameter_source(option)  # click's ParameterSource (typer may vendor its own click)
        if source is not None and source.name == "COMMANDLINE":
            value = values[option]
            given[field] = value.value if isinstance(value, Enum) else str(value) if isinstance(value, Path) else value
    return given


def _printable(text: object) -> str:
    """Untrusted text (a model's metadata) with control characters escaped: no terminal escape sequences."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


_RECEIVED = [signal.SIGINT]  # the signal that stopped the command: exit code 128 + it (130, 143, 129)


def _stop_on_signal(signum, frame):
    _RECEIVED[0] = signum
    raise KeyboardInterrupt  # handled as Ctrl-C: temporaries removed, whole files kept


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a user's mistake becomes one line on stderr and a non-zero exit code."""
    main_thread = threading.current_thread() is threading.main_thread()  # signals can only be set there
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    _RECEIVED[0] = signal.SIGINT
    _ARGV[:] = sys.argv[1:] if argv is None else list(argv)
    if main_thread:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _stop_on_signal)
    try:
        rc = typer.main.get_command(app).main(args=argv, prog_name=PROG, standalone_mode=False)
    except typer.Exit as e:
        rc = e.exit_code
    except USAGE_ERRORS as e:
        if e.format_message():  # empty when typer has just shown the help (no arguments given)
            print(f"error: {e.format_message()}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except GankitError as e:  # Interrupted too: its message says what was kept
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the group
            print(f"error: {e}", file=sys.stderr)
        if isinstance(e, Interrupted) and e.exit_code == 128 + signal.SIGINT:  # it saw a KeyboardInterrupt: which
            return 128 + int(_RECEIVED[0])  # signal made it is known here (training names its own signal)
        return e.exit_code
    except OSError as e:  # disk full, permission denied, ... while writing
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    finally:
        if main_thread:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if isinstance(rc, int) and rc == 130:  # typer turned a KeyboardInterrupt outside our handlers into 130
        print("error: interrupted (files are written whole or not at all: run the same command again)", file=sys.stderr)
        return 128 + int(_RECEIVED[0])
    return rc if isinstance(rc, int) else 0
