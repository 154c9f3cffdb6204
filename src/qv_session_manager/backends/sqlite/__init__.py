"""The SQLite backend (``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ...errors import InvalidInputError
from ...hookspecs import hookimpl
from ...registry import Backend
from .store import SQLiteStore

__all__ = ["SQLiteStore", "open_url"]


def open_url(url: str, options: Mapping[str, Any]) -> SQLiteStore:
    """Open ``sqlite:///path`` the way SQLAlchemy spells it: three slashes then a
    relative path, four for an absolute one; ``sqlite://`` alone is in memory.
    ``?synchronous=normal&busy_timeout=5`` in the URL set options too.
    """
    parts = urlsplit(url)
    if parts.netloc:
        raise InvalidInputError(f"{url!r}: write sqlite:///relative.db or sqlite:////absolute/path.db")
    path = unquote(parts.path[1:]) or ":memory:"
    settings: dict[str, Any] = dict(parse_qsl(parts.query))
    settings.update(options)
    unknown = set(settings) - {"synchronous", "busy_timeout"}
    if unknown:
        raise InvalidInputError(f"unknown SQLite option(s): {', '.join(sorted(unknown))}")
    try:
        timeout = float(settings.get("busy_timeout", 30.0))
    except (TypeError, ValueError):
        raise InvalidInputError("busy_timeout must be a number of seconds") from None
    return SQLiteStore(path, synchronous=settings.get("synchronous", "full"), busy_timeout=timeout)


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(Backend("sqlite", open_url, description="SQLite file with an FTS5 search index (built in)"))
