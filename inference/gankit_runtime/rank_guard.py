"""A training rank must not outlive its launcher. Importing this module does nothing; a rank calls
stop_with_launcher() itself (the gankit command does, before its heavy imports; so does gankit.distributed).

Each rank asks the kernel for SIGTERM when its parent dies (Linux's PR_SET_PDEATHSIG, kill -9 included).
`gankit train --nproc N` also hands its own PID to the ranks it starts (LAUNCHER_PID): a rank whose parent is not
that PID any more was orphaned while it started, before the request took effect, and stops at once.
Ranks of a plain torchrun get the death signal alone. Their launcher's PID is not known, and "my parent is PID 1"
proves nothing: torchrun is PID 1 itself when it is a container's entrypoint (Docker CMD, a Kubernetes pod)."""

from __future__ import annotations

import os
import signal
import sys

LAUNCHER_PID = "GANKIT_LAUNCHER_PID"
PR_SET_PDEATHSIG = 1


def stop_with_launcher() -> None:
    """In a rank (started by `train --nproc` or torchrun): SIGTERM when the launcher dies; and now, if the launcher
    that `--nproc` named has died already. Elsewhere, and off Linux, nothing."""
    expected = os.environ.get(LAUNCHER_PID, "")
    if not (expected or "TORCHELASTIC_RUN_ID" in os.environ) or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if expected.isdigit() and os.getppid() != int(expected):
        os.kill(
            os.getpid(), signal.SIGTERM
        )  # the launcher died before the request took effect: stop as it would have made us
