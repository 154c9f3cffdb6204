"""The SQLite store's message vectors (:class:`~qv_session_manager.protocol.VectorStorage`).

Vectors are float32 blobs in ``message_vectors`` (schema 6), keyed by space and
message; triggers drop them with their message or its old content. A search reads the
space's vectors of the conversations that pass the filter and ranks them in Python by
the shared rule of :mod:`qv_session_manager.vector_records` (numpy when installed).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ...records import SearchHit
from ...rules import now_key
from ...vector_records import Candidate, EmbeddingTask, VectorSpace, best_candidates
from .rows import LIVE

_PENDING = f"""
    SELECT m.pk, c.id, m.id, m.content FROM messages m JOIN conversations c ON c.pk = m.conversation_pk
    WHERE m.pk >= :from AND {LIVE} AND m.content <> ''
        AND NOT EXISTS (SELECT 1 FROM message_vectors v WHERE v.space = :space AND v.message_pk = m.pk)
    ORDER BY m.pk LIMIT :limit"""
_EDITS = "SELECT value FROM store_info WHERE key = 'vectors_dropped'"
_NEXT_KEY = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0) + 1"
_COUNTS = f"""
    SELECT count(v.message_pk), count(*) - count(v.message_pk)
    FROM messages m JOIN conversations c ON c.pk = m.conversation_pk
    LEFT JOIN message_vectors v ON v.space = :space AND v.message_pk = m.pk
    WHERE {LIVE} AND m.content <> ''"""
_TARGET = f"""
    SELECT m.pk FROM messages m JOIN conversations c ON c.pk = m.conversation_pk
    WHERE c.id = :conversation AND m.id = :message AND m.content = :text AND {LIVE}"""


class PendingFrom:
    """Where each space's pending messages start, so a batch does not rescan the embedded ones.

    Below the key kept for a space every message has a vector or is not pending. New
    messages get higher keys (one writer at a time, keys never reused), so only an
    edit of an old message's content or forgetting vectors, by any process (both
    counted in ``store_info.vectors_dropped``), moves the start back: then the scan
    starts from the first message again.
    """

    def __init__(self) -> None:
        self._starts: dict[str, tuple[str, int]] = {}

    def pending(self, db: sqlite3.Connection, space: VectorSpace, limit: int) -> list[EmbeddingTask]:
        (edits,) = db.execute(_EDITS).fetchone()
        held = self._starts.get(space.key)
        start = held[1] if held is not None and held[0] == edits else 0
        rows = db.execute(_PENDING, {"space": space.key, "limit": limit, "now": now_key(), "from": start}).fetchall()
        self._starts[space.key] = (edits, rows[0][0] if rows else int(db.execute(_NEXT_KEY).fetchone()[0]))
        return [EmbeddingTask(conversation, message, text) for _, conversation, message, text in rows]


def store(db: sqlite3.Connection, space: VectorSpace, embedded: list[tuple[EmbeddingTask, bytes]]) -> int:
    """Write the vectors whose message still holds the task's text (in the caller's write transaction)."""
    stored = 0
    now = now_key()
    for task, blob in embedded:
        found = db.execute(
            _TARGET, {"conversation": task.conversation_id, "message": task.message_id, "text": task.text, "now": now}
        ).fetchone()
        if found is not None:
            db.execute("INSERT OR REPLACE INTO message_vectors VALUES (?, ?, ?)", (space.key, found[0], blob))
            stored += 1
    return stored


def counts(db: sqlite3.Connection, space: VectorSpace) -> tuple[int, int]:
    embedded, waiting = db.execute(_COUNTS, {"space": space.key, "now": now_key()}).fetchone()
    return int(embedded), int(waiting)


def forget(db: sqlite3.Connection, space: VectorSpace | None) -> int:
    if space is None:
        removed = int(db.execute("DELETE FROM message_vectors").rowcount)
    else:
        removed = int(db.execute("DELETE FROM message_vectors WHERE space = ?", (space.key,)).rowcount)
    db.execute("UPDATE store_info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'vectors_dropped'")
    return removed


def candidates(
    db: sqlite3.Connection, space: VectorSpace, query: Sequence[float], where: str, params: dict[str, Any], key: str
) -> list[Candidate]:
    """The best message of every conversation passing ``where``, ranked by the shared rule (no numpy needed)."""
    rows = db.execute(
        f"""SELECT c.pk, c.{key}, c.id, m.id, m.pk, v.vector
            FROM message_vectors v JOIN messages m ON m.pk = v.message_pk
            JOIN conversations c ON c.pk = m.conversation_pk
            WHERE v.space = :space AND m.content <> '' AND {where}
            ORDER BY c.pk, m.position, m.pk""",
        {**params, "space": space.key},
    ).fetchall()
    return best_candidates(rows, query, space.dimension)


def hits(db: sqlite3.Connection, page: list[Candidate], decode: Any, columns: str, with_text: bool) -> list[SearchHit]:
    """The page's SearchHits, its conversations (and with ``with_text`` the messages' text) read in one statement each."""
    if not page:
        return []
    marks = ",".join("?" * len(page))
    rows = {
        row[0]: row[1:]
        for row in db.execute(f"SELECT pk, {columns} FROM conversations WHERE pk IN ({marks})", [p[0] for p in page])
    }
    texts: dict[int, str] = {}
    if with_text:
        found = db.execute(f"SELECT pk, content FROM messages WHERE pk IN ({marks})", [p[4] for p in page])
        texts = dict(found.fetchall())
    return [
        SearchHit(decode(rows[pk]), message_id, texts.get(message_pk), score)
        for pk, _, _, message_id, message_pk, score in page
    ]
