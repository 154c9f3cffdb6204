"""The PostgreSQL store's message vectors (:class:`~qv_session_manager.protocol.VectorStorage`).

``qv_message_vectors`` (migration 4) holds one row per (space key, message row); its
foreign key drops a vector with its message (``ON DELETE CASCADE``: deletes, replaces,
expiry purges), and a save that changes a message's content deletes its vectors in
the same statement (see ``PostgresStore._write``). Its ``embedding`` column has one of
two layouts, fixed per schema when the table is made (``qv_store_info.vector_layout``):

- ``pgvector``: the extension's ``vector`` type, without a dimension. The first store
  of a space creates a partial HNSW index for it, on ``embedding::vector(n)`` with
  ``vector_ip_ops``, ``WHERE space = '<key>'`` (dimensions up to 2,000, pgvector's
  limit for an HNSW index; larger spaces are scanned).
- ``bytea``: the little-endian float32 values of
  :func:`~qv_session_manager.vector_records.checked_vector`, as SQLite stores them,
  when the server has no pgvector or the store was opened with ``vectors="exact"``.

Every score and every order comes from :mod:`qv_session_manager.vector_records`,
computed in Python from the stored float32 values, so both layouts give the shared
rule's answers. Searches run one of two ways (``PostgresStore.vectors``):

- ``"exact"``: the vectors of the space of every conversation passing the filter are
  read and ranked (each layout; pgvector's values are read by ``vector_send``).
- ``"pgvector"``: the messages nearest the query come first by ``<#>`` (negative inner
  product) with a LIMIT, so PostgreSQL can answer from the space's HNSW index (with
  ``hnsw.ef_search = 1000``, and ``hnsw.iterative_scan = relaxed_order`` on pgvector
  0.8 or later, so filters do not starve it); every vector of the conversations found is then read and ranked exactly,
  and more candidates are fetched until the best conversations of the page are sure
  to outscore every message not fetched. Where PostgreSQL scans (small data, no index)
  this is the exact answer; through HNSW it is as complete as the index's recall.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from qv_session_manager.records import SearchHit
from qv_session_manager.rules import now_key
from qv_session_manager.vector_records import (
    Candidate,
    EmbeddingTask,
    VectorSpace,
    best_candidates,
    checked_vector,
    unpack,
)

from .rows import CONTENT, CONVERSATION_COLUMNS, LIVE, id_key, load_text, store_text
from .schema import quote_identifier

#: pgvector builds HNSW indexes of ``vector`` up to this dimension.
HNSW_MAX_DIMENSION = 2000
#: The first ordered fetch of a pgvector search takes this many messages at least, and
#: this many times the conversations of the page; each further fetch four times more.
FIRST_FETCH = 64
FETCH_FACTOR = 4
#: ``hnsw.ef_search`` of every fetch: pgvector's largest. Measured on random 384-dimension
#: unit vectors (HNSW's hard case), top 10 conversations against the exact ranking: at 3,000
#: vectors 40 (the default) found 77%, 200 all; at 15,000, 200 found 69% (29 ms), 1,000 all
#: (52 ms; exact: 245 ms).
EF_SEARCH = 1000
#: Beyond this many candidate messages a search reads the whole space instead.
MAX_FETCH = 200_000


def literal(text: str) -> str:
    """``text`` as an SQL string constant, whatever ``standard_conforming_strings`` says."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def vector_text(blob: bytes, dimension: int) -> str:
    """pgvector's input form of packed float32 values: ``repr`` of each parses back to the same float32."""
    return "[" + ",".join(repr(value) for value in unpack(blob, dimension)) + "]"


def _from_send(sent: bytes, dimension: int) -> bytes:
    """The packed little-endian float32 values of pgvector's binary form (``vector_send``)."""
    return struct.pack(f"<{dimension}f", *struct.unpack_from(f">{dimension}f", sent, 4))


