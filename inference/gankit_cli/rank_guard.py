"""A rank must not outlive its launcher. `gankit train --nproc N` hands its own PID to the ranks it starts
(LAUNCHER_PID); each rank asks the kernel for SIGTERM when its parent dies (Linux's PR_SET_PDEATHSIG, kill -9
included) before it imports anything heavy, then checks that the parent is still that launcher: one killed while
the ranks were still starting would otherwise leave them running (as orphans, for minutes, holding memory).
Ranks of a plain torchrun get the same request; their launcher's PID is not known, so only a parent gone already
(the rank adopted by init) is caught there."""

from __future__ import annotations

import os
import signal
import sys

LAUNCHER_PID = "GANKIT_LAUNCHER_PID"
PR_SET_PDEATHSIG = 1


def stop_with_launcher() -> None:
    """In a rank (started by `train --nproc` or torchrun): SIGTERM when the launcher dies; and now, if it has died
    already. Elsewhere, and off Linux, nothing."""
    expected = os.environ.get(LAUNCHER_PID, "")
    if not (expected or "TORCHELASTIC_RUN_ID" in os.environ) or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    parent = os.getppid()
    gone = parent != int(expected) if expected.isdigit() else parent == 1
    if gone:  # the launcher died before the request took effect: stop as it would have made us
        os.kill(os.getpid(), signal.SIGTERM)
