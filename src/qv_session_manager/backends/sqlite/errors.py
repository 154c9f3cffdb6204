"""Translate sqlite3 exceptions into this library's errors."""

from __future__ import annotations

import sqlite3

from ...errors import (
    CorruptStorageError,
    ReadOnlyStorageError,
    StorageBusyError,
    StorageError,
    StorageFullError,
)

# Primary result codes (https://www.sqlite.org/rescode.html).
_BY_CODE: dict[int, type[StorageError]] = {
    5: StorageBusyError,  # SQLITE_BUSY
    6: StorageBusyError,  # SQLITE_LOCKED
    8: ReadOnlyStorageError,  # SQLITE_READONLY
    11: CorruptStorageError,  # SQLITE_CORRUPT
    13: StorageFullError,  # SQLITE_FULL
    26: CorruptStorageError,  # SQLITE_NOTADB
}
_BY_MESSAGE = (
    ("locked", StorageBusyError),
    ("readonly", ReadOnlyStorageError),
    ("malformed", CorruptStorageError),
    ("not a database", CorruptStorageError),
    ("disk is full", StorageFullError),
)


def translate(exc: sqlite3.Error, doing: str) -> StorageError:
    """The library error for a sqlite3 exception raised while ``doing`` something."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    kind: type[StorageError] | None = _BY_CODE.get(code & 0xFF) if code is not None else None
    if kind is None:
        message = str(exc).lower()
        kind = next((k for text, k in _BY_MESSAGE if text in message), StorageError)
    return kind(f"{doing} failed: {exc}")
