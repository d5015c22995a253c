"""The runtime's errors: a user's mistake is one line; an interruption says what was kept."""

import signal


class GankitError(Exception):
    """A mistake in what the user asked for or gave us (bad file, bad option): the CLI prints its message as one
    line on stderr and exits non-zero. Anything else is a bug and keeps its traceback."""

    exit_code = 1


class Interrupted(GankitError):
    """Ctrl-C (or a signal the caller turned into KeyboardInterrupt) stopped a command; the message says what was
    kept. Exit code 128 + the signal: SIGINT's unless the caller, who knows which signal came, says otherwise."""

    def __init__(self, message: str, signal_number: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = 128 + int(signal_number)
