"""The two bare-sqlite3 floors: the least work that stores, finds and loads the same data.

Both use one connection, WAL with ``synchronous=FULL`` (every acknowledged save is
on disk, as in this project's default), one transaction per save with
``executemany``, an FTS5 index with external content on message content (no title
index), and build every result the way the seed API hands it out: dicts with the
JSON metadata decoded.

- :class:`FloorStore` with ``batched=False`` ("floor inline"): triggers keep the
  index up to date inside each save's transaction.
- ``batched=True`` ("floor batched"): saves write no index. The messages above a
  watermark (``fts_state.indexed_upto``, committed with the index rows it covers,
  so a crash never loses track of the unindexed tail) are indexed in one
  transaction once :data:`PENDING_LIMIT` are pending, and before every search, so
  each search returns exactly the hits of the inline floor.

``save_conversation`` only inserts the messages it is given: saving just the newest
message is a plain append, the floor for persisting one new message.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

#: Unindexed messages that make the batched floor index its tail after a save.
PENDING_LIMIT = 256

TABLES = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, title TEXT, model_name TEXT,
    created_at TEXT, updated_at TEXT, metadata TEXT
);
CREATE INDEX IF NOT EXISTS conversations_by_updated ON conversations (updated_at, id);
CREATE TABLE IF NOT EXISTS messages (
    pk INTEGER PRIMARY KEY, id TEXT NOT NULL, conversation_id TEXT NOT NULL,
    role TEXT, content TEXT, created_at TEXT, metadata TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5 (
    content, content = 'messages', content_rowid = 'pk'
);
"""

INLINE_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS messages_to_fts AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.pk, new.content);
END;
CREATE TRIGGER IF NOT EXISTS messages_from_fts AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.pk, old.content);
END;
"""

# Only rows at or below the watermark are in the index: deleting the others from an
# external-content FTS5 table would corrupt it.
BATCHED_TRIGGERS = """
CREATE TABLE IF NOT EXISTS fts_state (only INTEGER PRIMARY KEY CHECK (only = 1), indexed_upto INTEGER NOT NULL);
INSERT OR IGNORE INTO fts_state (only, indexed_upto) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS messages_from_fts AFTER DELETE ON messages
WHEN old.pk <= (SELECT indexed_upto FROM fts_state) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.pk, old.content);
END;
"""

CONVERSATION_COLUMNS = "id, title, model_name, created_at, updated_at, metadata"
UPSERT_CONVERSATION = f"""INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET title = excluded.title, updated_at = excluded.updated_at"""
INSERT_MESSAGE = """INSERT INTO messages (id, conversation_id, role, content, created_at, metadata)
    VALUES (?, ?, ?, ?, ?, ?)"""


def batches(iterable: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` items (the last one may be shorter)."""
    batch: list[Any] = []
    for item in iterable:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def conversation_row(conversation: Any) -> tuple:
    """The conversations row of an SDK Conversation."""
    return (
        str(conversation.id),
        conversation.title,
        conversation.model_name,
        conversation.created_at.isoformat(),
        conversation.updated_at.isoformat(),
        json.dumps(conversation.metadata),
    )


def message_rows(conversation_id: str, messages: Iterable[Any]) -> list[tuple]:
    """The messages rows of SDK Messages."""
    return [
        (str(m.id), conversation_id, m.role.value, m.content, m.created_at.isoformat(), json.dumps(m.metadata))
        for m in messages
    ]


def conversation_dict(row: tuple) -> dict:
    """A conversations row as the seed API returns it: a dict, metadata decoded."""
    return {
        "id": row[0],
        "title": row[1],
        "model_name": row[2],
        "created_at": row[3],
        "updated_at": row[4],
        "metadata": json.loads(row[5]) if row[5] else {},
    }


def message_dict(row: tuple) -> dict:
    """A messages row (id, role, content, created_at, metadata) as a dict, metadata decoded."""
    return {
        "id": row[0],
        "role": row[1],
        "content": row[2],
        "created_at": row[3],
        "metadata": json.loads(row[4]) if row[4] else {},
    }


