"""`train --nproc N`: torchrun's launcher in this process, with gankit's manners: a failure is the ranks' one line
(rank 0 speaks) and their exit code, not torchrun's traceback; Ctrl-C or SIGTERM exit 130 or 143."""

from __future__ import annotations

import logging
from pathlib import Path

CLI = Path(__file__).resolve().parents[2] / "cli.py"


def without_nproc(argv: list[str]) -> list[str]:
    """The command line for each rank: the same, less --nproc and its value."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def ranks_exit_code(failures: dict) -> int:
    """The exit code of failed ranks ({local rank: failure with .exitcode}, negative for a signal). The first rank to
    fail makes torchrun stop the others with SIGTERM, so an error's own code wins over a signal, then the lowest rank."""
    failure = min(failures.items(), key=lambda kv: (kv[1].exitcode <= 0, kv[0]))[1]
    return failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode


def launch(nproc: int, argv: list[str]) -> int:
    """Run `cli.py ARGV` (less --nproc) on nproc processes of this machine (torchrun --standalone); the exit code."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)  # its warnings and failure reports
    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", str(CLI), *without_nproc(argv)])
    try:
        run(args)
    except ChildFailedError as e:
        return ranks_exit_code(e.failures)
    except SignalException as e:
        return 128 + int(e.sigval)
    return 0
