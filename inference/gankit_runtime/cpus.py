"""How many CPUs this process may use (its affinity mask where the platform has one: containers, taskset)."""

import os


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
