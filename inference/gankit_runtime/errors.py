"""The runtime's errors: a user's mistake is one line, an interruption names its signal."""

import signal

received_signal = signal.SIGINT  # the signal that stopped a command (the CLI sets it when SIGTERM or SIGHUP arrive)


class GankitError(Exception):
    """A mistake in what the user asked for or gave us (bad file, bad option): the CLI prints its message as one
    line on stderr and exits non-zero. Anything else is a bug and keeps its traceback."""

    exit_code = 1


class Interrupted(GankitError):
    """Ctrl-C, SIGTERM or SIGHUP stopped a command; the message says what was kept. Exit code 128 + signal
    (the one received_signal names unless given)."""

    def __init__(self, message: str, signal_number: int | None = None):
        super().__init__(message)
        self.exit_code = 128 + int(received_signal if signal_number is None else signal_number)
