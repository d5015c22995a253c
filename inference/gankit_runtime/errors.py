class GankitError(Exception):
    """A mistake in what the user asked for or gave us (bad file, bad option).

    The CLI prints its message as one line on stderr and exits non-zero; anything else is a bug
    and keeps its traceback.
    """
