"""The PostgreSQL backend: a connection pool, one transaction per operation,
search over GIN-indexed vectors of the shared tokens.

Concurrency. Every write runs in one READ COMMITTED transaction that starts by
upserting (and so row-locking) the conversation row; writers of one conversation
therefore run one after the other, in every process, and each sees the messages
the previous one committed: positions never collide (a deferred unique constraint
on ``(conversation_pk, position)`` guards it). Reads run in one REPEATABLE READ,
READ ONLY transaction, so a load or a search sees one consistent snapshot.

Failures. A connection that breaks (server restart, network cut, administrator
termination) makes the operation run again from the start on a fresh connection
from the pool (``ConnectionPool.check_connection`` tests a connection before it
is handed out): a save is never resumed half-way, it is retried whole, which is
safe because a save is idempotent. A delete whose connection broke while it was
committing is not retried (its answer would be unknowable) and raises
StorageError. Deadlocks and serialization failures are retried too.
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace as dataclass_replace
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import IsolationLevel
from qv_session_manager.errors import CorruptStorageError, InvalidInputError, StorageError
from qv_session_manager.protocol import Capability, ConversationFilter, SearchOrder
from qv_session_manager.query import Query
from qv_session_manager.records import (
    ConversationRecord,
    MessageRecord,
    SearchHit,
    StoredConversation,
    check_save,
    check_unique_message_ids,
    is_storable_id,
)
from qv_session_manager.rules import check_filter, check_order, check_page
from qv_session_manager.text import tokens
from qv_session_manager.timeutil import time_key

from . import schema as schema_module
from .errors import is_connection_failure, is_transient, translate
from .rows import (
    CONTENT,
    CONVERSATION_COLUMNS,
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
)
from .textsearch import candidate_query, exact_query

T = TypeVar("T")
log = logging.getLogger("qv_session_manager")

_TIME_FIELDS = {"updated_at": "updated_key", "created_at": "created_key"}
#: How many times an operation runs at most when its connection breaks or it deadlocks.
ATTEMPTS = 4
_BACKOFF = (0.05, 0.25, 1.0)



def _decode(decoder: Callable[[Any], T], row: Any) -> T:
    try:
        return decoder(row)
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptStorageError(f"a stored row cannot be read back: {exc}") from exc


class PostgresStore:
    """A :class:`~qv_session_manager.protocol.ConversationStore` in a PostgreSQL schema.

    ``conninfo`` is anything libpq accepts (``postgresql://user@host/db`` or
    ``"host=... dbname=..."``). The schema is created and migrated when needed.
    ``min_size``/``max_size`` size the connection pool, ``timeout`` is how long an
    operation waits for a usable connection (also across a server restart),
    ``lock_timeout`` how long a write waits for a row lock before raising
    StorageBusyError (seconds; 0 waits forever).
    """

    capabilities = frozenset({Capability.PERSISTENT, Capability.MULTI_PROCESS, Capability.RELEVANCE})

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
    ) -> None:
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
            raise InvalidInputError(f"not a valid PostgreSQL connection string: {exc}") from None
        self.schema = schema
        self._s = schema_module.quote_identifier(schema)
        self._timeout = float(timeout)
        self._lock_timeout_ms = int(lock_timeout * 1000)
        self._closed = False
        self._close_lock = threading.Lock()
        self._describe = f"PostgreSQL schema {schema!r}"
        connect_kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(conninfo):
            connect_kwargs["connect_timeout"] = max(1, int(connect_timeout))
        try:
            with psycopg.connect(conninfo, **connect_kwargs) as connection:
                self._configure(connection)
                encoding = connection.execute("SHOW server_encoding").fetchone()
                if encoding is None or encoding[0].upper() not in ("UTF8", "UTF-8"):
                    raise StorageError(
                        f"the database uses the {encoding[0] if encoding else 'unknown'} encoding; "
                        "qv-session-manager-postgres needs a UTF8 database"
                    )
                schema_module.migrate(connection, schema)
        except psycopg.Error as exc:
            raise translate(exc, f"opening {self._describe}") from exc
        self._pool = psycopg_pool.ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=connect_kwargs,
            configure=self._configure,
            check=psycopg_pool.ConnectionPool.check_connection,
            timeout=self._timeout,
            name=f"qv-postgres-{schema}",
            open=False,
        )
        self._pool.open(wait=False)

    def _configure(self, connection: psycopg.Connection) -> None:
        connection.execute("SELECT set_config('lock_timeout', %s, false)", (f"{self._lock_timeout_ms}ms",))

    # -- plumbing -----------------------------------------------------------------

    def _run(self, doing: str, work: Callable[[psycopg.Cursor], T], *, write: bool, idempotent: bool = True) -> T:
        """Run ``work`` in one transaction, again from the start when the connection breaks.

        ``idempotent=False``: a connection lost while committing is not retried.
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
                    with connection.transaction():
                        result = work(connection.cursor())
                        committing = True
                    return result
            except (psycopg.Error, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed) as exc:
                if isinstance(exc, psycopg_pool.PoolClosed) or self._closed:
                    raise StorageError(f"{doing} failed: the store is closed") from exc
                again = is_transient(exc) or (
                    is_connection_failure(exc, connection) and (idempotent or not committing)
                )
                if again and attempt + 1 < ATTEMPTS:
                    log.warning(
                        "%s (%s): %s; running it again (attempt %d of %d)",
                        doing, self._describe, str(exc).strip() or type(exc).__name__, attempt + 2, ATTEMPTS,
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
        check_save(conversation, messages)
        row = encode_conversation(conversation)
        encoded = [EncodedMessage(message) for message in messages]
        self._run(
            f"saving conversation {conversation.id}",
            lambda cursor: self._save(cursor, row, encoded, bool(replace)),
            write=True,
        )

    def append(
        self,
        conversation_id: str,
        messages: Sequence[MessageRecord],
        *,
        updated_at: datetime | None = None,
    ) -> bool:
        check_unique_message_ids(messages)
        if not is_storable_id(conversation_id):
            self._check_open()
            return False
        encoded = [EncodedMessage(message) for message in messages]

        def work(cursor: psycopg.Cursor) -> bool:
            # FOR UPDATE: concurrent saves of this conversation wait, so nothing of theirs is lost.
            found = cursor.execute(
                f"SELECT {CONVERSATION_COLUMNS} FROM {self._s}.qv_conversations c WHERE c.id_key = %s FOR UPDATE",  # type: ignore[arg-type]
                (id_key(conversation_id),),
            ).fetchone()
            if found is None:
                return False
            record = _decode(decode_conversation, found)
            if updated_at is not None:
                record = dataclass_replace(record, updated_at=updated_at)
            self._save(cursor, encode_conversation(record), encoded, False)
            return True

        return self._run(f"appending to conversation {conversation_id}", work, write=True)

    def _save(self, cursor: psycopg.Cursor, row: dict[str, Any], encoded: list[EncodedMessage], replace: bool) -> None:
        s = self._s
        # The upsert row-locks the conversation: writers of one conversation queue here.
        pk, stored_next = cursor.execute(
            f"""INSERT INTO {s}.qv_conversations AS c (id, id_key, title, model_name, created_at, updated_at,
                    created_key, updated_key, metadata, filter_doc, escaped, title_tsv, title_exact)
                VALUES (%(id)s, %(id_key)s, %(title)s, %(model_name)s, %(created_at)s, %(updated_at)s,
                    %(created_key)s, %(updated_key)s, %(metadata)s, %(filter_doc)s::jsonb, %(escaped)s,
                    %(title_tsv)s::tsvector, %(title_exact)s)
                ON CONFLICT (id_key) DO UPDATE SET title = EXCLUDED.title, model_name = EXCLUDED.model_name,
                    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
                    created_key = EXCLUDED.created_key, updated_key = EXCLUDED.updated_key,
                    metadata = EXCLUDED.metadata, filter_doc = EXCLUDED.filter_doc, escaped = EXCLUDED.escaped,
                    title_tsv = EXCLUDED.title_tsv, title_exact = EXCLUDED.title_exact
                RETURNING c.pk, c.next_position""",  # type: ignore[arg-type]
            row,
        ).fetchone()  # type: ignore[misc]
        sql = f"SELECT id_key, pk, position, digest, content_digest FROM {s}.qv_messages WHERE conversation_pk = %s"
        if replace:
            found = cursor.execute(sql, (pk,)).fetchall()  # type: ignore[arg-type]
        else:
            found = cursor.execute(sql + " AND id_key = ANY(%s)", (pk, [e.key for e in encoded])).fetchall()  # type: ignore[arg-type]
        stored = {bytes(key): (message_pk, position, bytes(d), bytes(cd)) for key, message_pk, position, d, cd in found}
        next_position = stored_next
        if replace:
            wanted = {e.key for e in encoded}
            doomed = [value[0] for key, value in stored.items() if key not in wanted]
            if doomed:
                cursor.execute(f"DELETE FROM {s}.qv_messages WHERE pk = ANY(%s)", (doomed,))  # type: ignore[arg-type]
            next_position = 0
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        updates_keeping_vector: list[tuple[Any, ...]] = []
        moves: list[tuple[int, int]] = []
        for e in encoded:
            existing = stored.get(e.key)
            if existing is None:
                vector, exact = e.vector()
                inserts.append(
                    (pk, e.id, e.key, next_position, *e.values, e.escaped, e.digest, e.content_digest, vector, exact)
                )
                next_position += 1
                continue
            message_pk, position, old_digest, old_content_digest = existing
            if replace:
                position = next_position
                next_position += 1
            if old_digest != e.digest:
                if old_content_digest != e.content_digest:
                    vector, exact = e.vector()
                    updates.append((position, *e.values, e.escaped, e.digest, e.content_digest, vector, exact, message_pk))
                else:
                    updates_keeping_vector.append((position, *e.values, e.escaped, e.digest, message_pk))
            elif position != existing[1]:
                moves.append((position, message_pk))
        columns = "position, role, content, created_at, metadata, images, tool_calls, tool_call_id, escaped, digest"
        if inserts:
            cursor.executemany(
                f"""INSERT INTO {s}.qv_messages (conversation_pk, id, id_key, {columns}, content_digest,
                        content_tsv, search_exact)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::tsvector, %s)""",  # type: ignore[arg-type]
                inserts,
            )
        if updates:
            cursor.executemany(
                f"""UPDATE {s}.qv_messages SET ({columns}, content_digest, content_tsv, search_exact)
                    = (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::tsvector, %s) WHERE pk = %s""",  # type: ignore[arg-type]
                updates,
            )
        if updates_keeping_vector:
            cursor.executemany(
                f"UPDATE {s}.qv_messages SET ({columns}) = (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) WHERE pk = %s",  # type: ignore[arg-type]
                updates_keeping_vector,
            )
        if moves:
            cursor.executemany(f"UPDATE {s}.qv_messages SET position = %s WHERE pk = %s", moves)  # type: ignore[arg-type]
        if next_position != stored_next:
            cursor.execute(f"UPDATE {s}.qv_conversations SET next_position = %s WHERE pk = %s", (next_position, pk))  # type: ignore[arg-type]

    def delete(self, conversation_id: str) -> bool:
        if not is_storable_id(conversation_id):
            self._check_open()
            return False

        def work(cursor: psycopg.Cursor) -> bool:
            cursor.execute(
                f"DELETE FROM {self._s}.qv_conversations WHERE id_key = %s RETURNING pk",  # type: ignore[arg-type]
                (id_key(conversation_id),),
            )
            return cursor.fetchone() is not None  # messages go by ON DELETE CASCADE

        return self._run(f"deleting conversation {conversation_id}", work, write=True, idempotent=False)

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        if not (is_storable_id(conversation_id) and is_storable_id(message_id)):
            self._check_open()
            return False

        def work(cursor: psycopg.Cursor) -> bool:
            # Lock the conversation first, as save does: one lock order, no deadlocks.
            found = cursor.execute(
                f"SELECT pk FROM {self._s}.qv_conversations WHERE id_key = %s FOR UPDATE",  # type: ignore[arg-type]
                (id_key(conversation_id),),
            ).fetchone()
            if found is None:
                return False
            cursor.execute(
                f"DELETE FROM {self._s}.qv_messages WHERE conversation_pk = %s AND id_key = %s RETURNING pk",  # type: ignore[arg-type]
                (found[0], id_key(message_id)),
            )
            return cursor.fetchone() is not None

        return self._run(f"deleting message {message_id}", work, write=True, idempotent=False)

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
                f"SELECT c.pk, {CONVERSATION_COLUMNS} FROM {self._s}.qv_conversations c WHERE c.id_key = %s",  # type: ignore[arg-type]
                (key,),
            ).fetchone()
            if found is None:
                return None
            rows = cursor.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM {self._s}.qv_messages m WHERE m.conversation_pk = %s ORDER BY m.position",  # type: ignore[arg-type]
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

    def get(self, conversation_id: str) -> ConversationRecord | None:
        if not is_storable_id(conversation_id):
            self._check_open()
            return None
        found = self._run(
            f"reading conversation {conversation_id}",
            lambda cursor: cursor.execute(
                f"SELECT {CONVERSATION_COLUMNS} FROM {self._s}.qv_conversations c WHERE c.id_key = %s",  # type: ignore[arg-type]
                (id_key(conversation_id),),
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
        conditions = ["true"]
        params: dict[str, Any] = {}
        if filter.start is not None:
            conditions.append(f"c.{key} >= %(start)s COLLATE \"C\"")
            params["start"] = time_key(filter.start)
        if filter.end is not None:
            conditions.append(f"c.{key} < %(end)s COLLATE \"C\"")
            params["end"] = time_key(filter.end)
        if filter.metadata:
            parts = []
            for index, (name, value) in enumerate(filter.metadata.items()):
                escaped_name = escape(name)
                parts.append(json.dumps(escaped_name, ensure_ascii=False) + ":" + filter_scalar(value))  # type: ignore[operator]
                if isinstance(value, str):
                    conditions.append(
                        f"(c.filter_doc ->> %(key{index})s) COLLATE \"C\" = %(value{index})s COLLATE \"C\""
                    )
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
        check_page(limit, offset)
        where, params = self._where(filter)
        self._check_open()
        key = _TIME_FIELDS[filter.field]
        if after is not None:
            if not isinstance(after, ConversationRecord):
                raise InvalidInputError(f"after must be a ConversationRecord, not {type(after).__name__}")
            where += f' AND (c.{key} COLLATE "C", c.id COLLATE "C") < (%(after_key)s COLLATE "C", %(after_id)s COLLATE "C")'
            params.update(after_key=time_key(getattr(after, filter.field)), after_id=after.id)
        sql = (
            f"SELECT {CONVERSATION_COLUMNS} FROM {self._s}.qv_conversations c WHERE {where}"
            f" ORDER BY {self._order(filter)} LIMIT %(limit)s OFFSET %(offset)s"
        )
        params.update(limit=limit, offset=offset)
        rows = self._run("listing conversations", lambda cursor: cursor.execute(sql, params).fetchall(), write=False)  # type: ignore[arg-type]
        return [_decode(decode_conversation, row) for row in rows]

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
        #    looser query, then decide in Python with the reference matcher.
        candidates_sql = f"""
            SELECT m.conversation_pk, m.position, m.content, m.escaped, {rank('m.content_tsv', '%(loose)s')}
            FROM {s}.qv_messages m JOIN {s}.qv_conversations c ON c.pk = m.conversation_pk
            WHERE NOT m.search_exact AND m.content_tsv @@ %(loose)s::tsquery AND {where}
            UNION ALL
            SELECT c.pk, -1, c.title, c.escaped, {rank('c.title_tsv', '%(loose)s')}
            FROM {s}.qv_conversations c
            WHERE NOT c.title_exact AND c.title_tsv @@ %(loose)s::tsquery AND {where}"""
        # 2. Exact vectors answer in SQL; the verified candidates join them. The hit is
        #    the title (position -1) or the first matching message; the score the best.
        exact_sql = (
            f"""SELECT m.conversation_pk, m.position, {rank('m.content_tsv', '%(exact)s')}
                FROM {s}.qv_messages m WHERE m.search_exact AND m.content_tsv @@ %(exact)s::tsquery
                UNION ALL
                SELECT c.pk, -1, {rank('c.title_tsv', '%(exact)s')}
                FROM {s}.qv_conversations c WHERE c.title_exact AND c.title_tsv @@ %(exact)s::tsquery
                UNION ALL"""
            if exact is not None
            else ""
        )
        text_column = (
            "CASE WHEN best.position < 0 THEN c.title ELSE m.content END, "
            "CASE WHEN best.position < 0 THEN c.escaped ELSE m.escaped END"
            if with_text
            else "NULL, 0"
        )
        ranking = "best.rank DESC, " if relevance else ""
        hits_sql = f"""
            WITH matched (cpk, position, rank) AS (
                {exact_sql}
                SELECT * FROM unnest(%(verified_pk)s::bigint[], %(verified_position)s::bigint[],
                                     %(verified_rank)s::real[])
            ),
            best (cpk, position, rank) AS (
                SELECT cpk, min(position), max(rank) FROM matched GROUP BY cpk
            )
            SELECT {CONVERSATION_COLUMNS}, m.id, {text_column}, best.rank
            FROM best JOIN {s}.qv_conversations c ON c.pk = best.cpk
            LEFT JOIN {s}.qv_messages m ON m.conversation_pk = best.cpk AND m.position = best.position
            WHERE {where}
            ORDER BY {ranking}{self._order(filter)}
            LIMIT %(limit)s OFFSET %(offset)s"""

        def work(cursor: psycopg.Cursor) -> Sequence[Any]:
            verified: dict[str, Any] = {"verified_pk": [], "verified_position": [], "verified_rank": []}
            if loose is not None:
                for cpk, position, text, escaped, score in cursor.execute(candidates_sql, params):  # type: ignore[arg-type]
                    bit = TITLE if position < 0 else CONTENT
                    if query.matches(tokens(load_text(text, escaped, bit) or "")):
                        verified["verified_pk"].append(cpk)
                        verified["verified_position"].append(position)
                        verified["verified_rank"].append(score)
            return cursor.execute(hits_sql, {**params, **verified}).fetchall()  # type: ignore[arg-type]

        rows = self._run("searching", work, write=False)
        hits = []
        for row in rows:
            record = _decode(decode_conversation, row[:7])
            message_id, text, escaped, score = row[7:]
            if text is not None:
                text = load_text(text, escaped, TITLE if message_id is None else CONTENT)
            hits.append(SearchHit(record, message_id, text, float(score) if relevance else None))
        return hits

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r})"
