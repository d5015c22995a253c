"""Files are written under a temporary name beside the target and renamed, so a crash never leaves half a file;
docs/design.md ("Temporary names and durability") has the naming and fsync rules."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
import threading
from pathlib import Path

from .errors import GankitError

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
_TEMPORARY = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.\d+\.tmp$")


def temporary_name(path) -> str:
    """The temporary name beside `path` for this host, process and thread."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".{name}.{_HOST}.{os.getpid()}.{threading.get_ident()}.tmp")


def fsync_folder(folder) -> None:
    """Make a rename inside `folder` durable (a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(os.fspath(folder) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, durable: bool = True):
    """Yield a temporary path beside `path` for the caller to write; rename it onto `path` only if the block
    succeeds (fsync'ed first when durable). On any failure, or Ctrl-C, the temporary is removed."""
    path = Path(path)
    tmp = Path(temporary_name(path))
    try:
        yield tmp
        if durable:
            _fsync_file(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _rename_into_place(tmp, path, durable)


def _fsync_file(path) -> None:
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temporary(path, data: bytes, durable: bool) -> str:
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def atomic_write_bytes(path, data: bytes, durable: bool = False) -> None:
    """Write `data` to `path` through a temporary file in the same folder and one rename.

    The hot path of PNG generation (one call per image): plain os calls on str paths. durable: fsync
    the file before and the folder after the rename (job files, metadata)."""
    path = os.fspath(path)
    _rename_into_place(_write_temporary(path, data, durable), path, durable)


def _rename_into_place(tmp, path, durable: bool) -> None:
    """Rename the temporary onto `path` (and fsync the folder when durable); on failure the temporary goes."""
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_folder(os.path.dirname(os.fspath(path)))


def create_exclusive(path, data: bytes) -> bool:
    """Create `path` holding `data`, whole, unless it exists: True if this call created it, False if it was
    there. Of two processes racing, exactly one creates it (a hard link cannot replace a file), and nobody ever
    sees it half-written. On a file system without hard links (some network and FUSE mounts) it falls back to
    O_EXCL and writes in place: exactly one creator still wins, but a reader may meet the file for an instant
    before its bytes are there (readers of a claim then report it unreadable, and a rerun reads it whole)."""
    path = os.fspath(path)
    tmp = _write_temporary(path, data, durable=True)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as e:  # file systems without hard links: O_EXCL, written in place
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    fsync_folder(os.path.dirname(path))
    return True


def remove_stale_temporaries(folder) -> int:
    """Delete what a killed writer of this host left behind in `folder` (temporaries of processes no
    longer running). Those of live processes, or of other hosts sharing the folder, are left alone."""
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
    """Whether process `pid` of this host still runs (temporaries and web's build folders are named for it)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _writable_error(path: Path, e: OSError) -> GankitError:
    return GankitError(f"cannot write to {path}: cannot create a file there ({e.strerror or e})")


def prepare_output_dir(path) -> Path:
    """Create `path` if needed and prove it is a writable folder, or raise one clear error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GankitError(f"output {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = temporary_name(path / "probe")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.unlink(probe)
    except OSError as e:
        raise _writable_error(path, e) from None
    return path


def same_path(a, b) -> bool:
    """Whether two paths name one file or folder (os.path.samefile where both exist, else resolved)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return Path(a).resolve() == Path(b).resolve()


def is_inside(path, folder) -> bool:
    """Whether `path` lies in `folder` or below it (resolved)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return folder == path or folder in path.parents


def refuse_overlap(output, what: str, inputs: dict) -> None:
    """One clear error when the output is one of `inputs` (description -> path): a command never writes over
    what it reads, nor one of its outputs over another."""
    for name, path in inputs.items():
        if path is not None and same_path(output, path):
            raise GankitError(f"{what} {output} is {name}: choose another path")


def _check_replaceable(path: Path, ours, force: bool) -> None:
    """An existing file is replaced only when ours(path) says it is of the kind this command writes, or with
    force. A link is never written through."""
    if force or not os.path.lexists(path):
        return
    if os.path.islink(path) or not path.is_file() or ours is None or not ours(path):
        raise GankitError(
            f"{path} exists and is not a file this command wrote: choose another path, or add --force to replace it"
        )


def starts_with(prefix: bytes):
    """A test for _check_replaceable: the file begins with `prefix` (a format's magic bytes)."""

    def test(path) -> bool:
        try:
            with open(path, "rb") as f:
                return f.read(len(prefix)) == prefix
        except OSError:
            return False

    return test


def prepare_output_file(path, ours=None, force: bool = True) -> Path:
    """Check that `path` can be written as a file (not a folder; a file can be created beside it), creating
    its folder if needed, and remove a killed writer's temporaries there (a half-written npz is large).
    force False: an existing file is replaced only when ours(path) is true (a file of the kind this command
    writes), so that a mistyped path destroys nothing (a shipped model, a user's data)."""
    path = Path(path)
    if path.is_dir():
        raise GankitError(f"output {path} is a folder, expected a file name")
    _check_replaceable(path, ours, force)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        try:
            folder.mkdir(parents=True)
        except OSError as e:
            raise _writable_error(folder, e) from None
    elif not folder.is_dir():
        raise GankitError(f"output {path}: {folder} exists and is not a folder")
    probe = temporary_name(path)
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.unlink(probe)
    except OSError as e:
        raise _writable_error(folder, e) from None
    remove_stale_temporaries(folder)
    return path


def remove_stale_builds(folder: Path, kind: str) -> None:
    """Take away what a killed build of this host left in `folder`: its temporary folder (.NAME.XXXX.KIND.HOST.PID),
    or a replaced folder not yet removed (.NAME.KIND.HOST.PID.old). A replaced folder whose NAME is gone (the build was
    killed between its two renames) is renamed back to NAME instead: it may hold the user's own files. Another
    host's (a shared disk) and a running build's are left alone."""
    pattern = re.compile(rf"^\.(?P<name>.+)\.{re.escape(kind)}\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)(?P<old>\.old)?$")
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            m = pattern.match(name)
            if not m or m.group("host") != _HOST or _alive(int(m.group("pid"))):
                continue
            if not (folder / name).is_dir() or (folder / name).is_symlink():
                continue
            if m.group("old") and not os.path.lexists(folder / m.group("name")):
                os.rename(folder / name, folder / m.group("name"))  # the old folder back where it was
            else:
                shutil.rmtree(folder / name, ignore_errors=True)


@contextlib.contextmanager
def folder_aside(out: Path, kind: str, what: str):
    """A temporary folder beside `out` to build a whole folder in (named for this host and process:
    .NAME.XXXX.KIND.HOST.PID, so that a later run can tell a killed build's from a running one's). The caller renames
    it into place inside the block; on any failure it is removed, and an OSError becomes one line that names `out`,
    never the temporary."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_builds(out.parent, kind)
        build = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=f".{kind}.{_HOST}.{os.getpid()}", dir=out.parent))
    except OSError as e:
        raise GankitError(f"cannot write {what} to {out}: {e.strerror or e}; nothing was changed") from None
    try:
        yield build
    except OSError as e:
        shutil.rmtree(build, ignore_errors=True)
        raise GankitError(f"cannot write {what} to {out}: {e.strerror or e}; nothing was changed") from None
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise


def sha256_of(path) -> str:
    """The sha256 of a file's bytes, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
