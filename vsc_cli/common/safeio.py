"""Writing files so that nothing is lost or half-written, and one writer per output.

Every file vsc writes (checkpoints, logs rewritten on resume, metrics, HDF5 codes, downloads,
figures) goes through `atomic_output`: it is written under a hidden temporary name in the same
folder (so the final rename never crosses file systems), flushed to disk with fsync, then renamed
over the destination. A `kill -9` at any moment leaves either the previous complete file or the
new complete one, plus at most a hidden `.NAME.partial-PID` file that no reader mistakes for output
(the next write of the same file deletes it once that PID is gone).

`OutputLock` refuses a second process aimed at the same output while the first one runs. It is an
flock on a hidden `.NAME.lock` file beside the output: the kernel drops it when its holder exits,
even by SIGKILL, so a crashed run never leaves a stale lock behind.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

from vsc_cli.common.errors import VscError, WriteError

# errno values that mean "the disk (or the user's quota, or a file size limit) is full"
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


def partial_name(path: Path) -> Path:
    """The hidden temporary name a file is written under before it is renamed into place."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def check_writable_folder(path: Path) -> None:
    """A one-line VscError, before any work is done, when `path` cannot be created in its folder."""
    folder = path.parent
    if not folder.is_dir():
        raise WriteError(f"cannot write {path}: folder {folder} does not exist")
    probe = partial_name(path)
    try:  # the only reliable test (root ignores permission bits; read-only and special file systems)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.unlink(probe)
    except FileExistsError:
        pass
    except OSError as exc:
        raise WriteError(f"cannot write {path}: folder {folder} is not writable ({exc.strerror})") from None


_HDF5_ERRNO = re.compile(r"errno = (\d+)")


def write_error(exc: Exception, path: Path | str) -> WriteError:
    """A VscError for a failed write, also for h5py's RuntimeErrors that carry 'errno = N' in their text."""
    code = getattr(exc, "errno", None)
    if code is None and (m := _HDF5_ERRNO.search(str(exc))):
        code = int(m.group(1))
    if code is not None:
        return WriteError(describe_os_error(OSError(code, os.strerror(code)), path))
    return WriteError(f"cannot write {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def describe_os_error(exc: OSError, path: Path | str) -> str:
    """One line for an OSError met while writing `path`."""
    if exc.errno in _FULL:
        return f"cannot write {path}: the disk is full ({os.strerror(exc.errno)}); any previous version is kept"
    if exc.errno in _DENIED:
        return f"cannot write {path}: permission denied"
    return f"cannot write {path}: {exc.strerror or exc}"


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_partials(path: Path) -> None:
    """Delete `.NAME.partial-PID` files left by processes that were killed (their PID is gone)."""
    for stale in path.parent.glob(f".{path.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                stale.unlink()


@contextlib.contextmanager
def atomic_output(path: Path | str):
    """Yield a temporary path to write; on success fsync it and rename it to `path`.

    On any exception (or KeyboardInterrupt) the temporary file is removed and `path` is untouched.
    OSErrors (disk full, permissions) become one-line VscErrors naming `path`.
    """
    path = Path(path)
    tmp = partial_name(path)
    remove_stale_partials(path)
    try:
        try:
            yield tmp
        except OSError as exc:  # from the caller's writing: name disk-full and permission problems
            if exc.errno in _FULL or exc.errno in _DENIED:
                raise WriteError(describe_os_error(exc, path)) from exc
            raise
        try:
            fsync_file(tmp)
            os.replace(tmp, path)
        except OSError as exc:
            raise WriteError(describe_os_error(exc, path)) from exc
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write(path: Path | str, write) -> None:
    """Call write(tmp_path) and move the result into place atomically (see atomic_output)."""
    with atomic_output(path) as tmp:
        write(tmp)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_npz(path: Path | str, arrays: dict, compressed: bool = False) -> None:
    """numpy arrays into an .npz file (np.savez, or np.savez_compressed), moved into place atomically."""
    import numpy as np

    def write(tmp):
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)

    atomic_write(path, write)


class OutputLock:
    """Exclusive, non-blocking lock on an output (a file or a run folder) for one process.

    with OutputLock(path, "vsc encode"): ...   # VscError at once if another process holds it
    """

    def __init__(self, path: Path | str, what: str = "vsc"):
        path = Path(path)
        self.lock_path = path / ".lock" if path.is_dir() else path.with_name(f".{path.name}.lock")
        self.path, self.what, self.fd = path, what, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking (documented in docs/reliability.md)
            return self
        try:
            self.fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise VscError(describe_os_error(exc, self.lock_path)) from exc
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            self.fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise VscError(f"{self.path} is being written by another process ({holder}); "
                               "wait for it to finish or choose another output") from None
            raise VscError(f"cannot lock {self.lock_path}: {exc.strerror}") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()}: {self.what}\n".encode(), 0)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock; the lock file stays (harmless, hidden)
            self.fd = None
        return False
