"""Files are written under a temporary name and renamed, so a crash never leaves half a file."""

import contextlib
import os
import re
import socket
import tempfile
import threading
import uuid
from pathlib import Path

from .errors import GankitError


def temporary_name(path: Path) -> Path:
    """A unique hidden name beside `path` (same folder, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
_TEMPORARY = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.\d+\.tmp$")


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and one rename.

    The hot path of PNG generation (one call per image): plain os calls on str paths, and a
    temporary name unique per host, process and thread, with no random name to draw.
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{_HOST}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(folder: Path) -> int:
    """Delete what a killed writer of this host left behind (atomic_write_bytes' temporaries of processes
    no longer running). Those of live processes, or of other hosts sharing the folder, are left alone."""
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        m = _TEMPORARY.match(name)
        if not m or m.group("host") != _HOST or _alive(int(m.group("pid"))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name))
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def prepare_output_dir(path: Path) -> Path:
    """Create `path` if needed and prove it is a writable folder, or raise one clear error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GankitError(f"output {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise GankitError(f"cannot write to {path}: {e.strerror or e}") from None
    return path


def prepare_output_file(path: Path) -> Path:
    """Check that `path` can be written as a file: its folder is writable and it is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise GankitError(f"output {path} is a folder, expected a file name")
    prepare_output_dir(path.parent if str(path.parent) else Path("."))
    return path
