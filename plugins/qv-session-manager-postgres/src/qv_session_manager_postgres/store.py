"""The PostgreSQL backend: a connection pool, one transaction per operation,
search over GIN-indexed vectors of the shared tokens.

Concurrency. Every write runs in one READ COMMITTED transaction that starts by
locking the conversation row (an upsert, an UPDATE or SELECT ... FOR UPDATE);
writers of one conversation therefore run one after the other, in every process,
and each sees the messages the previous one committed: positions never collide (a
deferred unique constraint on ``(conversation_pk, position)`` guards it). Reads run
in one REPEATABLE READ, READ ONLY transaction, so a load or a search sees one
consistent snapshot.

Round trips. A save is BEGIN, the upsert, one read of the stored messages it
names, one statement for all its writes, COMMIT. ``save_many`` is the same for a
whole batch (the messages by COPY when there are many), the pairs merged in
memory in order. An ``append`` of new messages (a chat turn) is a single
statement in its own transaction; one that meets a stored message falls back to
the general path.

Failures. A connection that breaks (server restart, network cut, administrator
termination) makes the operation run again from the start on a fresh connection
from the pool: a save is never resumed half-way, it is retried whole, which is
safe because a save is idempotent. The pool checks a connection before handing it
out without a round trip unless its socket has something to say (see
:func:`_check_connection`). A delete whose connection broke while it was
committing is not retried (its answer would be unknowable) and raises
StorageError. Deadlocks and serialization failures are retried too.
"""

from __future__ import annotations

import builtins
import json
import logging
import select
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import psycopg
import psycopg.errors
import psycopg_pool
from psycopg import IsolationLevel

from qv_session_manager.errors import CorruptStorageError, InvalidInputError, StorageError
from qv_session_manager.protocol import Capability, ConversationFilter, SaveItem, SearchOrder
from qv_session_manager.query import Query
from qv_session_manager.records import (
    ConversationRecord,
    MessageRecord,
    SearchHit,
    StoredConversation,
    check_append,
    check_save,
    checked_save_items,
    is_storable_id,
)
from qv_session_manager.redact import scrub, scrub_exception
from qv_session_manager.rules import check_filter, check_order, check_page, check_window, now_key, window_start
from qv_session_manager.text import tokens
from qv_session_manager.timeutil import time_key
from qv_session_manager.vector_records import (
    EmbeddingTask,
    VectorSpace,
    check_limit,
    check_space,
    checked_embeddings,
    checked_vector,
)

from . import schema as schema_module
from . import vectors as vector_module
from .errors import is_connection_failure, is_transient, translate
from .rows import (
    CONTENT,
    CONVERSATION_COLUMNS,
    LIVE,
    MESSAGE_COLUMNS,
    TITLE,
    EncodedMessage,
    decode_conversation,
    decode_message,
    encode_conversation,
    escape,
    filter_scalar,
    id_key,
    load_text,
    summary_of_row,
)
from .textsearch import candidate_query, exact_query

T = TypeVar("T")
log = logging.getLogger("qv_session_manager")

_TIME_FIELDS = {"updated_at": "updated_key", "created_at": "created_key"}
#: What the upsert leaves in ``next_position`` of a row that had expired: the save
#: then removes its messages (see PostgresStore._restart) before writing its own.
_EXPIRED = -1
#: How many times an operation runs at most when its connection breaks or it deadlocks.
ATTEMPTS = 4
_BACKOFF = (0.05, 0.25, 1.0)
#: Writes inserting at least this many messages send them by COPY.
COPY_ROWS = 64
#: Up to this many rows travel in a statement as VALUES of scalar parameters, more as arrays.
VALUES_ROWS = 8


def _decode(decoder: Callable[[Any], T], row: Any) -> T:
    try:
        return decoder(row)
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptStorageError(f"a stored row cannot be read back: {exc}") from exc


def _words_only(query: Query) -> bool:
    """Whether every alternative of ``query`` is single tokens (words, prefixes) and excludes nothing."""
    return all(
        not alternative.excluded and all(len(term.tokens) == 1 for term in alternative.required)
        for alternative in query.alternatives
    )


def _check_connection(connection: psycopg.Connection) -> None:
    """The pool's check of a connection it hands out, without a round trip when it looks sound.

    A server that shuts down or ends a session (restart, ``pg_terminate_backend``)
    tells the client and closes the socket, so an idle connection that has anything
    to read gets the full check (an empty query), which fails on a dead connection.
    A connection lost without a word (a network cut) fails at its first statement,
    and the operation runs again on another (see :meth:`PostgresStore._run`).
    """
    if connection.closed or connection.broken:
        raise psycopg.OperationalError("the connection is closed")
    if _readable(connection.fileno()):
        psycopg_pool.ConnectionPool.check_connection(connection)


