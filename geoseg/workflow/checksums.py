"""Input checksums remembered between runs, so that an unchanged input is not read again.

A step's fingerprint holds a checksum of every file it reads (docs/DESIGN.md §11), so every run
read its inputs whole once more before computing anything (600 MB for a 25 Mpx scene of six
float32 bands; seconds from a slow disk or a network share). :func:`remembered` keeps each local
file's checksum in a small SQLite database in the user's cache folder (:func:`cache_dir`), keyed
by the file's resolved path, size, modification and change times (ns), inode and device: a file
rewritten (even at the same size), touched, or replaced by another is read again.

SQLite serialises concurrent runs (a writer waits at most :data:`BUSY_TIMEOUT_S`). The cache
never fails a run: a missing, corrupt, locked or unwritable one is logged at debug level and the
file is simply hashed. Delete the file to reset it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

log = logging.getLogger(__name__)

#: Overrides where geoseg keeps caches (tests point it at a temporary folder).
CACHE_ENV = "GEOSEG_CACHE_DIR"
#: The database, inside :func:`cache_dir`.
CACHE_FILE = "checksums.sqlite3"
#: How long a run waits for another run's write to the cache before going without it.
BUSY_TIMEOUT_S = 2.0
#: A file modified this recently is hashed but not remembered: a write within the same tick of a
#: coarse file-system clock (FAT's is 2 s) would leave its size and times unchanged.
RACY_NS = 2 * 10**9

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS checksums (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
    " ctime_ns INTEGER, inode INTEGER, device INTEGER, kind TEXT, digest TEXT)"
)

Identity = tuple[str, int, int, int, int, int]


def cache_dir() -> Path:
    r"""Where geoseg keeps caches: ``$GEOSEG_CACHE_DIR``, else the user's cache folder.

    The platform's convention: ``$XDG_CACHE_HOME/geoseg`` (default ``~/.cache/geoseg``) on Linux,
    ``~/Library/Caches/geoseg`` on macOS, ``%LOCALAPPDATA%\geoseg\Cache`` on Windows.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "geoseg"
    if os.name == "nt":
        local = os.environ.get("LOCALAPPDATA")
        return (Path(local) if local else Path.home() / "AppData" / "Local") / "geoseg" / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "geoseg"


def remembered(path: Path, kind: str, compute: Callable[[Path], str]) -> str:
    """``compute(path)``, a checksum of kind ``kind``, or the one remembered for the same file.

    A checksum is remembered only when the file did not change while it was computed and was
    last modified (or its inode changed: ``cp -p`` and ``rsync -t`` keep an old mtime) more than
    :data:`RACY_NS` before.
    """
    before = _identity(path)
    found = _lookup(before, kind)
    if found is not None:
        return found
    digest = compute(path)
    if _identity(path) == before and time.time_ns() - max(before[2], before[3]) >= RACY_NS:
        _store(before, kind, digest)
    return digest


def _identity(path: Path) -> Identity:
    """The cache key of ``path``: resolved path, size, mtime, ctime, inode and device."""
    stat = os.stat(path)
    real = os.path.realpath(path)
    return (real, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev)


def _connect() -> sqlite3.Connection:
    """The cache database, created (with its folder) when missing."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / CACHE_FILE, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        db.execute(_SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


def _lookup(key: Identity, kind: str) -> str | None:
    """The digest of kind ``kind`` remembered for ``key``; ``None`` when none (or no cache)."""
    try:
        with closing(_connect()) as db:
            row = db.execute(
                "SELECT digest FROM checksums WHERE path = ? AND size = ? AND mtime_ns = ? AND "
                "ctime_ns = ? AND inode = ? AND device = ? AND kind = ?",
                (*key, kind),
            ).fetchone()
    except (OSError, sqlite3.Error) as exc:
        log.debug("checksum cache in %s not used: %s", cache_dir(), exc)
        return None
    return str(row[0]) if row else None


def _store(key: Identity, kind: str, digest: str) -> None:
    """Remember ``digest`` for ``key`` (replacing what was remembered for that path)."""
    try:
        with closing(_connect()) as db:
            db.execute(
                "INSERT OR REPLACE INTO checksums VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, kind, digest),
            )
    except (OSError, sqlite3.Error) as exc:
        log.debug("checksum of %s not remembered in %s: %s", key[0], cache_dir(), exc)
