"""The SQLite backend (``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ...errors import InvalidInputError
from ...hookspecs import hookimpl
from ...registry import Backend
from .store import SQLiteStore

__all__ = ["SQLiteStore", "open_path", "open_url"]


def open_path(path: object, options: Mapping[str, Any]) -> SQLiteStore:
    """Open the SQLite file ``path`` with ``options`` (``synchronous``, ``busy_timeout``, ``purge``).

    Option values may be strings (from a URL). Raises InvalidInputError for unknown
    options and unusable values.
    """
    unknown = set(options) - {"synchronous", "busy_timeout", "purge"}
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
        path,  # type: ignore[arg-type]
        synchronous=options.get("synchronous", "full"),
        busy_timeout=timeout,
        purge=options.get("purge", "on_close"),
    )


def open_url(url: str, options: Mapping[str, Any]) -> SQLiteStore:
    """Open ``sqlite:///path`` the way SQLAlchemy spells it: three slashes then a
    relative path, four for an absolute one; ``sqlite://`` alone is in memory.
    ``?synchronous=normal&busy_timeout=5&purge=immediate`` in the URL set options too.
    """
    parts = urlsplit(url)
    if parts.netloc or parts.fragment or parts.path == "/":
        raise InvalidInputError(f"{url!r}: write sqlite:///relative.db, sqlite:////absolute/path.db or sqlite://")
    try:
        path = unquote(parts.path[1:], errors="strict") or ":memory:"
        settings: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"{url!r} is not a valid SQLite URL: {exc}") from None
    settings.update(options)
    return open_path(path, settings)


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(Backend("sqlite", open_url, description="SQLite file with an FTS5 search index (built in)"))