def _readable(fd: int) -> bool:
    """Whether the socket has data, an error or its end to read, without waiting."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # Windows: no poll


class _AlreadyStored(Exception):
    """The one-statement append met a stored message: the general path must take it."""


#: (updated_at, updated_key) an append writes; (None, None) keeps the stored ones.
_Stamp = tuple[str | None, str | None]


# -- the columns of the writes ----------------------------------------------------------
#
# (column, type it travels as, cast to the column's type); see _rows.

_Field = tuple[str, str, str]
_CONVERSATION_FIELDS: tuple[_Field, ...] = (
    ("id", "text", ""),
    ("id_key", "bytea", ""),
    ("title", "text", ""),
    ("model_name", "text", ""),
    ("created_at", "text", ""),
    ("updated_at", "text", ""),
    ("created_key", "text", ""),
    ("updated_key", "text", ""),
    ("metadata", "text", ""),
    ("filter_doc", "text", "::jsonb"),
    ("escaped", "smallint", ""),
    ("title_tsv", "text", "::tsvector"),
    ("title_exact", "boolean", ""),
    ("expires_key", "text", ""),
)
#: In the order of :func:`_message_row`.
_MESSAGE_FIELDS: tuple[_Field, ...] = (
    ("id", "text", ""),
    ("id_key", "bytea", ""),
    ("role", "text", ""),
    ("content", "text", ""),
    ("created_at", "text", ""),
    ("metadata", "text", ""),
    ("images", "text", ""),
    ("tool_calls", "text", ""),
    ("tool_call_id", "text", ""),
    ("escaped", "smallint", ""),
    ("digest", "bytea", ""),
    ("content_digest", "bytea", ""),
    ("content_tsv", "text", "::tsvector"),
    ("search_exact", "boolean", ""),
)
_PK: _Field = ("pk", "bigint", "")
_POSITION: _Field = ("position", "bigint", "")
_INSERT_FIELDS = (("conversation_pk", "bigint", ""), _POSITION, *_MESSAGE_FIELDS)
_UPDATE_FIELDS = (_PK, _POSITION, *_MESSAGE_FIELDS[2:])
#: An update of a message whose content is unchanged keeps its vector: role .. digest.
_KEEP_VECTOR_FIELDS = (_PK, _POSITION, *_MESSAGE_FIELDS[2:11])
_MOVE_FIELDS = (_PK, _POSITION)
_NEXT_FIELDS = (_PK, ("next_position", "bigint", ""))
#: An append's new update time, when it has one.
_SET_TIME = """updated_at = coalesce(%(updated_at)s::text, updated_at),
    updated_key = coalesce(%(updated_key)s::text, updated_key)"""
_UPSERT = """ON CONFLICT (id_key) DO UPDATE SET title = EXCLUDED.title, model_name = EXCLUDED.model_name,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
    created_key = EXCLUDED.created_key, updated_key = EXCLUDED.updated_key,
    metadata = EXCLUDED.metadata, filter_doc = EXCLUDED.filter_doc, escaped = EXCLUDED.escaped,
    title_tsv = EXCLUDED.title_tsv, title_exact = EXCLUDED.title_exact, expires_key = EXCLUDED.expires_key,
    next_position = CASE WHEN c.expires_key <= %(now)s COLLATE "C" THEN -1 ELSE c.next_position END,
    revision = c.revision + 1"""


def _names(fields: Sequence[_Field]) -> str:
    return ", ".join(name for name, _, _ in fields)


def _values(fields: Sequence[_Field], alias: str) -> str:
    return ", ".join(f"{alias}.{name}{cast}" for name, _, cast in fields)


def _rows(
    alias: str,
    fields: Sequence[_Field],
    rows: Sequence[Sequence[Any]],
    params: dict[str, Any],
    *,
    ordinality: bool = False,
) -> str:
    """A FROM item ``alias(<fields>[, ordinality])`` holding ``rows`` (not empty).

    Its parameters are added to ``params``. A few rows go as ``VALUES`` of scalar
    parameters (cheapest to send); more as one binary array per field, unnested: one
    statement, and one prepared plan, whatever their number.
    """
    names = _names(fields) + (", ordinality" if ordinality else "")
    if len(rows) <= VALUES_ROWS:
        lines = []
        for number, row in enumerate(rows):
            values = [f"%({alias}{number}_{index})s::{kind}" for index, (_, kind, _) in enumerate(fields)]
            params.update((f"{alias}{number}_{index}", value) for index, value in enumerate(row))
            lines.append("(" + ", ".join(values) + (f", {number + 1}" if ordinality else "") + ")")
        return f"(VALUES {', '.join(lines)}) AS {alias}({names})"
    columns = [list(column) for column in zip(*rows)]
    assert len(columns) == len(fields)
    params.update((f"{alias}{index}", column) for index, column in enumerate(columns))
    arrays = ", ".join(f"%({alias}{index})b::{kind}[]" for index, (_, kind, _) in enumerate(fields))
    return f"unnest({arrays}){' WITH ORDINALITY' if ordinality else ''} AS {alias}({names})"


def _message_row(e: EncodedMessage) -> tuple[Any, ...]:
    """A message's values in the order of :data:`_MESSAGE_FIELDS`."""
    return (e.id, e.key, *e.values, e.escaped, e.digest, e.content_digest, *e.vector())


class _Stored(NamedTuple):
    """What a write needs to know of a stored message."""

    pk: int
    position: int
    digest: bytes
    content_digest: bytes


class _Writes:
    """The row changes one transaction makes to messages and positions."""

    __slots__ = ("doomed", "inserts", "moves", "next_positions", "updates", "updates_keeping_vector")

    def __init__(self) -> None:
        self.inserts: list[tuple[int, int, EncodedMessage]] = []  # (conversation pk, position, message)
        self.updates: list[tuple[int, int, EncodedMessage]] = []  # (message pk, position, message)
        self.updates_keeping_vector: list[tuple[int, int, EncodedMessage]] = []
        self.moves: list[tuple[int, int]] = []  # (message pk, position)
        self.doomed: list[int] = []  # message pks
        self.next_positions: list[tuple[int, int]] = []  # (conversation pk, next_position)

    def update(self, stored: _Stored, position: int, e: EncodedMessage) -> None:
        """Rewrite a stored message; its search vector only when its content changed."""
        if stored.content_digest != e.content_digest:
            self.updates.append((stored.pk, position, e))
        else:
            self.updates_keeping_vector.append((stored.pk, position, e))


class _Merge:
    """One conversation's messages as saves in order (without ``replace``) leave them.

    ``stored`` holds the stored messages among those given, by id key. A new message
    takes the next position when it is first given; a message given again keeps its
    position and takes the latest values; one whose latest values are the stored ones
    is not written at all.
    """

    __slots__ = ("added", "changed", "first", "next_position", "pk", "stored")

    def __init__(self, pk: int, next_position: int, stored: dict[bytes, _Stored]) -> None:
        self.pk = pk
        self.first = self.next_position = next_position
        self.stored = stored
        self.added: dict[bytes, tuple[int, EncodedMessage]] = {}
        self.changed: dict[bytes, EncodedMessage] = {}

    def add(self, encoded: Iterable[EncodedMessage]) -> None:
        for e in encoded:
            existing = self.stored.get(e.key)
            if existing is not None:
                if existing.digest != e.digest:
                    self.changed[e.key] = e
                else:
                    self.changed.pop(e.key, None)
                continue
            added = self.added.get(e.key)
            if added is None:
                self.added[e.key] = (self.next_position, e)
                self.next_position += 1
            else:
                self.added[e.key] = (added[0], e)

    def collect(self, writes: _Writes) -> None:
        writes.inserts.extend((self.pk, position, e) for position, e in self.added.values())
        for key, e in self.changed.items():
            stored = self.stored[key]
            writes.update(stored, stored.position, e)
        if self.next_position != self.first:
            writes.next_positions.append((self.pk, self.next_position))


