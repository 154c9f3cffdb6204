"""Translate psycopg and psycopg_pool exceptions into qv_session_manager errors."""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg_pool

from qv_session_manager.errors import (
    CorruptStorageError,
    ReadOnlyStorageError,
    StorageBusyError,
    StorageError,
    StorageFullError,
)

# By SQLSTATE (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_BY_STATE: dict[str, type[StorageError]] = {
    "55P03": StorageBusyError,  # lock_not_available (lock_timeout)
    "55006": StorageBusyError,  # object_in_use
    "57014": StorageBusyError,  # query_canceled (statement_timeout)
    "40001": StorageBusyError,  # serialization_failure
    "40P01": StorageBusyError,  # deadlock_detected
    "25006": ReadOnlyStorageError,  # read_only_sql_transaction (hot standby, read-only sessions)
    "42501": ReadOnlyStorageError,  # insufficient_privilege
    "53100": StorageFullError,  # disk_full
    "53300": StorageBusyError,  # too_many_connections: the server is full of sessions, not of data
    "XX001": CorruptStorageError,  # data_corrupted
    "XX002": CorruptStorageError,  # index_corrupted
    "42P01": CorruptStorageError,  # undefined_table: our tables were dropped behind our back
    "42703": CorruptStorageError,  # undefined_column: they were altered
    "42704": CorruptStorageError,  # undefined_object
}


def is_connection_failure(
    exc: BaseException, connection: psycopg.Connection[Any] | psycopg.AsyncConnection[Any] | None = None
) -> bool:
    """Whether ``exc`` means the connection (not the statement) failed: the server went
    away, restarted, or refused the session. The transaction was then rolled back
    (or, during COMMIT, its outcome is unknown).
    """
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return False
    if not isinstance(exc, psycopg.OperationalError):
        return isinstance(exc, psycopg.InterfaceError) and connection is not None and connection.broken
    state = exc.sqlstate or ""
    if state.startswith("08") or state in ("57P01", "57P02", "57P03"):
        return True
    if not state:  # raised by libpq itself: lost connection, refused, reset
        return True
    return connection is not None and connection.broken


def is_transient(exc: BaseException) -> bool:
    """Whether the server rolled the transaction back so that running it again may succeed."""
    return isinstance(exc, psycopg.Error) and (exc.sqlstate or "") in ("40001", "40P01")


def translate(exc: BaseException, doing: str) -> StorageError:
    """The library error for a psycopg (or pool) exception raised while ``doing`` something."""
    if isinstance(exc, psycopg_pool.PoolClosed):
        return StorageError(f"{doing} failed: the store is closed")
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return StorageError(f"{doing} failed: no usable database connection in time ({exc})")
    state = getattr(exc, "sqlstate", None) or ""
    kind = _BY_STATE.get(state, StorageError)
    message = str(exc).strip() or type(exc).__name__
    return kind(f"{doing} failed: {message}")
