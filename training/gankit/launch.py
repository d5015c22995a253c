"""`gankit train --nproc N`: torchrun's launcher in this process, with gankit's manners: a failure is the ranks' one
line (rank 0 speaks) and their exit code, not torchrun's traceback; Ctrl-C or SIGTERM exit 130 or 143. The ranks
run `python -m gankit_cli`, so it works from an installed wheel as from a checkout."""

from __future__ import annotations

import logging
import os
import signal
import sys

from gankit_runtime.generator import usable_cpus
from gankit_runtime.rank_guard import LAUNCHER_PID

STOP_SIGNALS = {int(signal.SIGTERM), int(signal.SIGINT), int(getattr(signal, "SIGHUP", 1))}


def most_ranks(device: str) -> int:
    """The most processes one machine may run: one per usable CPU, or one per visible GPU with CUDA."""
    if str(device).startswith("cuda"):
        import torch

        return max(1, torch.cuda.device_count())
    return usable_cpus()


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


def _signal_of(code: int) -> int | None:
    """The signal that ended a rank: torchrun reports -N for a signal, and a rank that caught one exits 128 + N."""
    if code < 0:
        return -code
    return code - 128 if code in {128 + s for s in STOP_SIGNALS} else None


def ranks_exit_code(failures: dict) -> tuple[int, int, int | None]:
    """(local rank, exit code, signal or None) of the failure that stopped the run ({local rank: failure with .exitcode}). The first
    rank to fail makes torchrun stop the others with SIGTERM, so a rank's own error wins, then a rank killed by
    another signal (kill -9, a crash), then the lowest rank."""

    def rank_order(item):
        sig = _signal_of(item[1].exitcode)
        return (sig is not None, sig in STOP_SIGNALS, item[0])

    rank, failure = min(failures.items(), key=rank_order)
    code = failure.exitcode
    return rank, code if code > 0 else 128 - code, _signal_of(code)


def launch(nproc: int, argv: list[str]) -> int:
    """Run `gankit ARGV` (less --nproc) on nproc processes of this machine (torchrun --standalone); the exit code."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)  # its warnings and failure reports
    os.environ[LAUNCHER_PID] = str(os.getpid())  # inherited by the ranks: see gankit_runtime.rank_guard
    safe_path = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"  # `python -m` puts the working directory first: a folder there named as a
    # package (gankit_cli, torch) must not shadow the installed one in the ranks
    args = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "--module", "gankit_cli", *without_nproc(argv)]
    )
    try:
        run(args)
    except ChildFailedError as e:
        rank, code, sig = ranks_exit_code(e.failures)
        if sig is not None and sig not in STOP_SIGNALS:  # it said nothing itself: say what happened to it
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
            print(f"error: rank {rank} was killed by {name}; the other ranks were stopped", file=sys.stderr)
        return code
    except SignalException as e:
        return 128 + int(e.sigval)
    finally:
        os.environ.pop(LAUNCHER_PID, None)
        if safe_path is None:
            os.environ.pop("PYTHONSAFEPATH", None)
        else:
            os.environ["PYTHONSAFEPATH"] = safe_path
    return 0