def check_options(
    conninfo: str,
    schema: str,
    min_size: int,
    max_size: int,
    timeout: float,
    lock_timeout: float,
    connect_timeout: float,
) -> None:
    """Raise InvalidInputError unless the store options are usable (shared by the sync and async stores)."""
    if not isinstance(conninfo, str):
        raise InvalidInputError("conninfo must be a libpq connection string or URL")
    if not isinstance(schema, str) or not schema or "\x00" in schema or len(schema.encode("utf-8")) > 63:
        raise InvalidInputError("schema must be a non-empty name of at most 63 bytes without NUL")
    for name, value in (("min_size", min_size), ("max_size", max_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidInputError(f"{name} must be a non-negative int, not {value!r}")
    if max_size < max(min_size, 1):
        raise InvalidInputError(f"max_size ({max_size}) must be at least 1 and at least min_size ({min_size})")
    for name, number in (("timeout", timeout), ("lock_timeout", lock_timeout), ("connect_timeout", connect_timeout)):
        if not isinstance(number, (int, float)) or isinstance(number, bool) or not 0 <= number < 10**6:
            raise InvalidInputError(f"{name} must be a number of seconds, not {number!r}")
    try:
        psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        # libpq quotes the offending token, which may be the password itself.
        raise InvalidInputError(f"not a valid PostgreSQL connection string: {scrub(str(exc), [conninfo])}") from None


#: The values of the ``vectors`` option (see PostgresStore).
VECTOR_OPTIONS = ("auto", "pgvector", "exact")


def check_vectors_option(vectors: object) -> str:
    """The ``vectors`` option, or InvalidInputError (shared by the sync and async stores)."""
    if vectors not in VECTOR_OPTIONS:
        raise InvalidInputError(f"vectors must be one of {', '.join(VECTOR_OPTIONS)}, not {vectors!r}")
    return str(vectors)


def connection_options(conninfo: str, connect_timeout: float) -> dict[str, Any]:
    """Keyword arguments of every connection: autocommit, and our connect timeout unless conninfo sets one."""
    options: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(conninfo):
        options["connect_timeout"] = max(1, int(connect_timeout))
    return options


class PostgresStore:
    """A :class:`~qv_session_manager.protocol.ConversationStore` in a PostgreSQL schema.

    ``conninfo`` is anything libpq accepts (``postgresql://user@host/db`` or
    ``"host=... dbname=..."``). The schema is created and migrated when needed.
    ``min_size``/``max_size`` size the connection pool, ``timeout`` is how long an
    operation waits for a usable connection (also across a server restart),
    ``lock_timeout`` how long a write waits for a row lock before raising
    StorageBusyError (seconds; 0 waits forever).

    Message vectors (:class:`~qv_session_manager.protocol.VectorStorage`, see
    :mod:`.vectors`) are stored with pgvector when the server has it, else as bytea
    (float32) ranked exactly in Python; both give the shared ranking rule's results.
    ``vectors`` says which: ``"auto"`` (pgvector when the extension is installed or
    ``CREATE EXTENSION vector`` succeeds, else bytea, with a warning), ``"pgvector"``
    (StorageError without it), ``"exact"`` (a new schema stores bytea; any schema is
    searched by reading every vector of the space). The layout is fixed when the
    schema gets its vectors table; :attr:`vector_layout` (``"pgvector"`` or
    ``"bytea"``) tells it, and :attr:`vectors` how searches run: ``"pgvector"`` (the
    nearest messages by ``<#>``, through the space's HNSW index, then re-ranked
    exactly) or ``"exact"``.
    """

    capabilities = frozenset(
        {
            Capability.PERSISTENT,
            Capability.MULTI_PROCESS,
            Capability.RELEVANCE,
            Capability.EXPIRY,
            Capability.BULK_SAVING,
            Capability.REVISIONED_SAVING,
            Capability.SUMMARY_LISTING,
            Capability.WINDOWED_LOADING,
            Capability.PURGING,
            Capability.DROPPABLE,
            Capability.INDEX_INSPECTION,
            Capability.VECTOR_STORAGE,
        }
    )

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
        self.schema = schema
        self._s = schema_module.quote_identifier(schema)
        self._timeout = float(timeout)
        self._lock_timeout_ms = int(lock_timeout * 1000)
        self._closed = False
        self._close_lock = threading.Lock()
        self._describe = f"PostgreSQL schema {schema!r}"
        connect_kwargs = connection_options(conninfo, connect_timeout)
        try:
            with psycopg.connect(conninfo, **connect_kwargs) as connection:
                self._configure(connection)
                encoding = connection.execute("SHOW server_encoding").fetchone()
                if encoding is None or encoding[0].upper() not in ("UTF8", "UTF-8"):
                    raise StorageError(
                        f"the database uses the {encoding[0] if encoding else 'unknown'} encoding; "
                        "qv-session-manager-postgres needs a UTF8 database"
                    )
                schema_module.migrate(connection, schema, vectors)
                self._vectors = self._vector_sql(connection, vectors)
        except psycopg.Error as exc:
            scrub_exception(exc, [conninfo])
            raise translate(exc, f"opening {self._describe}") from exc
        self._pool = psycopg_pool.ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=connect_kwargs,
            configure=self._configure,
            check=_check_connection,
            timeout=self._timeout,
            name=f"qv-postgres-{schema}",
            open=False,
        )
        self._pool.open(wait=False)

    def _vector_sql(self, connection: psycopg.Connection, vectors: str) -> vector_module.VectorSql:
        """The vector statements for the layout the schema has (see the class docstring)."""
        found = connection.execute(f"SELECT value FROM {self._s}.qv_store_info WHERE key = 'vector_layout'").fetchone()
        extension = schema_module.find_extension(connection.cursor()) if found and found[0] == "pgvector" else None
        if found and found[0] == "pgvector" and extension is None:
            raise CorruptStorageError(f"{self._describe} stores pgvector vectors but the extension vector is gone")
        if vectors == "pgvector" and extension is None:
            raise StorageError(
                f"{self._describe} stores its message vectors as bytea (it was made without pgvector): "
                "vectors='pgvector' cannot search it; open it with vectors='auto' or 'exact'"
            )
        sql = vector_module.VectorSql(self._s, extension, vectors)
        #: How vector searches run: "pgvector" (nearest messages through HNSW, re-ranked exactly) or "exact".
        self.vectors = sql.mode
        #: How the schema stores message vectors: "pgvector" (type vector) or "bytea" (float32).
        self.vector_layout = sql.layout
        return sql

    def _configure(self, connection: psycopg.Connection) -> None:
        connection.execute("SELECT set_config('lock_timeout', %s, false)", (f"{self._lock_timeout_ms}ms",))

    # -- plumbing -----------------------------------------------------------------

    def _run(
        self,
        doing: str,
        work: Callable[[psycopg.Cursor], T],
        *,
        write: bool,
        idempotent: bool = True,
        transaction: bool = True,
    ) -> T:
        """Run ``work`` in one transaction, again from the start when the connection breaks.

        ``idempotent=False``: a connection lost while committing is not retried.
        ``transaction=False``: ``work`` runs one statement, which is its own transaction
        (the connection is in autocommit mode): no BEGIN and COMMIT round trips.
        """
        for attempt in range(ATTEMPTS):
            if self._closed:
                raise StorageError(f"{doing} failed: the store is closed")
            committing = False
            connection: psycopg.Connection | None = None
            try:
                with self._pool.connection() as connection:
                    if write:
                        connection.isolation_level = IsolationLevel.READ_COMMITTED
                        connection.read_only = None  # the server's default: never override a read-only role
                    else:
                        connection.isolation_level = IsolationLevel.REPEATABLE_READ
                        connection.read_only = True
                    if not transaction:
                        committing = True  # the statement commits as it ends
                        return work(connection.cursor())
                    with connection.transaction():
                        result = work(connection.cursor())
                        committing = True
                    return result
            except (psycopg.Error, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed) as exc:
                if isinstance(exc, psycopg_pool.PoolClosed) or self._closed:
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
                    time.sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])
                    continue
                raise translate(exc, f"{doing} ({self._describe})") from exc
        raise AssertionError("unreachable")

    # -- writes -------------------------------------------------------------------

    def save(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
    ) -> None:
        self.save_revisioned(conversation, messages, replace=replace)

    def save_revisioned(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
        expected: Hashable | None = None,
    ) -> Hashable | None:
        """See :class:`~qv_session_manager.protocol.RevisionedSaving`.

        The revision is (row key, count): row keys are never reused and every write of
        this library to a conversation (saves, appends, message deletes) counts.
        """
        check_save(conversation, messages)
        row = encode_conversation(conversation)
        encoded = [EncodedMessage(message) for message in messages]

        def work(cursor: psycopg.Cursor) -> tuple[int, int] | None:
            if expected is not None:
                found = cursor.execute(
                    f"SELECT pk, revision FROM {self._s}.qv_conversations c WHERE id_key = %(id_key)s AND {LIVE}"
                    " FOR UPDATE",
                    {"id_key": row["id_key"], "now": now_key()},
                ).fetchone()
                if found is None or (found[0], found[1]) != expected:
                    return None
            return self._save(cursor, row, encoded, bool(replace))

        return self._run(f"saving conversation {conversation.id}", work, write=True)

    def save_many(self, items: Iterable[SaveItem]) -> int:
        """Save each ``(conversation, messages)`` pair as ``save`` would, in one transaction.

        Every pair is checked and encoded before anything is written; then the
        conversations are upserted in one statement, the stored messages they name
        read in one more, the pairs merged in order in memory and the result written
        with COPY and at most one more statement. Returns the number of pairs.
        """
        self._check_open()
        batch: list[tuple[dict[str, Any], list[EncodedMessage]]] = []
        for conversation, messages in checked_save_items(items):
            batch.append((encode_conversation(conversation), [EncodedMessage(message) for message in messages]))
        if batch:
            self._run(f"saving {len(batch)} conversations", lambda cursor: self._save_many(cursor, batch), write=True)
        return len(batch)

    def append(
        self,
        conversation_id: str,
        messages: Sequence[MessageRecord],
        *,
        updated_at: datetime | None = None,
    ) -> bool:
        updated_at = check_append(messages, updated_at)
        if not is_storable_id(conversation_id):
            self._check_open()
            return False
        encoded = [EncodedMessage(message) for message in messages]
        doing = f"appending to conversation {conversation_id}"
        stamp: _Stamp = (None, None) if updated_at is None else (updated_at.isoformat(), time_key(updated_at))
        # The usual turn: new messages only. One statement (so one round trip, in its own
        # implicit transaction) locks the conversation, takes the positions and inserts; a
        # message already stored makes it fail whole, and the general path below takes over.
        try:
            return self._run(
                doing,
                lambda cursor: self._append_new(cursor, conversation_id, encoded, stamp),
                write=True,
                transaction=False,
            )
        except _AlreadyStored:
            pass

        def work(cursor: psycopg.Cursor) -> bool:
            # The conversation row first: concurrent saves of it wait, so nothing of theirs is lost.
            table = f"{self._s}.qv_conversations c"
            sql = (
                f"UPDATE {table} SET revision = revision + 1, {_SET_TIME}"
                f" WHERE id_key = %(key)s AND {LIVE} RETURNING pk, next_position"
            )
            found = cursor.execute(
                sql, {"key": id_key(conversation_id), "updated_at": stamp[0], "updated_key": stamp[1], "now": now_key()}
            ).fetchone()
            if found is None:
                return False
            self._merge(cursor, found[0], found[1], encoded)
            return True

        return self._run(doing, work, write=True)

    def _append_new(
        self, cursor: psycopg.Cursor, conversation_id: str, encoded: list[EncodedMessage], stamp: _Stamp
    ) -> bool:
        """Append messages none of which is stored yet, in one statement; raise _AlreadyStored otherwise.

        The UPDATE locks the conversation row first and reads its latest
        ``next_position`` (READ COMMITTED re-reads a row it waited for); the unique
        index on message ids sees every committed message, so a message stored
        meanwhile is caught too.
        """
        s = self._s
        params: dict[str, Any] = {
            "key": id_key(conversation_id),
            "updated_at": stamp[0],
            "updated_key": stamp[1],
            "now": now_key(),
        }
        if not encoded:
            if stamp[0] is None:
                sql = f"SELECT pk FROM {s}.qv_conversations c WHERE id_key = %(key)s AND {LIVE}"
            else:
                sql = (
                    f"UPDATE {s}.qv_conversations c SET revision = revision + 1, {_SET_TIME}"
                    f" WHERE id_key = %(key)s AND {LIVE} RETURNING pk"
                )
            return cursor.execute(sql, params).fetchone() is not None
        params["count"] = len(encoded)
        source = _rows("v", _MESSAGE_FIELDS, [_message_row(e) for e in encoded], params, ordinality=True)
        try:
            cursor.execute(
                f"""WITH c AS (
                        UPDATE {s}.qv_conversations c
                        SET next_position = next_position + %(count)s::bigint, revision = revision + 1, {_SET_TIME}
                        WHERE id_key = %(key)s AND {LIVE}
                        RETURNING pk, next_position - %(count)s::bigint AS first
                    )
                    INSERT INTO {s}.qv_messages (conversation_pk, position, {_names(_MESSAGE_FIELDS)})
                    SELECT c.pk, c.first + v.ordinality - 1, {_values(_MESSAGE_FIELDS, "v")}
                    FROM c CROSS JOIN {source}""",
                params,
            )
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "qv_messages_id_key":
                raise _AlreadyStored() from exc
            raise
        return cursor.rowcount > 0

    def _save(
        self, cursor: psycopg.Cursor, row: dict[str, Any], encoded: list[EncodedMessage], replace: bool
    ) -> tuple[int, int]:
        """The writes of a save in the caller's transaction; returns (row key, revision) after it."""
        s = self._s
        # The upsert row-locks the conversation: writers of one conversation queue here.
        pk, stored_next, revision = cursor.execute(
            f"""INSERT INTO {s}.qv_conversations AS c ({_names(_CONVERSATION_FIELDS)})
                VALUES ({", ".join(f"%({name})s{cast}" for name, _, cast in _CONVERSATION_FIELDS)})
                {_UPSERT} RETURNING c.pk, c.next_position, c.revision""",
            {**row, "now": now_key()},
        ).fetchone()  # type: ignore[misc]
        if stored_next == _EXPIRED:
            self._restart(cursor, [pk])
            stored_next = 0
        if not replace:
            self._merge(cursor, pk, stored_next, encoded)
            return pk, revision
        # replace: the stored messages become exactly these, in this order.
        stored = self._stored(cursor, pk, None)
        writes = _Writes()
        wanted = {e.key for e in encoded}
        writes.doomed.extend(value.pk for key, value in stored.items() if key not in wanted)
        next_position = 0
        for e in encoded:
            existing = stored.get(e.key)
            if existing is None:
                writes.inserts.append((pk, next_position, e))
            elif existing.digest != e.digest:
                writes.update(existing, next_position, e)
            elif existing.position != next_position:
                writes.moves.append((existing.pk, next_position))
            next_position += 1
        if next_position != stored_next:
            writes.next_positions.append((pk, next_position))
        self._write(cursor, writes)
        return pk, revision

    def _restart(self, cursor: psycopg.Cursor, pks: list[int]) -> None:
        """Empty conversations the upsert found expired: their messages go, ``next_position`` is 0 again.

        Their own fields were all overwritten by the upsert, so what remains is a fresh
        conversation (under the same row key), in the save's own transaction.
        """
        s = self._s
        cursor.execute(
            f"""WITH gone AS (DELETE FROM {s}.qv_messages WHERE conversation_pk = ANY(%(pks)s::bigint[]))
                UPDATE {s}.qv_conversations SET next_position = 0 WHERE pk = ANY(%(pks)s::bigint[])""",
            {"pks": pks},
        )

    def _stored(self, cursor: psycopg.Cursor, pk: int, keys: list[bytes] | None) -> dict[bytes, _Stored]:
        """The stored messages of conversation ``pk`` with these id keys (None: all), by key."""
        sql = (
            f"SELECT id_key, pk, position, digest, content_digest FROM {self._s}.qv_messages WHERE conversation_pk = %s"
        )
        if keys is None:
            found = cursor.execute(sql, (pk,)).fetchall()
        else:
            found = cursor.execute(sql + " AND id_key = ANY(%s)", (pk, keys)).fetchall()
        return {
            bytes(key): _Stored(message_pk, position, bytes(d), bytes(cd)) for key, message_pk, position, d, cd in found
        }

    def _merge(self, cursor: psycopg.Cursor, pk: int, next_position: int, encoded: list[EncodedMessage]) -> None:
        """Save messages into the locked conversation ``pk`` as a save without ``replace`` does."""
        merge = _Merge(pk, next_position, self._stored(cursor, pk, [e.key for e in encoded]) if encoded else {})
        merge.add(encoded)
        writes = _Writes()
        merge.collect(writes)
        self._write(cursor, writes)

    def _save_many(self, cursor: psycopg.Cursor, batch: list[tuple[dict[str, Any], list[EncodedMessage]]]) -> None:
        s = self._s
        now = now_key()
        # Saves in order: a pair whose record is already expired makes the next pair of its
        # conversation start afresh, so only the pairs after the last such one count.
        last = {row["id_key"]: index for index, (row, _) in enumerate(batch)}
        cut: dict[bytes, int] = {}
        for index, (row, _) in enumerate(batch):
            expiry = row["expires_key"]
            if index < last[row["id_key"]] and expiry is not None and expiry <= now:
                cut[row["id_key"]] = index
        if cut:
            batch = [item for index, item in enumerate(batch) if index > cut.get(item[0]["id_key"], -1)]
        # Each conversation's last record is what the saves in order leave; upsert those,
        # in the order of their keys, so that two batches lock their rows in one order.
        latest = {row["id_key"]: row for row, _ in batch}
        rows = [latest[key] for key in sorted(latest)]
        params: dict[str, Any] = {"now": now}
        source = _rows(
            "v", _CONVERSATION_FIELDS, [[row[name] for name, _, _ in _CONVERSATION_FIELDS] for row in rows], params
        )
        upserted = cursor.execute(
            f"""INSERT INTO {s}.qv_conversations AS c ({_names(_CONVERSATION_FIELDS)})
                SELECT {_values(_CONVERSATION_FIELDS, "v")} FROM {source}
                {_UPSERT} RETURNING c.id_key, c.pk, c.next_position""",
            params,
        ).fetchall()
        fresh = {bytes(key) for key, _, next_position in upserted if next_position == _EXPIRED} | set(cut)
        if fresh:
            self._restart(cursor, [pk for key, pk, _ in upserted if bytes(key) in fresh])
        merges = {
            bytes(key): _Merge(pk, 0 if bytes(key) in fresh else next_position, {})
            for key, pk, next_position in upserted
        }
        # Stored messages: only conversations that ever had one (next_position > 0) can
        # hold any; for the others, new ones in particular, nothing is read.
        wanted: dict[tuple[int, bytes], None] = {}
        for row, encoded in batch:
            merge = merges[row["id_key"]]
            if merge.first:
                for e in encoded:
                    wanted[merge.pk, e.key] = None
        if wanted:
            by_pk = {merge.pk: merge for merge in merges.values()}
            found = cursor.execute(
                f"""SELECT m.conversation_pk, m.id_key, m.pk, m.position, m.digest, m.content_digest
                    FROM unnest(%b::bigint[], %b::bytea[]) AS k(conversation_pk, id_key)
                    JOIN {s}.qv_messages m ON m.conversation_pk = k.conversation_pk AND m.id_key = k.id_key""",
                ([pk for pk, _ in wanted], [key for _, key in wanted]),
            ).fetchall()
            for conversation_pk, key, message_pk, position, d, cd in found:
                by_pk[conversation_pk].stored[bytes(key)] = _Stored(message_pk, position, bytes(d), bytes(cd))
        for row, encoded in batch:
            merges[row["id_key"]].add(encoded)
        writes = _Writes()
        for merge in merges.values():
            merge.collect(writes)
        self._write(cursor, writes)

    def _write(self, cursor: psycopg.Cursor, writes: _Writes) -> None:
        """Carry out ``writes``: many inserts by COPY, the rest in one statement."""
        s = self._s
        parts: list[str] = []
        params: dict[str, Any] = {}
        inserts = writes.inserts
        if len(inserts) >= COPY_ROWS:
            with cursor.copy(
                f"COPY {s}.qv_messages (conversation_pk, position, {_names(_MESSAGE_FIELDS)}) FROM STDIN"
            ) as copy:
                for pk, position, e in inserts:
                    copy.write_row((pk, position, *_message_row(e)))
        elif inserts:
            values = [(pk, position, *_message_row(e)) for pk, position, e in inserts]
            source = _rows("i", _INSERT_FIELDS, values, params)
            parts.append(
                f"""INSERT INTO {s}.qv_messages ({_names(_INSERT_FIELDS)})
                    SELECT {_values(_INSERT_FIELDS, "i")} FROM {source}"""
            )
        if writes.updates:  # a new content: the message's vectors came from the old one
            params["stale"] = [pk for pk, _, _ in writes.updates]
            parts.append(f"DELETE FROM {s}.qv_message_vectors WHERE message_pk = ANY(%(stale)b::bigint[])")
        if writes.doomed:  # their vectors go by ON DELETE CASCADE
            params["doomed"] = writes.doomed
            parts.append(f"DELETE FROM {s}.qv_messages WHERE pk = ANY(%(doomed)b::bigint[])")
        for name, fields, rows in (
            ("u", _UPDATE_FIELDS, [(pk, position, *_message_row(e)[2:]) for pk, position, e in writes.updates]),
            (
                "k",
                _KEEP_VECTOR_FIELDS,
                [(pk, position, *e.values, e.escaped, e.digest) for pk, position, e in writes.updates_keeping_vector],
            ),
            ("p", _MOVE_FIELDS, writes.moves),
        ):
            if rows:
                source = _rows(name, fields, rows, params)
                parts.append(
                    f"""UPDATE {s}.qv_messages m SET ({_names(fields[1:])}) = ROW({_values(fields[1:], name)})
                        FROM {source} WHERE m.pk = {name}.pk"""
                )
        if writes.next_positions:
            source = _rows("n", _NEXT_FIELDS, writes.next_positions, params)
            parts.append(
                f"""UPDATE {s}.qv_conversations c SET next_position = n.next_position
                    FROM {source} WHERE c.pk = n.pk"""
            )
        if parts:
            # The parts touch different rows, so one statement may hold them all.
            *first, last = parts
            if first:
                last = "WITH " + ", ".join(f"w{index} AS ({part})" for index, part in enumerate(first)) + " " + last
            cursor.execute(last, params)

    def delete(self, conversation_id: str) -> bool:
        if not is_storable_id(conversation_id):
            self._check_open()
            return False

        def work(cursor: psycopg.Cursor) -> bool:
            # An expired conversation is removed too, but reported missing.
            cursor.execute(
                f"DELETE FROM {self._s}.qv_conversations c WHERE id_key = %(key)s RETURNING {LIVE}",
                {"key": id_key(conversation_id), "now": now_key()},
            )
            found = cursor.fetchone()
            return found is not None and bool(found[0])  # messages go by ON DELETE CASCADE

        return self._run(f"deleting conversation {conversation_id}", work, write=True, idempotent=False)

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        if not (is_storable_id(conversation_id) and is_storable_id(message_id)):
            self._check_open()
            return False

        def work(cursor: psycopg.Cursor) -> bool:
            # Lock the conversation first, as save does: one lock order, no deadlocks. The
            # revision counts the write (saves that skip unchanged messages rely on it).
            found = cursor.execute(
                f"UPDATE {self._s}.qv_conversations c SET revision = revision + 1"
                f" WHERE id_key = %(key)s AND {LIVE} RETURNING pk",
                {"key": id_key(conversation_id), "now": now_key()},
            ).fetchone()
            if found is None:
                return False
            cursor.execute(
                f"DELETE FROM {self._s}.qv_messages WHERE conversation_pk = %s AND id_key = %s RETURNING pk",
                (found[0], id_key(message_id)),
            )
            return cursor.fetchone() is not None

        return self._run(f"deleting message {message_id}", work, write=True, idempotent=False)

    def purge_expired(self) -> int:
        """See :class:`~qv_session_manager.protocol.Expiring`: one statement through the expiry index."""
        self._check_open()

        def work(cursor: psycopg.Cursor) -> int:
            cursor.execute(
                f'DELETE FROM {self._s}.qv_conversations WHERE expires_key <= %(now)s COLLATE "C"',
                {"now": now_key()},
            )
            return max(cursor.rowcount, 0)  # messages go by ON DELETE CASCADE

        return self._run("removing expired conversations", work, write=True, idempotent=False)

    # -- reads ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the store is closed")

    def load(self, conversation_id: str) -> StoredConversation | None:
        if not is_storable_id(conversation_id):
            self._check_open()
            return None
        key = id_key(conversation_id)

        def work(cursor: psycopg.Cursor) -> tuple[Any, Sequence[Any]] | None:
            found = cursor.execute(
                f"SELECT c.pk, {CONVERSATION_COLUMNS} FROM {self._s}.qv_conversations c"
                f" WHERE c.id_key = %(key)s AND {LIVE}",
                {"key": key, "now": now_key()},
            ).fetchone()
            if found is None:
                return None
            rows = cursor.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM {self._s}.qv_messages m WHERE m.conversation_pk = %s ORDER BY m.position",
                (found[0],),
            ).fetchall()
            return found, rows

        result = self._run(f"loading conversation {conversation_id}", work, write=False)
        if result is None:
            return None
        found, rows = result
        return StoredConversation(
            _decode(decode_conversation, found[1:]), tuple(_decode(decode_message, row) for row in rows)
        )

    def load_window(
        self,
        conversation_id: str,
        *,
        last_messages: int | None = None,
        last_turns: int | None = None,
        keep_system: bool = True,
    ) -> StoredConversation | None:
        """See :class:`~qv_session_manager.protocol.WindowedLoading`.

        In one snapshot: reads messages backwards from the newest through the
        (conversation, position) index, a batch at a time (each twice the last), until
        the shared rule places the window's start; then the leading system messages
        before it. The rows read are about twice the window, however long the history.
        """
        check_window(last_messages, last_turns, keep_system)
        if not is_storable_id(conversation_id):
            self._check_open()
            return None
        key = id_key(conversation_id)
        messages = f"{self._s}.qv_messages m"

        def work(cursor: psycopg.Cursor) -> tuple[Any, list[Any]] | None:
            found = cursor.execute(
                f"SELECT c.pk, {CONVERSATION_COLUMNS} FROM {self._s}.qv_conversations c"
                f" WHERE c.id_key = %(key)s AND {LIVE}",
                {"key": key, "now": now_key()},
            ).fetchone()
            if found is None:
                return None
            pk = found[0]
            wanted = last_messages if last_messages is not None else 4 * last_turns + 4  # type: ignore[operator]  # check_window: one is given
            batch = max(8, min(wanted, 1 << 40))
            newest_first: list[Any] = []
            while True:
                # Two statements rather than "IS NULL OR": a generic plan keeps the index scan.
                earlier = "AND m.position < %(before)s" if newest_first else ""
                rows = cursor.execute(
                    f"""SELECT m.position, {MESSAGE_COLUMNS} FROM {messages}
                        WHERE m.conversation_pk = %(pk)s {earlier}
                        ORDER BY m.position DESC LIMIT %(limit)s""",
                    {"pk": pk, "before": newest_first[-1][0] if newest_first else None, "limit": batch},
                ).fetchall()
                newest_first += rows
                tail = newest_first[::-1]
                start = window_start(
                    [row[2] for row in tail],
                    last_messages=last_messages,
                    last_turns=last_turns,
                    complete=len(rows) < batch,
                )
                if start is not None:
                    break
                batch = min(batch * 2, 1 << 40)
            tail = tail[start:]
            head: list[Any] = []
            if keep_system and tail:
                head = cursor.execute(
                    f"""SELECT m.position, {MESSAGE_COLUMNS} FROM {messages}
                        WHERE m.conversation_pk = %(pk)s
                        AND m.position < least(%(start)s, (SELECT s.position FROM {self._s}.qv_messages s
                            WHERE s.conversation_pk = %(pk)s AND s.role <> 'system'
                            ORDER BY s.position LIMIT 1))
                        ORDER BY m.position""",
                    {"pk": pk, "start": tail[0][0]},
                ).fetchall()
            return found, [*head, *tail]

        result = self._run(f"loading the end of conversation {conversation_id}", work, write=False)
        if result is None:
            return None
        found, rows = result
        return StoredConversation(
            _decode(decode_conversation, found[1:]), tuple(_decode(decode_message, row[1:]) for row in rows)
        )

    def get(self, conversation_id: str) -> ConversationRecord | None:
        if not is_storable_id(conversation_id):
            self._check_open()
            return None
        found = self._run(
            f"reading conversation {conversation_id}",
            lambda cursor: cursor.execute(
                f"SELECT {CONVERSATION_COLUMNS} FROM {self._s}.qv_conversations c WHERE c.id_key = %(key)s AND {LIVE}",
                {"key": id_key(conversation_id), "now": now_key()},
            ).fetchone(),
            write=False,
        )
        return None if found is None else _decode(decode_conversation, found)

    @staticmethod
    def _where(filter: ConversationFilter) -> tuple[str, dict[str, Any]]:
        """SQL conditions on conversations ``c`` for a filter, with named parameters.

        Metadata: ``filter_doc @> {...}`` (GIN-indexed) is exact for null, booleans
        and numbers (numeric equality of exact decimal values); strings are compared
        once more bytewise, whatever the database's collation.
        """
        check_filter(filter)
        key = _TIME_FIELDS[filter.field]
        conditions = [LIVE]  # expired conversations never pass
        params: dict[str, Any] = {"now": now_key()}
        if filter.start is not None:
            conditions.append(f'c.{key} >= %(start)s COLLATE "C"')
            params["start"] = time_key(filter.start)
        if filter.end is not None:
            conditions.append(f'c.{key} < %(end)s COLLATE "C"')
            params["end"] = time_key(filter.end)
        if filter.metadata:
            parts = []
            for index, (name, value) in enumerate(filter.metadata.items()):
                escaped_name = escape(name)
                parts.append(json.dumps(escaped_name, ensure_ascii=False) + ":" + filter_scalar(value))  # type: ignore[operator]  # check_filter: scalars only
                if isinstance(value, str):
                    conditions.append(f'(c.filter_doc ->> %(key{index})s) COLLATE "C" = %(value{index})s COLLATE "C"')
                    params[f"key{index}"] = escaped_name
                    params[f"value{index}"] = escape(value)
            conditions.append("c.filter_doc @> %(contains)s::jsonb")
            params["contains"] = "{" + ",".join(parts) + "}"
        return " AND ".join(conditions), params

    @staticmethod
    def _order(filter: ConversationFilter) -> str:
        key = _TIME_FIELDS[filter.field]
        return f'c.{key} COLLATE "C" DESC, c.id COLLATE "C" DESC'

    def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> list[ConversationRecord]:
        return [_decode(decode_conversation, row) for row in self._listed_rows(filter, limit, offset, after)]

    def list_summaries(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """See :class:`~qv_session_manager.protocol.SummaryListing`: the dicts straight from the rows."""
        return [_decode(summary_of_row, row) for row in self._listed_rows(filter, limit, offset, after)]

    def _listed_rows(
        self, filter: ConversationFilter, limit: int | None, offset: int, after: ConversationRecord | None
    ) -> builtins.list[Any]:
        """The rows (CONVERSATION_COLUMNS) of a listing, in its order: one statement, so no BEGIN and COMMIT."""
        check_page(limit, offset)
        where, params = self._where(filter)
        self._check_open()
        key = _TIME_FIELDS[filter.field]
        if after is not None:
            if not isinstance(after, ConversationRecord):
                raise InvalidInputError(f"after must be a ConversationRecord, not {type(after).__name__}")
            where += (
                f' AND (c.{key} COLLATE "C", c.id COLLATE "C") < (%(after_key)s COLLATE "C", %(after_id)s COLLATE "C")'
            )
            params.update(after_key=time_key(getattr(after, filter.field)), after_id=after.id)
        sql = (
            f"SELECT {CONVERSATION_COLUMNS} FROM {self._s}.qv_conversations c WHERE {where}"
            f" ORDER BY {self._order(filter)} LIMIT %(limit)s OFFSET %(offset)s"
        )
        params.update(limit=limit, offset=offset)
        return self._run(
            "listing conversations",
            lambda cursor: cursor.execute(sql, params).fetchall(),
            write=False,
            transaction=False,
        )

    def search(
        self,
        query: Query,
        filter: ConversationFilter,
        *,
        order: SearchOrder = "recent",
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> builtins.list[SearchHit]:  # ``list`` is the method above here
        check_page(limit, offset)
        check_order(order)
        where, params = self._where(filter)
        self._check_open()
        if not isinstance(query, Query):
            raise InvalidInputError(f"expected a parsed Query, got {type(query).__name__}")
        if query.is_empty:
            return []
        relevance = order == "relevance"
        exact = exact_query(query)
        loose = candidate_query(query)
        params.update(exact=exact, loose=loose, limit=limit, offset=offset)
        s = self._s

        def rank(column: str, tsquery: str) -> str:
            return f"ts_rank({column}, {tsquery}::tsquery, 1)" if relevance else "0::real"

        # 1. Documents whose vector is inexact (huge texts): select candidates with the
        #    looser query, then decide in Python with the reference matcher. The filter is
        #    left to the query below: joined here, it made PostgreSQL scan every conversation.
        candidates_sql = f"""
            SELECT m.conversation_pk, m.position, m.id, m.content, m.escaped, {rank("m.content_tsv", "%(loose)s")}
            FROM {s}.qv_messages m WHERE NOT m.search_exact AND m.content_tsv @@ %(loose)s::tsquery
            UNION ALL
            SELECT c.pk, -1, NULL, c.title, c.escaped, {rank("c.title_tsv", "%(loose)s")}
            FROM {s}.qv_conversations c WHERE NOT c.title_exact AND c.title_tsv @@ %(loose)s::tsquery"""
        # 2. Exact vectors answer in SQL; the verified candidates join them. The hit is
        #    the title (position -1) or the first matching message; the score the best.
        exact_sql = (
            f"""SELECT m.conversation_pk, m.position, m.id, {rank("m.content_tsv", "%(exact)s")}
                FROM {s}.qv_messages m WHERE m.search_exact AND m.content_tsv @@ %(exact)s::tsquery
                UNION ALL
                SELECT c.pk, -1, NULL, {rank("c.title_tsv", "%(exact)s")}
                FROM {s}.qv_conversations c WHERE c.title_exact AND c.title_tsv @@ %(exact)s::tsquery
                UNION ALL"""
            if exact is not None
            else ""
        )
        # A query of single words without exclusions means the same on inexact vectors
        # (their distinct tokens): they answer in SQL too, without reading their text.
        loose_is_exact = loose is not None and _words_only(query)
        if loose_is_exact:
            exact_sql += f"""
                SELECT m.conversation_pk, m.position, m.id, {rank("m.content_tsv", "%(loose)s")}
                FROM {s}.qv_messages m WHERE NOT m.search_exact AND m.content_tsv @@ %(loose)s::tsquery
                UNION ALL
                SELECT c.pk, -1, NULL, {rank("c.title_tsv", "%(loose)s")}
                FROM {s}.qv_conversations c WHERE NOT c.title_exact AND c.title_tsv @@ %(loose)s::tsquery
                UNION ALL"""
        if with_text:
            text_join = f"LEFT JOIN {s}.qv_messages m ON m.conversation_pk = best.cpk AND m.position = best.position"
            text_column = (
                "CASE WHEN best.position < 0 THEN c.title ELSE m.content END, "
                "CASE WHEN best.position < 0 THEN c.escaped ELSE m.escaped END"
            )
        else:
            text_join, text_column = "", "NULL, 0"
        ranking = "best.rank DESC, " if relevance else ""
        # DISTINCT ON keeps each conversation's first hit (lowest position) with its id,
        # so no second lookup of the message is needed unless its text is asked for.
        hits_sql = f"""
            WITH matched (cpk, position, message_id, rank) AS (
                {exact_sql}
                SELECT * FROM unnest(%(verified_pk)s::bigint[], %(verified_position)s::bigint[],
                                     %(verified_id)s::text[], %(verified_rank)s::real[])
            ),
            best (cpk, position, message_id, rank) AS (
                SELECT DISTINCT ON (cpk) cpk, position, message_id,
                    {"max(rank) OVER (PARTITION BY cpk)" if relevance else "rank"}
                FROM matched ORDER BY cpk, position
            )
            SELECT {CONVERSATION_COLUMNS}, best.message_id, {text_column}, best.rank
            FROM best JOIN {s}.qv_conversations c ON c.pk = best.cpk
            {text_join}
            WHERE {where}
            ORDER BY {ranking}{self._order(filter)}
            LIMIT %(limit)s OFFSET %(offset)s"""

        def work(cursor: psycopg.Cursor) -> Sequence[Any]:
            verified: dict[str, Any] = {
                "verified_pk": [],
                "verified_position": [],
                "verified_id": [],
                "verified_rank": [],
            }
            if loose is not None and not loose_is_exact:
                for cpk, position, message_id, text, escaped, score in cursor.execute(candidates_sql, params):
                    bit = TITLE if position < 0 else CONTENT
                    if query.matches(tokens(load_text(text, escaped, bit) or "")):
                        verified["verified_pk"].append(cpk)
                        verified["verified_position"].append(position)
                        verified["verified_id"].append(message_id)
                        verified["verified_rank"].append(score)
            return cursor.execute(hits_sql, {**params, **verified}).fetchall()

        rows = self._run("searching", work, write=False)
        hits = []
        for row in rows:
            record = _decode(decode_conversation, row[:7])
            message_id, text, escaped, score = row[7:]
            if text is not None:
                text = load_text(text, escaped, TITLE if message_id is None else CONTENT)
            hits.append(SearchHit(record, message_id, text, float(score) if relevance else None))
        return hits

    def drop(self) -> None:
        """Delete this store, then close it (:class:`~qv_session_manager.protocol.Droppable`).

        Drops the ``qv_`` tables, and the schema when nothing else is left in it
        (never ``public``). A drop waits for other stores' writes on the schema as a
        write does (``lock_timeout``); those stores fail from then on.
        """
        self._run(f"dropping {self._describe}", lambda cursor: schema_module.drop(cursor, self.schema), write=True)
        self.close()

    # -- message vectors (protocol.VectorStorage; the SQL is in .vectors) --------------

    def pending_embeddings(self, space: VectorSpace, *, limit: int) -> builtins.list[EmbeddingTask]:
        """See :class:`~qv_session_manager.protocol.VectorStorage`: in message key order (oldest rows first)."""
        check_space(space)
        check_limit(limit)
        return self._run(
            "finding messages to embed", lambda cursor: self._vectors.pending(cursor, space, limit), write=False
        )

    def store_embeddings(self, space: VectorSpace, embedded: Sequence[tuple[EmbeddingTask, Sequence[float]]]) -> int:
        """See :class:`~qv_session_manager.protocol.VectorStorage`: one transaction.

        With pgvector, the first call for a space on this store makes sure the space's
        HNSW index exists (its own transaction, before); a role that may not create it
        stores and searches without it (a warning says so).
        """
        checked = checked_embeddings(check_space(space), embedded)
        self._check_open()
        if space.key not in self._vectors.indexed:
            self._index_space(space)
        return self._run(
            "storing message vectors", lambda cursor: self._vectors.store(cursor, space, checked), write=True
        )

    def _index_space(self, space: VectorSpace) -> None:
        statement = self._vectors.index_statement(space)
        if statement is not None:
            name = f"{self._s}.{self._vectors.index_name(space)}"

            def work(cursor: psycopg.Cursor) -> None:
                (found,) = cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()  # type: ignore[misc]
                if not found:  # the migrations' lock: one creator at a time
                    cursor.execute(
                        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (schema_module.LOCK_CLASS, self.schema)
                    )
                    cursor.execute(statement)

            try:
                self._run(f"indexing vector space {space.key}", work, write=True)
            except StorageError as exc:
                if self._closed:
                    raise
                log.warning("no HNSW index for vector space %s (%s): searches scan it", space.key, exc)
        self._vectors.indexed.add(space.key)

    def vector_search(
        self,
        space: VectorSpace,
        query: Sequence[float],
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> builtins.list[SearchHit]:
        """See :class:`~qv_session_manager.protocol.VectorStorage`: one snapshot; how, see :attr:`vectors`.

        Without a ``limit`` every conversation is ranked, so the search is exact either way.
        """
        check_space(space)
        checked_vector(query, space)
        check_page(limit, offset)
        where, params = self._where(filter)
        key = _TIME_FIELDS[filter.field]
        sql = self._vectors

        def work(cursor: psycopg.Cursor) -> builtins.list[SearchHit]:
            if sql.mode == "pgvector" and limit is not None:
                ranking = sql.nearest(cursor, space, query, where, params, key, offset + limit)
            else:
                ranking = sql.exact(cursor, space, query, where, params, key)
            end = None if limit is None else offset + limit
            return sql.hits(cursor, ranking[offset:end], lambda row: _decode(decode_conversation, row), with_text)

        return self._run("searching by meaning", work, write=False)

    def embedding_counts(self, space: VectorSpace) -> tuple[int, int]:
        """See :class:`~qv_session_manager.protocol.VectorStorage`."""
        check_space(space)
        return self._run("counting message vectors", lambda cursor: self._vectors.counts(cursor, space), write=False)

    def forget_embeddings(self, space: VectorSpace | None = None) -> int:
        """See :class:`~qv_session_manager.protocol.VectorStorage`; the spaces' HNSW indexes stay."""
        if space is not None:
            check_space(space)
        return self._run("removing message vectors", lambda cursor: self._vectors.forget(cursor, space), write=True)

    def indexed_tokens(self) -> builtins.set[str]:
        """See :class:`~qv_session_manager.protocol.IndexInspection`: the lexemes of every stored vector.

        The vectors live in the rows they index, so the GIN indexes hold exactly these.
        """
        self._check_open()
        sql = (
            f"SELECT unnest(tsvector_to_array(content_tsv)) FROM {self._s}.qv_messages"
            f" UNION SELECT unnest(tsvector_to_array(title_tsv)) FROM {self._s}.qv_conversations"
        )

        def work(cursor: psycopg.Cursor) -> builtins.set[str]:
            return {lexeme for (lexeme,) in cursor.execute(sql)}

        return self._run("reading the search vocabulary", work, write=False)

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r})"
