"""Whole-file encryption of an SQLite store with SQLCipher (the ``[sqlcipher]`` extra).

A key is either

- a raw 32-byte key, as ``bytes`` or as a ``str`` in SQLCipher's notation
  ``x'<64 hex digits>'``: used as is (no derivation, so it must come from a random
  source or a key manager, never from a password);
- any other ``str``: a passphrase, from which SQLCipher derives the page key with
  PBKDF2 (a good fraction of a second at every open, on purpose: it slows down
  guessing).

The key is turned into the ``PRAGMA key`` statement that opens a connection and is
not kept anywhere else by this library. No message built here contains the key.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, cast

from ...errors import EncryptionKeyError, InvalidInputError
from ...install_hints import install_hint

#: The environment variable holding the key when a URL says ``?encrypted=1``.
KEY_VARIABLE = "QV_SESSION_MANAGER_SQLITE_KEY"
RAW_KEY_SIZE = 32
EXTRA_HINT = install_hint("sqlcipher3", "sqlcipher")

Key = str | bytes

_LOG_LEVEL_LOCK = threading.Lock()
_RAW_NOTATION = re.compile(r"x'[0-9a-fA-F]{64}'")
_LOOKS_RAW = re.compile(r"[xX]'.*'", re.DOTALL)


def load_driver() -> ModuleType:
    """SQLCipher's DB-API module (the stdlib ``sqlite3`` interface), imported on first use.

    Raises InvalidInputError naming the extra to install when it is missing.
    """
    try:
        from sqlcipher3 import dbapi2
    except ImportError:
        raise InvalidInputError(
            f"an encrypted SQLite store needs the SQLCipher driver (sqlcipher3): {EXTRA_HINT}"
        ) from None
    return cast(ModuleType, dbapi2)  # sqlcipher3 has no annotations


def key_statement(key: object) -> str:
    """The ``PRAGMA key`` statement for ``key``; InvalidInputError for an unusable key.

    An empty passphrase is refused: SQLCipher would take it as "no encryption".
    """
    if isinstance(key, (bytes, bytearray)):
        if len(key) != RAW_KEY_SIZE:
            raise InvalidInputError(f"a raw key must be {RAW_KEY_SIZE} bytes long, not {len(key)}")
        return f"PRAGMA key = \"x'{bytes(key).hex()}'\""
    if not isinstance(key, str):
        raise InvalidInputError(f"a key must be a str passphrase or {RAW_KEY_SIZE} bytes, not {type(key).__name__}")
    if not key:
        raise InvalidInputError("an empty passphrase would leave the file unencrypted; give a real key")
    if "\x00" in key:
        raise InvalidInputError("a passphrase cannot contain NUL characters")
    if _RAW_NOTATION.fullmatch(key):
        return f'PRAGMA key = "{key}"'
    if _LOOKS_RAW.fullmatch(key):
        raise InvalidInputError(f"a raw key written as x'...' must hold exactly {2 * RAW_KEY_SIZE} hex digits")
    return "PRAGMA key = '" + key.replace("'", "''") + "'"


def key_from_environment(variable: str) -> str:
    """The key held by the environment variable ``variable`` (same forms as a ``str`` key).

    Raises EncryptionKeyError when the variable is unset or empty: the store is
    encrypted and its key is missing.
    """
    if not isinstance(variable, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
        raise InvalidInputError(f"key_env must name an environment variable, not {variable!r}")
    value = os.environ.get(variable)
    if not value:
        raise EncryptionKeyError(
            f"the SQLite store is encrypted with the key in the environment variable {variable}, which is not set"
        )
    return value


@contextmanager
def quiet_log(db: Any) -> Iterator[None]:
    """Silence SQLCipher's own log while the block runs, then restore its level.

    SQLCipher writes a wrong key's failed page decryption to standard error; the
    store raises a typed error for it instead. The log level is process-wide, so
    the change is serialized and undone at once, leaving other logging as it was.
    """
    with _LOG_LEVEL_LOCK:
        (level,) = db.execute("PRAGMA cipher_log_level").fetchone()
        db.execute("PRAGMA cipher_log_level = NONE")
        try:
            yield
        finally:
            db.execute(f"PRAGMA cipher_log_level = {level}")