class FloorStore:
    """Bare sqlite3 with the seed API's method names; see the module docstring."""

    def __init__(self, db_path: str, batched: bool, driver: str = "sqlite3") -> None:
        self.batched = batched
        module: Any = sqlite3
        if driver == "pysqlite3":  # the same SQLite as ours, for run.py --sqlite-driver pysqlite3
            import pysqlite3.dbapi2 as module  # type: ignore[import-not-found,no-redef]
        self.db = module.connect(db_path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.executescript(TABLES + (BATCHED_TRIGGERS if batched else INLINE_TRIGGERS))
        self.pending = self._count_pending() if batched else 0

    # -- the batched index ---------------------------------------------------------

    def _count_pending(self) -> int:
        (count,) = self.db.execute(
            "SELECT count(*) FROM messages WHERE pk > (SELECT indexed_upto FROM fts_state)"
        ).fetchone()
        return int(count)

    def index_tail(self) -> None:
        """Index every message above the watermark and move it, in one transaction."""
        if not self.batched or not self.pending:
            return
        self.db.execute("BEGIN IMMEDIATE")
        (upto,) = self.db.execute("SELECT indexed_upto FROM fts_state").fetchone()
        self.db.execute(
            "INSERT INTO messages_fts (rowid, content) SELECT pk, content FROM messages WHERE pk > ? ORDER BY pk",
            (upto,),
        )
        self.db.execute("UPDATE fts_state SET indexed_upto = (SELECT coalesce(max(pk), 0) FROM messages)")
        self.db.execute("COMMIT")
        self.pending = 0

    def _saved(self, messages: int) -> None:
        """Count newly stored messages; index the tail once enough are pending."""
        if self.batched:
            self.pending += messages
            if self.pending >= PENDING_LIMIT:
                self.index_tail()

    # -- writes ------------------------------------------------------------------------

    def save_conversation(self, conversation: Any, messages: list[Any]) -> None:
        """Upsert the conversation row and insert ``messages``, in one transaction."""
        self.db.execute("BEGIN")
        self.db.execute(UPSERT_CONVERSATION, conversation_row(conversation))
        self.db.executemany(INSERT_MESSAGE, message_rows(str(conversation.id), messages))
        self.db.execute("COMMIT")
        self._saved(len(messages))

    def save_many(self, conversations: Iterable[Any], batch_size: int) -> int:
        """Each batch of conversations with all their messages: one executemany each, one transaction."""
        saved = 0
        for batch in batches(conversations, batch_size):
            rows = [row for c in batch for row in message_rows(str(c.id), c.messages)]
            self.db.execute("BEGIN")
            self.db.executemany(UPSERT_CONVERSATION, map(conversation_row, batch))
            self.db.executemany(INSERT_MESSAGE, rows)
            self.db.execute("COMMIT")
            self._saved(len(rows))
            saved += len(batch)
        return saved

    def delete_conversation(self, conversation_id: str) -> bool:
        """The conversation, its messages and (by trigger) their index entries, in one transaction."""
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
        deleted = self.db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount
        self.db.execute("COMMIT")
        if self.batched:
            self.pending = self._count_pending()
        return deleted > 0

    # -- reads ---------------------------------------------------------------------------

    def load_conversation(self, conversation_id: str) -> dict | None:
        """The conversation as a dict with its messages as dicts, in stored order."""
        row = self.db.execute(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            return None
        conversation = conversation_dict(row)
        conversation["messages"] = [
            message_dict(m)
            for m in self.db.execute(
                "SELECT id, role, content, created_at, metadata FROM messages WHERE conversation_id = ? ORDER BY pk",
                (conversation_id,),
            )
        ]
        return conversation

    def search_conversations(
        self, word: str, limit: int = -1, order: str = "recent", snippets: bool = False
    ) -> list[dict]:
        """Conversations with a message containing ``word``, newest first, as dicts.

        With ``order="relevance"``: the ``limit`` best conversations by the bm25 rank of
        their best message, each with a snippet of that message (``snippets`` is implied).
        """
        self.index_tail()
        match = '"' + word.replace('"', '""') + '"'
        if order == "relevance":
            return self._search_ranked(match, limit)
        rows = self.db.execute(
            f"""SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id IN (
                    SELECT m.conversation_id FROM messages_fts JOIN messages m ON m.pk = messages_fts.rowid
                    WHERE messages_fts MATCH ?)
                ORDER BY updated_at DESC, id DESC LIMIT ?""",
            (match, limit),
        )
        return [conversation_dict(row) for row in rows]

    def _search_ranked(self, match: str, limit: int) -> list[dict]:
        # min(rank) picks the best message of each conversation (SQLite's bare-column rule).
        rows = self.db.execute(
            f"""WITH best (conversation_id, pk, rank) AS (
                   SELECT m.conversation_id, m.pk, min(messages_fts.rank) FROM messages_fts
                   JOIN messages m ON m.pk = messages_fts.rowid WHERE messages_fts MATCH :match
                   GROUP BY m.conversation_id ORDER BY 3 LIMIT :limit)
               SELECT {", ".join("c." + c for c in CONVERSATION_COLUMNS.split(", "))},
                      snippet(messages_fts, 0, '**', '**', '...', 16)
               FROM best JOIN messages_fts ON messages_fts.rowid = best.pk
               JOIN conversations c ON c.id = best.conversation_id
               WHERE messages_fts MATCH :match ORDER BY best.rank""",
            {"match": match, "limit": limit},
        )
        return [{**conversation_dict(row), "snippet": row[6]} for row in rows]

    def search_by_time(self, start: str, end: str) -> list[dict]:
        """Conversations updated between two ISO timestamps (inclusive), via the index."""
        rows = self.db.execute(
            f"""SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE updated_at BETWEEN ? AND ?
                ORDER BY updated_at DESC, id DESC""",
            (start, end),
        )
        return [conversation_dict(row) for row in rows]

    def list_conversations(self, limit: int = -1, offset: int = 0, after: str | None = None) -> list[dict]:
        """Newest first; ``after`` is the id of the last row of the previous page (keyset paging)."""
        where = "WHERE (updated_at, id) < (SELECT updated_at, id FROM conversations WHERE id = ?)" if after else ""
        rows = self.db.execute(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations {where}"
            " ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?",
            (after, limit, offset) if after else (limit, offset),
        )
        return [conversation_dict(row) for row in rows]

    def close(self) -> None:
        """Close the connection (the last one checkpoints the WAL)."""
        self.db.close()
