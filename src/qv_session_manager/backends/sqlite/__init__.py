"""The SQLite backend (``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://``).

An encrypted file (SQLCipher) is named by where its key is, never by the key:
``sqlite:///chats.db?key_env=MY_VARIABLE`` reads it from that environment variable,
``sqlite:///chats.db?encrypted=1`` from ``QV_SESSION_MANAGER_SQLITE_KEY``.
``?mode=ro`` opens an existing file without write access and ``?immutable=1`` reads
it as a file nothing changes (SQLite's own URI options; see SQLiteStore).
``?driver=pysqlite3`` uses the ``pysqlite3`` module instead of the stdlib's. In Python
the key may also be given as the option ``key=`` (``open_store(url, key=...)``,
``SessionManager(url=..., key=...)`` or ``SessionManager(db_path=..., key=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ...errors import InvalidInputError
from ...hookspecs import hookimpl
from ...registry import Backend
from . import cipher
from .store import SQLiteStore

__all__ = ["SQLiteStore", "open_path", "open_url"]


_OPTIONS = {"synchronous", "busy_timeout", "purge", "key", "key_env", "encrypted", "mode", "immutable", "driver"}
#: The values of ``mode``: SQLite's ``ro`` (read-only), and ``rwc``, the default (read-write, created when missing).
_MODES = {"ro", "rwc"}
_YES = {"1", "true", "yes", "on"}
_NO = {"0", "false", "no", "off"}


def _key_of(options: Mapping[str, Any]) -> cipher.Key | None:
    """The key the options give (``key``, ``key_env``, ``encrypted``), or None for a plain file.

    ``key_env`` names the environment variable holding the key; ``encrypted`` true
    without ``key_env`` means :data:`cipher.KEY_VARIABLE`. Raises InvalidInputError
    for contradicting options, EncryptionKeyError for an unset variable.
    """
    encrypted: Any = options.get("encrypted")
    if isinstance(encrypted, str):
        word = encrypted.strip().lower()
        if word not in _YES | _NO:
            raise InvalidInputError(f"encrypted must be 1/true or 0/false, not {encrypted!r}")
        encrypted = word in _YES
    elif encrypted is not None and not isinstance(encrypted, bool):
        raise InvalidInputError(f"encrypted must be a bool, not {type(encrypted).__name__}")
    given = [name for name in ("key", "key_env") if options.get(name) is not None]
    if len(given) > 1:
        raise InvalidInputError("give the key either as key= or as key_env=, not both")
    if encrypted is False and given:
        raise InvalidInputError(f"encrypted=0 contradicts {given[0]}=")
    if "key" in given:
        return options["key"]  # type: ignore[no-any-return]
    if "key_env" in given:
        return cipher.key_from_environment(options["key_env"])
    if encrypted:
        return cipher.key_from_environment(cipher.KEY_VARIABLE)
    return None


def _flag(options: Mapping[str, Any], name: str) -> bool:
    """A yes/no option given as a bool or as a word of a URL (``1``/``true``/``0``/``false``...)."""
    value: Any = options.get(name, False)
    if isinstance(value, str) and value.strip().lower() in _YES | _NO:
        return value.strip().lower() in _YES
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be 1/true or 0/false, not {value!r}")
    return value


def _read_only(options: Mapping[str, Any]) -> bool:
    mode = options.get("mode", "rwc")
    if mode not in _MODES:
        raise InvalidInputError(f"mode must be 'ro' (read-only) or 'rwc' (the default), not {mode!r}")
    return bool(mode == "ro")


def open_path(path: object, options: Mapping[str, Any]) -> SQLiteStore:
    """Open the SQLite file ``path`` with ``options`` (``synchronous``, ``busy_timeout``,
    ``purge``, ``mode="ro"``, ``immutable``, ``driver``; for an encrypted file ``key``, or
    ``key_env``/``encrypted`` naming where it is).

    Option values may be strings (from a URL). Raises InvalidInputError for unknown
    options and unusable values.
    """
    unknown = set(options) - _OPTIONS
    if unknown:
        raise InvalidInputError(f"unknown SQLite option(s): {', '.join(sorted(unknown))}")
    if isinstance(path, str) and "://" in path:
        raise InvalidInputError(f"{path!r} looks like a URL: pass it as url=, not as a database path")
    timeout: Any = options.get("busy_timeout", 30.0)
    if isinstance(timeout, str):
        try:
            timeout = float(timeout)
        except ValueError:
            raise InvalidInputError(f"busy_timeout must be a number of seconds, not {timeout!r}") from None
    return SQLiteStore(
        path,  # type: ignore[arg-type]  # SQLiteStore checks it
        synchronous=options.get("synchronous", "full"),
        busy_timeout=timeout,
        purge=options.get("purge", "on_close"),
        key=_key_of(options),
        read_only=_read_only(options),
        immutable=_flag(options, "immutable"),
        driver=options.get("driver"),
    )


def open_url(url: str, options: Mapping[str, Any]) -> SQLiteStore:
    """Open ``sqlite:///path`` the way SQLAlchemy spells it: three slashes then a
    relative path, four for an absolute one; ``sqlite://`` alone is in memory.
    ``?synchronous=normal&busy_timeout=5&purge=immediate`` in the URL set options too,
    ``?mode=ro`` and ``?immutable=1`` open the file read-only, ``?driver=pysqlite3``
    talks to it through a newer SQLite (see :mod:`.drivers`),
    and ``?key_env=VARIABLE`` or ``?encrypted=1`` open an encrypted file. A key
    written into the URL itself is refused (URLs end up in logs and process lists).
    """
    parts = urlsplit(url)
    if parts.netloc or parts.fragment or parts.path == "/":
        raise InvalidInputError(f"{url!r}: write sqlite:///relative.db, sqlite:////absolute/path.db or sqlite://")
    try:
        path = unquote(parts.path[1:], errors="strict") or ":memory:"
        settings: dict[str, Any] = dict(
            parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"{url!r} is not a valid SQLite URL: {exc}") from None
    if "key" in settings:  # the message leaves the URL out: it holds the key
        raise InvalidInputError(
            "an SQLite URL must not hold the key itself (URLs end up in logs): "
            "use ?key_env=VARIABLE, or ?encrypted=1 for $" + cipher.KEY_VARIABLE
        )
    settings.update(options)
    return open_path(path, settings)


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(Backend("sqlite", open_url, description="SQLite file with an FTS5 search index (built in)"))
