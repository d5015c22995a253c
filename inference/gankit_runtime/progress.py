"""A one-line progress bar on a terminal; in logs (nohup, Slurm, CI) a plain line every PLAIN_EVERY seconds."""

from __future__ import annotations

import sys
import time

PLAIN_EVERY = 30.0  # seconds between progress lines without a terminal (tqdm's habit in logs)


class Progress:
    def __init__(self, stream=None, every: float = 0.25, plain_every: float = PLAIN_EVERY):
        self.stream = stream = stream or sys.stderr  # the stream of the moment, not the one at import
        self.tty = stream.isatty()
        self.every = every if self.tty else plain_every
        self._last = 0.0 if self.tty else time.perf_counter()

    def update(self, text: str, done: int, total: int) -> None:
        if time.perf_counter() - self._last < self.every:
            return
        self._last = time.perf_counter()
        if not self.tty:
            self.stream.write(f"{done}/{total} {text}\n")
            self.stream.flush()
            return
        filled = int(20 * done / max(total, 1))
        self.stream.write(f"\r[{'#' * filled}{'.' * (20 - filled)}] {done}/{total} {text}\033[K")
        self.stream.flush()

    def clear(self) -> None:
        """Take the bar off a terminal's line (logs keep their lines)."""
        if self.tty and self._last:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def end(self, text: str) -> None:
        self.stream.write(("\r" if self.tty else "") + text + ("\033[K\n" if self.tty else "\n"))
        self.stream.flush()
