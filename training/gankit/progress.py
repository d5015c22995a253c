"""A one-line progress bar on a terminal; one line per epoch in logs and CI."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, stream=sys.stderr, every: float = 0.25):
        self.stream, self.every = stream, every
        self.tty = stream.isatty()
        self._last = 0.0

    def update(self, text: str, done: int, total: int) -> None:
        if not self.tty or time.perf_counter() - self._last < self.every:
            return
        self._last = time.perf_counter()
        filled = int(20 * done / max(total, 1))
        self.stream.write(f"\r[{'#' * filled}{'.' * (20 - filled)}] {done}/{total} {text}\033[K")
        self.stream.flush()

    def end(self, text: str) -> None:
        self.stream.write(("\r" if self.tty else "") + text + ("\033[K\n" if self.tty else "\n"))
        self.stream.flush()
