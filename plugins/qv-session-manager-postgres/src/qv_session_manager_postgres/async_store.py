"""A native async PostgreSQL store: psycopg's AsyncConnectionPool, the sync store's SQL.

Nothing of :class:`~qv_session_manager_postgres.store.PostgresStore` is rewritten
here. Each coroutine runs the sync method of the same name (validation, encoding,
SQL building, decoding, the one-statement append...) in a bridge greenlet (see
:mod:`qv_session_manager.aio_bridge`); only its ``_run`` is replaced, by one that
takes an async connection, and its cursor by :class:`_Cursor`, whose calls await the
async cursor on the event loop. So the two stores send the same statements and give
the same answers, and the event loop never blocks on the database.

What is written anew is the part that must await: the retry loop of ``_run`` (same
policy: ATTEMPTS, backoff, transient errors and lost connections, no retry of a
delete whose commit may have happened), the pool's connection check and
configuration.

Opening (connecting, migrating) happens in the constructor and blocks, as for the
sync store; the async pool itself opens on first use, on the running loop.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import IsolationLevel

from qv_session_manager.aio_bridge import run_bridged, suspend
from qv_session_manager.errors import StorageError
from qv_session_manager.protocol import ConversationFilter, SaveItem, SearchOrder
from qv_session_manager.query import Query
from qv_session_manager.records import ConversationRecord, MessageRecord, SearchHit, StoredConversation

from .errors import is_connection_failure, is_transient, translate
from .store import _BACKOFF, ATTEMPTS, PostgresStore, _readable, check_options, check_vectors_option, connection_options

T = TypeVar("T")
log = logging.getLogger("qv_session_manager")


class _Copy:
    """The blocking-style face of an AsyncCopy."""

    def __init__(self, copy: psycopg.AsyncCopy) -> None:
        self._copy = copy

    def write_row(self, row: Sequence[Any]) -> None:
        suspend(self._copy.write_row(row))


class _Cursor:
    """The blocking-style face of an AsyncCursor (or AsyncConnection) for the sync store's code.

    Offers what that code uses: ``execute`` (chainable), ``fetchone``, ``fetchall``,
    iteration, ``rowcount`` and ``copy``. Each call suspends the bridge greenlet until
    the async call is done; psycopg's exceptions arrive unchanged.
    """

    def __init__(self, target: Any) -> None:
        self._target = target

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> _Cursor:
        result = suspend(self._target.execute(query, params, **kwargs))
        return self if result is self._target else _Cursor(result)

    def fetchone(self) -> Any:
        return suspend(self._target.fetchone())

    def fetchall(self) -> builtins.list[Any]:
        return suspend(self._target.fetchall())

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        return self._target.rowcount  # type: ignore[no-any-return]

    @contextmanager
    def copy(self, statement: Any) -> Iterator[_Copy]:
        manager = self._target.copy(statement)
        copy = suspend(manager.__aenter__())
        try:
            yield _Copy(copy)
        except BaseException as exc:
            if not suspend(manager.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            suspend(manager.__aexit__(None, None, None))


class _Bridged(PostgresStore):
    """The sync store, its transactions run by the async store's ``_run`` on the event loop.

    Its methods may only be called inside ``run_bridged``. Its own (sync) pool is
    closed at once: it is opened with no connections and never used.
    """

    def __init__(self, run: Callable[..., Any], conninfo: str, **settings: Any) -> None:
        super().__init__(conninfo, **settings)
        self._pool.close()
        self._async_run = run

    def _run(
        self,
        doing: str,
        work: Callable[[psycopg.Cursor], T],
        *,
        write: bool,
        idempotent: bool = True,
        transaction: bool = True,
    ) -> T:
        return suspend(self._async_run(doing, work, write=write, idempotent=idempotent, transaction=transaction))  # type: ignore[no-any-return]


class AsyncPostgresStore:
    """An :class:`~qv_session_manager.async_protocol.AsyncConversationStore` in a PostgreSQL schema.

    Takes the arguments of :class:`~qv_session_manager_postgres.PostgresStore`, and
    stores exactly as it does (the two can share a schema). Every coroutine has the
    contract of its sync namesake; optional sides of the sync store (``save_many``,
    ``load_window``...) are coroutines here too. Cancelling a call rolls its
    transaction back.
    """

    capabilities = PostgresStore.capabilities

    def __init__(
        self,
        conninfo: str = "",
        *,
        schema: str = "public",
        min_size: int = 1,
        max_size: int = 4,
        timeout: float = 30.0,
        lock_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        vectors: str = "auto",
    ) -> None:
        check_options(conninfo, schema, min_size, max_size, timeout, lock_timeout, connect_timeout)
        check_vectors_option(vectors)
        # The sync store connects, checks the encoding and migrates (its own pool stays empty).
        self._sync = _Bridged(
            self._run,
            conninfo,
            schema=schema,
            min_size=0,
            max_size=max_size,
            timeout=timeout,
            lock_timeout=lock_timeout,
            connect_timeout=connect_timeout,
            vectors=vectors,
        )
        self.schema = schema
        #: As PostgresStore's: how vector searches run, and how the schema stores vectors.
        self.vectors = self._sync.vectors
        self.vector_layout = self._sync.vector_layout
        connect_kwargs = connection_options(conninfo, connect_timeout)
        self._lock_timeout = f"{int(lock_timeout * 1000)}ms"
        self._pool = psycopg_pool.AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=connect_kwargs,
            configure=self._configure,
            check=_check_connection,
            timeout=float(timeout),
            name=f"qv-postgres-async-{schema}",
            open=False,
        )
        self._pool_opened = False
        self._describe = f"PostgreSQL schema {schema!r}"
        # Every optional side of the sync store (load_window...) as a coroutine, so that
        # the capabilities copied from it hold here too.
        for name in dir(PostgresStore):
            if not name.startswith("_") and not hasattr(type(self), name) and callable(getattr(PostgresStore, name)):
                setattr(self, name, self._forward(name))

    def _forward(self, name: str) -> Callable[..., Any]:
        method = getattr(self._sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await run_bridged(method, *args, **kwargs)

        call.__name__ = call.__qualname__ = name
        call.__doc__ = method.__doc__
        return call

    # -- plumbing -----------------------------------------------------------------

    async def _configure(self, connection: psycopg.AsyncConnection) -> None:
        await run_bridged(self._sync._configure, _Cursor(connection))

    async def _run(
        self,
        doing: str,
        work: Callable[[Any], T],
        *,
        write: bool,
        idempotent: bool = True,
        transaction: bool = True,
    ) -> T:
        """PostgresStore._run on an async connection: ``work`` runs in a bridge greenlet."""
        for attempt in range(ATTEMPTS):
            if self._sync._closed:
                raise StorageError(f"{doing} failed: the store is closed")
            committing = False
            connection: psycopg.AsyncConnection | None = None
            try:
                if not self._pool_opened:
                    await self._pool.open(wait=False)  # idempotent; the first caller opens it
                    self._pool_opened = True
                async with self._pool.connection() as connection:
                    if write:
                        await connection.set_isolation_level(IsolationLevel.READ_COMMITTED)
                        await connection.set_read_only(None)  # the server's default: never override a read-only role
                    else:
                        await connection.set_isolation_level(IsolationLevel.REPEATABLE_READ)
                        await connection.set_read_only(True)
                    cursor = _Cursor(connection.cursor())
                    if not transaction:
                        committing = True  # the statement commits as it ends
                        return await run_bridged(work, cursor)
                    async with connection.transaction():
                        result = await run_bridged(work, cursor)
                        committing = True
                    return result
            except (psycopg.Error, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed) as exc:
                if isinstance(exc, psycopg_pool.PoolClosed) or self._sync._closed:
                    raise StorageError(f"{doing} failed: the store is closed") from exc
                again = is_transient(exc) or (is_connection_failure(exc, connection) and (idempotent or not committing))
                if again and attempt + 1 < ATTEMPTS:
                    log.warning(
                        "%s (%s): %s; running it again (attempt %d of %d)",
                        doing,
                        self._describe,
                        str(exc).strip() or type(exc).__name__,
                        attempt + 2,
                        ATTEMPTS,
                    )
                    await asyncio.sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])
                    continue
                raise translate(exc, f"{doing} ({self._describe})") from exc
        raise AssertionError("unreachable")

    # -- the protocol ---------------------------------------------------------------

    async def save(
        self, conversation: ConversationRecord, messages: Sequence[MessageRecord], *, replace: bool = False
    ) -> None:
        await run_bridged(self._sync.save, conversation, messages, replace=replace)

    async def save_many(self, items: Iterable[SaveItem]) -> int:
        return await run_bridged(self._sync.save_many, items)

    async def append(
        self, conversation_id: str, messages: Sequence[MessageRecord], *, updated_at: datetime | None = None
    ) -> bool:
        return await run_bridged(self._sync.append, conversation_id, messages, updated_at=updated_at)

    async def load(self, conversation_id: str) -> StoredConversation | None:
        return await run_bridged(self._sync.load, conversation_id)

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        return await run_bridged(self._sync.get, conversation_id)

    async def delete(self, conversation_id: str) -> bool:
        return await run_bridged(self._sync.delete, conversation_id)

    async def delete_message(self, conversation_id: str, message_id: str) -> bool:
        return await run_bridged(self._sync.delete_message, conversation_id, message_id)

    async def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> builtins.list[ConversationRecord]:
        return await run_bridged(self._sync.list, filter, limit=limit, offset=offset, after=after)

    async def search(
        self,
        query: Query,
        filter: ConversationFilter,
        *,
        order: SearchOrder = "recent",
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> builtins.list[SearchHit]:
        return await run_bridged(
            self._sync.search, query, filter, order=order, limit=limit, offset=offset, with_text=with_text
        )

    async def close(self) -> None:
        """Close the pool. Closing twice is harmless; other calls after close raise StorageError."""
        self._sync.close()  # marks it closed (its own pool is already closed)
        if self._pool_opened:
            await self._pool.close()

    def __repr__(self) -> str:
        return f"AsyncPostgresStore(schema={self.schema!r})"


async def _check_connection(connection: psycopg.AsyncConnection) -> None:
    """The pool's check, as the sync store's: a round trip only when the socket has news."""
    if connection.closed or connection.broken:
        raise psycopg.OperationalError("the connection is closed")
    if _readable(connection.fileno()):
        await psycopg_pool.AsyncConnectionPool.check_connection(connection)