class VectorSql:
    """The vector statements of one store, for the layout of its schema.

    ``extension`` is pgvector's (schema, version) when the schema's layout is
    ``pgvector``, else None; ``search`` the store option (``"exact"`` reads and ranks
    every vector even where an index could serve).
    """

    def __init__(self, schema: str, extension: tuple[str, str] | None, search: str) -> None:
        self._s = schema
        self.layout = "bytea" if extension is None else "pgvector"
        self.mode = "pgvector" if extension is not None and search != "exact" else "exact"
        self._ext = "" if extension is None else quote_identifier(extension[0])
        version = [] if extension is None else extension[1].split(".")
        self._iterative = [int(part) if part.isdigit() else 0 for part in version[:2]] >= [0, 8]
        #: Spaces whose HNSW index this store has made sure of (or failed to make).
        self.indexed: set[str] = set()

    # -- statements of the store's methods ---------------------------------------------

    def pending(self, cursor: psycopg.Cursor, space: VectorSpace, limit: int) -> list[EmbeddingTask]:
        rows = cursor.execute(
            f"""SELECT c.id, m.id, m.content, m.escaped
                FROM {self._s}.qv_messages m JOIN {self._s}.qv_conversations c ON c.pk = m.conversation_pk
                WHERE {LIVE} AND m.content <> '' AND NOT EXISTS (
                    SELECT 1 FROM {self._s}.qv_message_vectors v
                    WHERE v.space = %(space)s COLLATE "C" AND v.message_pk = m.pk)
                ORDER BY m.pk LIMIT %(limit)s""",
            {"space": space.key, "limit": limit, "now": now_key()},
        ).fetchall()
        return [
            EmbeddingTask(conversation, message, load_text(text, escaped, CONTENT) or "")
            for conversation, message, text, escaped in rows
        ]

    def store(self, cursor: psycopg.Cursor, space: VectorSpace, embedded: list[tuple[EmbeddingTask, bytes]]) -> int:
        """Write the vectors whose message still holds the task's text (in the caller's write transaction).

        The conversations are locked first (``FOR SHARE``, in the order saves lock
        them): a save changing one of their messages either committed before, and its
        new content is what the write below compares with, or waits for this
        transaction, and then deletes the vectors it makes stale.
        """
        latest: dict[tuple[str, str, str], bytes] = {}
        for task, blob in embedded:  # the same task twice: the last vector counts
            latest[task.conversation_id, task.message_id, task.text] = blob
        if not latest:
            return 0
        keys = sorted({id_key(conversation) for conversation, _, _ in latest})
        cursor.execute(
            f"SELECT pk FROM {self._s}.qv_conversations WHERE id_key = ANY(%s::bytea[]) ORDER BY id_key FOR SHARE",
            (keys,),
        ).fetchall()
        columns: list[list[Any]] = [[], [], [], [], []]
        for (conversation, message, text), blob in latest.items():
            content, bit = store_text(text, CONTENT)
            value = vector_text(blob, space.dimension) if self._ext else blob
            for column, item in zip(columns, (id_key(conversation), id_key(message), content, bit, value)):
                column.append(item)
        kind = "text" if self._ext else "bytea"
        embedding = f"t.embedding::{self._ext}.vector" if self._ext else "t.embedding"
        cursor.execute(
            f"""INSERT INTO {self._s}.qv_message_vectors AS v (space, message_pk, embedding)
                SELECT %(space)s, m.pk, {embedding}
                FROM unnest(%(c)s::bytea[], %(m)s::bytea[], %(t)s::text[], %(b)s::integer[], %(e)s::{kind}[])
                    AS t(conversation_key, message_key, content, bit, embedding)
                JOIN {self._s}.qv_conversations c ON c.id_key = t.conversation_key
                JOIN {self._s}.qv_messages m ON m.conversation_pk = c.pk AND m.id_key = t.message_key
                WHERE {LIVE} AND t.content <> '' AND m.content = t.content AND (m.escaped & 1) = t.bit
                ON CONFLICT (space, message_pk) DO UPDATE SET embedding = EXCLUDED.embedding""",
            {"space": space.key, "now": now_key(), **dict(zip("cmtbe", columns))},
        )
        return max(cursor.rowcount, 0)

    def counts(self, cursor: psycopg.Cursor, space: VectorSpace) -> tuple[int, int]:
        found = cursor.execute(
            f"""SELECT count(v.message_pk), count(*) - count(v.message_pk)
                FROM {self._s}.qv_messages m JOIN {self._s}.qv_conversations c ON c.pk = m.conversation_pk
                LEFT JOIN {self._s}.qv_message_vectors v ON v.space = %(space)s COLLATE "C" AND v.message_pk = m.pk
                WHERE {LIVE} AND m.content <> ''""",
            {"space": space.key, "now": now_key()},
        ).fetchone()
        assert found is not None
        return int(found[0]), int(found[1])

    def forget(self, cursor: psycopg.Cursor, space: VectorSpace | None) -> int:
        """Delete the vectors of ``space`` (None: all). Indexes stay: empty, they cost nothing."""
        if space is None:
            cursor.execute(f"DELETE FROM {self._s}.qv_message_vectors")
        else:
            cursor.execute(f'DELETE FROM {self._s}.qv_message_vectors WHERE space = %s COLLATE "C"', (space.key,))
        return max(cursor.rowcount, 0)

    # -- the HNSW index of a space -----------------------------------------------------------

    def index_name(self, space: VectorSpace) -> str:
        return "qv_message_vectors_hnsw_" + hashlib.sha256(space.key.encode("utf-8")).hexdigest()[:16]

    def index_statement(self, space: VectorSpace) -> str | None:
        """The statement creating the space's HNSW index, or None where there is none to make."""
        if not self._ext or space.dimension > HNSW_MAX_DIMENSION:
            return None
        return (
            f"CREATE INDEX IF NOT EXISTS {self.index_name(space)} ON {self._s}.qv_message_vectors"
            f" USING hnsw ((embedding::{self._ext}.vector({space.dimension})) {self._ext}.vector_ip_ops)"
            f" WHERE space = {literal(space.key)}"
        )

    # -- searches ---------------------------------------------------------------------------

    def _stored_vector(self) -> str:
        return f"{self._ext}.vector_send(v.embedding)" if self._ext else "v.embedding"

    def exact(
        self,
        cursor: psycopg.Cursor,
        space: VectorSpace,
        query: Sequence[float],
        where: str,
        params: dict[str, Any],
        key: str,
        only: list[int] | None = None,
    ) -> list[Candidate]:
        """The best message of every conversation passing ``where`` (and in ``only``), ranked by the shared rule."""
        restrict = "" if only is None else "AND c.pk = ANY(%(only)s::bigint[])"
        rows = cursor.execute(
            f"""SELECT c.pk, c.{key}, c.id, m.id, m.pk, {self._stored_vector()}
                FROM {self._s}.qv_message_vectors v JOIN {self._s}.qv_messages m ON m.pk = v.message_pk
                JOIN {self._s}.qv_conversations c ON c.pk = m.conversation_pk
                WHERE v.space = %(space)s COLLATE "C" AND m.content <> '' AND {where} {restrict}
                ORDER BY c.pk, m.position""",
            {**params, "space": space.key, "only": only},
        ).fetchall()
        if self._ext:
            rows = [(*row[:5], _from_send(bytes(row[5]), space.dimension)) for row in rows]
        return best_candidates([(*row[:5], bytes(row[5])) for row in rows], query, space.dimension)

    def nearest(
        self,
        cursor: psycopg.Cursor,
        space: VectorSpace,
        query: Sequence[float],
        where: str,
        params: dict[str, Any],
        key: str,
        wanted: int,
    ) -> list[Candidate]:
        """At least the first ``wanted`` conversations of the ranking, from the messages nearest ``query``.

        Fetches the ``fetch`` nearest messages passing the filter (ordered by ``<#>``),
        ranks their conversations exactly, and stops when the ``wanted``-th one scores
        above the lowest fetched score plus the float32 rounding margin of pgvector's
        arithmetic (a message not fetched scores no higher); else fetches four times more.
        """
        if wanted <= 0:
            return []
        packed = checked_vector(query, space)
        n = space.dimension
        query_norm = math.sqrt(math.fsum(value * value for value in unpack(packed, n)))
        vector = f"{self._ext}.vector({n})"
        # A constant, not a parameter: the planner must see that the space's partial index
        # covers the rows (psycopg reads ``%%`` of a statement with parameters as ``%``).
        space_condition = literal(space.key).replace("%", "%%")
        sql = f"""SELECT m.conversation_pk,
                    (v.embedding::{vector}) OPERATOR({self._ext}.<#>) %(query)s::{vector} AS distance,
                    {self._ext}.vector_norm(v.embedding)
                FROM {self._s}.qv_message_vectors v JOIN {self._s}.qv_messages m ON m.pk = v.message_pk
                JOIN {self._s}.qv_conversations c ON c.pk = m.conversation_pk
                WHERE v.space = {space_condition} AND m.content <> '' AND {where}
                ORDER BY distance LIMIT %(fetch)s"""
        fetch = max(FIRST_FETCH, FETCH_FACTOR * wanted)
        while fetch <= MAX_FETCH:
            settings = "SELECT set_config('hnsw.ef_search', %s, true)"
            if self._iterative:
                settings += ", set_config('hnsw.iterative_scan', 'relaxed_order', true)"
            cursor.execute(settings, (str(EF_SEARCH),)).fetchall()
            rows = cursor.execute(sql, {**params, "query": vector_text(packed, n), "fetch": fetch}).fetchall()
            candidates = self.exact(cursor, space, query, where, params, key, sorted({row[0] for row in rows}))
            if len(rows) < fetch:  # every message passing the filter (or all the index gave)
                return candidates
            lowest = -max(float(row[1]) for row in rows)
            largest = max(float(row[2]) for row in rows)
            margin = 2.0 * n * 2.0**-24 * query_norm * largest + 1e-12
            if len(candidates) >= wanted and candidates[wanted - 1][5] > lowest + margin:
                return candidates
            fetch *= FETCH_FACTOR
        return self.exact(cursor, space, query, where, params, key)

    def hits(
        self, cursor: psycopg.Cursor, page: list[Candidate], decode: Callable[[Any], Any], with_text: bool
    ) -> list[SearchHit]:
        """The page's SearchHits: its conversations (``decode`` makes their records of CONVERSATION_COLUMNS)
        and, with ``with_text``, the messages' text, in one statement each."""
        if not page:
            return []
        rows = {
            row[0]: row[1:]
            for row in cursor.execute(
                f"SELECT c.pk, {CONVERSATION_COLUMNS} FROM {self._s}.qv_conversations c WHERE c.pk = ANY(%s::bigint[])",
                ([p[0] for p in page],),
            ).fetchall()
        }
        texts: dict[int, str | None] = {}
        if with_text:
            found = cursor.execute(
                f"SELECT pk, content, escaped FROM {self._s}.qv_messages WHERE pk = ANY(%s::bigint[])",
                ([p[4] for p in page],),
            ).fetchall()
            texts = {pk: load_text(content, escaped, CONTENT) for pk, content, escaped in found}
        return [
            SearchHit(decode(rows[pk]), message_id, texts.get(message_pk), score)
            for pk, _, _, message_id, message_pk, score in page
        ]
