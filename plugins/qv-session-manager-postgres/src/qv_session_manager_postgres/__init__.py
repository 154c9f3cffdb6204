"""qv-session-manager-postgres: a PostgreSQL backend for qv-session-manager.

Installing this distribution registers the ``postgres`` backend (URL schemes
``postgresql://`` and ``postgres://``) through the ``qv_session_manager``
entry-point group::

    SessionManager(url="postgresql://app@db.example/chats?schema=assistant")

The URL is a libpq connection URI; the options of this backend ride along as query
parameters and are removed before the rest goes to libpq:

- ``schema`` (default ``public``): the PostgreSQL schema holding the tables;
- ``pool_min_size`` / ``pool_max_size`` (default 1 / 4): connection pool size;
- ``pool_timeout`` (default 30): seconds an operation waits for a usable connection;
- ``lock_timeout`` (default 30): seconds a write waits for another writer's lock;
- ``vectors`` (default ``auto``): how message vectors are stored and searched,
  ``auto``, ``pgvector`` or ``exact`` (see :class:`PostgresStore`).

The same names may be given as keyword options of ``open_store`` or
``SessionManager``. See :class:`PostgresStore` and the README.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from qv_session_manager import Backend, InvalidInputError, hookimpl
from qv_session_manager.redact import mask_url, scrub

from .store import PostgresStore

if TYPE_CHECKING:
    from qv_session_manager.async_protocol import AsyncConversationStore

__version__ = "0.1.0"
__all__ = ["PostgresStore", "open_async_url", "open_url", "register_backends", "split_url", "store_settings"]

#: URL/keyword option -> (PostgresStore argument, parser)
_OPTIONS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "schema": ("schema", str),
    "pool_min_size": ("min_size", int),
    "pool_max_size": ("max_size", int),
    "pool_timeout": ("timeout", float),
    "lock_timeout": ("lock_timeout", float),
    "vectors": ("vectors", str),
}


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Split a store URL into (libpq URI, this backend's options).

    Query parameters named like the options are taken out; every other part of the
    URL, other parameters included, is passed to libpq exactly as written. Raises
    InvalidInputError, the password masked, for a URL that cannot be split.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidInputError(f"{mask_url(url)!r} is not a valid PostgreSQL URL: {scrub(str(exc), [url])}") from None
    kept: list[str] = []
    options: dict[str, str] = {}
    for item in parts.query.split("&") if parts.query else []:
        name, _, value = item.partition("=")
        decoded = unquote(name)
        if decoded in _OPTIONS:
            if decoded in options:
                raise InvalidInputError(f"option {decoded!r} appears twice in the URL")
            options[decoded] = unquote(value)
        else:
            kept.append(item)
    scheme = parts.scheme.lower()
    if scheme not in ("postgresql", "postgres"):
        raise InvalidInputError(f"{scheme!r} is not a PostgreSQL URL scheme: write postgresql://...")
    return urlunsplit((scheme, parts.netloc, parts.path, "&".join(kept), parts.fragment)), options


def open_url(url: str, options: Mapping[str, Any]) -> PostgresStore:
    """Open ``postgresql://[user[:password]@][host][:port][/dbname][?param=value&...]``."""
    conninfo, settings = store_settings(url, options)
    return PostgresStore(conninfo, **settings)


def store_settings(url: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(libpq URI, PostgresStore keyword arguments) for a store URL and keyword options."""
    conninfo, from_url = split_url(url)
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise InvalidInputError(
            f"unknown PostgreSQL backend option(s): {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(_OPTIONS))}; libpq parameters go in the URL)"
        )
    settings: dict[str, Any] = {}
    for name, value in {**from_url, **options}.items():
        argument, parse = _OPTIONS[name]
        try:
            settings[argument] = parse(value) if isinstance(value, str) else value
        except (TypeError, ValueError):
            raise InvalidInputError(f"option {name} has a bad value: {value!r}") from None
    return conninfo, settings


# -- the async store (registered as the backend's open_async) --


def open_async_url(url: str, options: Mapping[str, Any]) -> AsyncConversationStore | None:
    """An AsyncPostgresStore for the URL, or None when greenlet is missing (then threads serve).

    Takes the URL and options of :func:`open_url`.
    """
    from qv_session_manager import aio_bridge

    if not aio_bridge.available():  # the [async] extra (greenlet) is not installed
        return None
    from .async_store import AsyncPostgresStore

    conninfo, settings = store_settings(url, options)
    return AsyncPostgresStore(conninfo, **settings)


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(
        Backend(
            "postgres",
            open_url,
            schemes=("postgresql", "postgres"),
            description="PostgreSQL, shared by many processes, with GIN-indexed search",
            open_async=open_async_url,
        )
    )
