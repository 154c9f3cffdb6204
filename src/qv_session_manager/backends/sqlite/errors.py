"""Translate driver exceptions into this library's errors.

One table serves both drivers: the stdlib ``sqlite3`` and SQLCipher's ``sqlcipher3``
(whose exceptions are not ``sqlite3.Error`` subclasses but carry the same result
codes and messages).
"""

from __future__ import annotations

from ...errors import (
    CorruptStorageError,
    EncryptionKeyError,
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
    ("could not decode to utf-8", CorruptStorageError),  # the driver, for stored text that is not UTF-8
    ("disk is full", StorageFullError),
)


class EncryptedOrCorruptError(EncryptionKeyError, CorruptStorageError):
    """A file that is not plain SQLite and cannot be read with the key given (or without one).

    Without the right key an encrypted file and a damaged one look alike (both are
    random-looking pages), so this error is both an EncryptionKeyError and a
    CorruptStorageError: catch whichever the caller cares about.
    """


def translate(exc: Exception, doing: str) -> StorageError:
    """The library error for a driver exception raised while ``doing`` something.

    A UnicodeDecodeError counts too: the driver raises it for stored text that is not
    UTF-8, which only a damaged file holds (this library writes only valid text).
    """
    if isinstance(exc, UnicodeDecodeError):
        return CorruptStorageError(f"{doing} failed: the file holds text that is not UTF-8 (damaged): {exc.reason}")
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    kind: type[StorageError] | None = _BY_CODE.get(code & 0xFF) if code is not None else None
    if kind is None:
        message = str(exc).lower()
        kind = next((k for text, k in _BY_MESSAGE if text in message), StorageError)
    return kind(f"{doing} failed: {exc}")
