"""The output lock: a second run writing the same outputs at the same time is refused."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from geoseg.errors import OutputExistsError


@contextmanager
def output_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the lock file ``path`` for a run; a second run is refused.

    The lock is an advisory ``flock``: the operating system releases it when the process dies,
    so a killed run never leaves a stale lock (only its harmless file). A run that ends removes
    the file while it still holds the lock; a run that locked a file just unlinked this way
    (it opened it before the unlink) sees that the path no longer names its file, and tries again.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _locked(path)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _locked(path: Path) -> int:
    """A descriptor of the file at ``path`` (created if need be) holding its exclusive lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OutputExistsError(
                f"another geoseg run ({holder}) is writing {path.parent}; wait for it to finish "
                "or choose another output folder"
            ) from exc
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file as it finished: lock the new one
