"""Opening an SQLite file without write access: SQLite's ``mode=ro`` and ``immutable=1``.

A read-only connection never creates, migrates or changes the file. ``mode=ro``
still follows other processes' writes (it reads the WAL through the ``-shm`` file);
``immutable=1`` tells SQLite that nothing changes the file while it is open, so it
takes no locks and ignores the WAL: right for a file on read-only media or a copy
nobody writes, wrong for a store in use.

A WAL-mode file in a directory this process cannot write, with no ``-shm`` beside
it, cannot be opened with ``mode=ro`` (SQLite cannot create the shared memory). When
no WAL content waits either (the last writer closed cleanly, as this library's
stores do), nothing can be missed by reading the file alone, so :func:`connect_read_only`
then opens it as immutable instead.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from urllib.parse import quote

log = logging.getLogger("qv_session_manager")

#: SQLITE_READONLY_CANTINIT and SQLITE_READONLY_DIRECTORY: no -shm can be set up.
_NO_SHARED_MEMORY = {1288, 1544}


def file_uri(path: str, *, immutable: bool) -> str:
    """The ``file:`` URI opening the absolute ``path`` read-only (``?mode=ro``) or immutable."""
    return f"file:{quote(path)}?{'mode=ro&immutable=1' if immutable else 'mode=ro'}"


def _wal_is_empty(path: str) -> bool:
    """Whether no WAL content waits beside ``path`` (no ``-wal`` file, or an empty one)."""
    try:
        return os.path.getsize(path + "-wal") == 0
    except FileNotFoundError:
        return True
    except OSError:
        return False


def connect_read_only(
    connect: Callable[[str], sqlite3.Connection], path: str, *, immutable: bool, error: type[Exception]
) -> tuple[sqlite3.Connection, bool]:
    """A read-only connection to the absolute ``path`` and whether it is immutable.

    ``connect`` opens a ``file:`` URI (keying it if need be); ``error`` is the driver's
    base exception. With ``immutable`` False, a file that ``mode=ro`` cannot open for
    want of shared memory, and that has no WAL content, is opened immutable (logged at
    INFO); any other failure is raised as the driver raised it.
    """
    if immutable:
        return connect(file_uri(path, immutable=True)), True
    try:
        db = connect(file_uri(path, immutable=False))
        try:
            db.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        except BaseException:
            db.close()
            raise
    except error as exc:
        if getattr(exc, "sqlite_errorcode", None) not in _NO_SHARED_MEMORY or not _wal_is_empty(path):
            raise
        log.info("%s: no shared memory can be made beside it and no WAL waits: reading it as immutable", path)
        return connect(file_uri(path, immutable=True)), True
    return db, False
