class GankitError(Exception):
    """A mistake in what the user asked for or gave us (bad file, bad option).

    The CLI prints its message as one line on stderr and exits non-zero; anything else is a bug
    and keeps its traceback.
    """

    exit_code = 1


class Interrupted(GankitError):
    """Ctrl-C or SIGTERM stopped a command; the message says what was kept. Exit code 128 + signal."""

    def __init__(self, message: str, signal_number: int = 2):
        super().__init__(message)
        self.exit_code = 128 + signal_number
