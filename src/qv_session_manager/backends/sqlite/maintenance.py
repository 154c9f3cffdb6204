"""Checks and repairs of an SQLite store, for tools such as ``qv-sessions doctor``.

These functions work on an open :class:`SQLiteStore` through its own connection
and transactions, so driver errors (sqlite3, or SQLCipher's for a keyed store) come
out as this library's StorageError subclasses, and an in-memory or encrypted store
can be checked too.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ...rules import now_key
from ...timeutil import time_key
from . import schema
from .errors import translate
from .rows import LIVE, index_body, parse_timestamp
from .store import SQLiteStore

#: The search indexes and the SQL giving (rowid, text) of what each must hold: the rows
#: up to ``search_state.indexed_upto`` (newer rows wait for the index, see store.FLUSH_AT),
#: and the entries of deleted rows that wait for the next purge (``index_removals``).
INDEXES: dict[str, str] = {
    "message_index": (
        "SELECT pk, content FROM messages WHERE pk <= (SELECT indexed_upto FROM search_state WHERE kind = 'messages')"
        " UNION ALL SELECT key, coalesce(text, body) FROM index_removals WHERE kind = 'messages'"
    ),
    "title_index": (
        "SELECT pk, title FROM conversations WHERE pk <= (SELECT indexed_upto FROM search_state WHERE kind = 'titles')"
        " UNION ALL SELECT key, coalesce(text, body) FROM index_removals WHERE kind = 'titles'"
    ),
}
#: Messages whose conversation is gone: left by a program that deleted conversations
#: without cascading (qv-session-manager 0.3.0, or any tool with foreign keys off) before
#: schema 3 made deletes cascade in the file itself. Upgrading removes them; so does doctor.
_ORPHANS = "FROM messages WHERE conversation_pk NOT IN (SELECT pk FROM conversations)"


@dataclass(frozen=True)
class Counts:
    """Sizes of a store; ``oldest``/``newest`` are ``updated_at`` as stored (None when empty)."""

    conversations: int
    messages: int
    oldest: str | None
    newest: str | None


def file_of_url(url: str) -> str | None:
    """The database file an ``sqlite://`` URL names, or None (another scheme, or in memory).

    Mirrors :func:`qv_session_manager.backends.sqlite.open_url`: three slashes then a
    relative path, four for an absolute one. Does not check that the file exists;
    None too for a URL with a host, which opening rejects.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite" or parts.netloc:
        return None  # another backend, or a malformed URL that opening will reject
    path = unquote(parts.path[1:])
    return path if path and path != ":memory:" else None


def schema_version(store: SQLiteStore) -> int:
    """The file's ``PRAGMA user_version`` (the schema version; :data:`schema.LATEST` when current)."""
    with store._transaction("reading the schema version", write=False) as db:
        return schema.user_version(db)


def integrity_problems(store: SQLiteStore) -> list[str]:
    """What ``PRAGMA integrity_check`` reports; [] when the file is sound."""
    with store._transaction("checking the database's integrity", write=False) as db:
        lines = [str(row[0]) for row in db.execute("PRAGMA integrity_check").fetchall()]
    return [] if lines == ["ok"] else lines


def index_problems(store: SQLiteStore) -> list[str]:
    """Inconsistencies of the two search indexes; [] when both are sound.

    Runs FTS5's own ``integrity-check`` on each index, then compares each index,
    token by token and row by row, with an index built afresh from the stored text
    in a temporary table (the indexes are contentless, so FTS5 alone cannot see an
    entry that is missing, stale or left over). Changes nothing in the file. On a
    read-only store FTS5's own check is left out (SQLite runs it as a write); the
    comparison still finds every missing, stale or left-over entry.
    """
    problems: list[str] = []
    with store._transaction("checking the search indexes", write=not store.read_only) as db:
        for table, source in INDEXES.items():
            try:
                if not store.read_only:
                    db.execute(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")
            except store._driver.DatabaseError as exc:
                problems.append(f"{table}: FTS5 integrity-check failed: {exc}")
                continue
            differences = _compare_with_fresh(db, table, source)
            if differences:
                problems.append(
                    f"{table}: {differences} token entries differ from the stored text (run --rebuild-index)"
                )
    return problems


def _compare_with_fresh(db: sqlite3.Connection, table: str, source: str) -> int:
    """How many (token, row, position) entries differ between ``table`` and a fresh build."""
    db.execute("CREATE VIRTUAL TABLE temp.qv_fresh USING fts5 (body, tokenize = 'ascii', content = '')")
    try:
        db.execute("CREATE VIRTUAL TABLE temp.qv_fresh_terms USING fts5vocab (temp, qv_fresh, instance)")
        db.execute(f"CREATE VIRTUAL TABLE temp.qv_stored_terms USING fts5vocab (main, {table}, instance)")
        for pk, text in db.execute(source).fetchall():
            body = index_body(text)
            if body:
                db.execute("INSERT INTO temp.qv_fresh (rowid, body) VALUES (?, ?)", (pk, body))
        columns = "term, doc, offset"
        differing = 0
        for one, other in (("qv_stored_terms", "qv_fresh_terms"), ("qv_fresh_terms", "qv_stored_terms")):
            differing += int(
                db.execute(
                    f"SELECT count(*) FROM (SELECT {columns} FROM temp.{one} EXCEPT SELECT {columns} FROM temp.{other})"
                ).fetchone()[0]
            )
        return differing
    finally:
        for name in ("qv_stored_terms", "qv_fresh_terms", "qv_fresh"):
            db.execute(f"DROP TABLE IF EXISTS temp.{name}")


def orphaned_messages(store: SQLiteStore) -> int:
    """How many stored messages belong to no conversation (0 in a sound file)."""
    with store._transaction("looking for messages of deleted conversations", write=False) as db:
        return int(db.execute(f"SELECT count(*) {_ORPHANS}").fetchone()[0])


def remove_orphaned_messages(store: SQLiteStore) -> int:
    """Delete messages that belong to no conversation, with their search entries; returns how many.

    The deleted text leaves the file at the purge that follows.
    """
    with store._transaction("removing messages of deleted conversations", write=True) as db:
        removed = int(db.execute(f"DELETE {_ORPHANS}").rowcount)
    if removed:
        store.purge()
    return removed


@dataclass(frozen=True)
class Leftovers:
    """Messages of a deleted conversation that a later conversation took over, before schema 3.

    Before schema 3 a key freed by a delete that did not cascade could be given to the
    next new conversation, which then showed the deleted conversation's messages. Such
    messages are recognised by two signs together: the conversation's positions repeat
    (its own messages were numbered from 0 again), and they are older than the
    conversation (keys below its first message at position 0, created before it).
    """

    conversation_id: str
    message_keys: tuple[int, ...]


def adopted_leftovers(store: SQLiteStore) -> list[Leftovers]:
    """Every conversation holding messages of a deleted one (see :class:`Leftovers`); [] in a sound file."""
    found = []
    with store._transaction("looking for messages of deleted conversations", write=False) as db:
        suspects = db.execute(
            """SELECT c.pk, c.id, c.created_key FROM conversations c
               WHERE EXISTS (SELECT 1 FROM messages m WHERE m.conversation_pk = c.pk
                             GROUP BY m.position HAVING count(*) > 1)"""
        ).fetchall()
        for pk, conversation_id, created_key in suspects:
            rows = db.execute(
                "SELECT pk, position, created_at FROM messages WHERE conversation_pk = ? ORDER BY pk", (pk,)
            ).fetchall()
            first_own = max(key for key, position, _ in rows if position == 0)
            older = tuple(
                key
                for key, _, created_at in rows
                if key < first_own and time_key(parse_timestamp(created_at)) < created_key
            )
            if older:
                found.append(Leftovers(conversation_id, older))
    return found


def remove_adopted_leftovers(store: SQLiteStore, leftovers: list[Leftovers]) -> int:
    """Delete the messages :func:`adopted_leftovers` found, with their search entries, then purge."""
    keys = [key for item in leftovers for key in item.message_keys]
    with store._transaction("removing messages of deleted conversations", write=True) as db:
        db.executemany("DELETE FROM messages WHERE pk = ?", [(key,) for key in keys])
    if keys:
        store.purge()
    return len(keys)


def rewrite_file(store: SQLiteStore) -> None:
    """Rewrite the database file (VACUUM), so no freed page keeps text of deleted rows.

    This library zeroes the pages its own deletes free (``secure_delete``); a program
    that deleted rows without that setting (qv-session-manager 0.3.0, the sqlite3
    shell) leaves their text on free pages until the file is rewritten. Takes time and
    temporary space in proportion to the file.
    """
    with store._lock:
        store._check_open()
        try:
            store._db.execute("VACUUM")
        except store._driver.Error as exc:
            raise translate(exc, f"rewriting {store.path}") from exc
    store._truncate_wal()


def rebuild_indexes(store: SQLiteStore) -> None:
    """Rebuild both search indexes from the stored text in one transaction, then purge.

    Afterwards :func:`index_problems` finds nothing and the old index segments are
    gone from the file.
    """
    with store._transaction("rebuilding the search indexes", write=True) as db:
        schema.fill_index(db)
        db.execute("INSERT OR REPLACE INTO store_info (key, value) VALUES ('purge_pending', '1')")
    store.purge()


def counts(store: SQLiteStore) -> Counts:
    """Numbers of conversations and messages and the oldest/newest update time, in SQL.

    Expired conversations (missing to every read) and their messages are not counted.
    """
    live = {"now": now_key()}
    with store._transaction("counting conversations", write=False) as db:
        conversations = int(db.execute(f"SELECT count(*) FROM conversations c WHERE {LIVE}", live).fetchone()[0])
        messages = int(
            db.execute(
                f"SELECT count(*) FROM messages m JOIN conversations c ON c.pk = m.conversation_pk WHERE {LIVE}", live
            ).fetchone()[0]
        )
        edges = [
            db.execute(
                f"SELECT updated_at FROM conversations c WHERE {LIVE} ORDER BY updated_key {way}, id {way} LIMIT 1",
                live,
            ).fetchone()
            for way in ("ASC", "DESC")
        ]
    oldest, newest = (row[0] if row else None for row in edges)
    return Counts(conversations, messages, oldest, newest)


def vector_counts(store: SQLiteStore) -> dict[str, int]:
    """Messages of live conversations with a vector, by vector space key (``embedder/model/dimension``).

    One grouped count over the vectors; {} for a file without vectors (or from before schema 6).
    """
    live = {"now": now_key()}
    with store._transaction("counting vectors", write=False) as db:
        if (
            db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'message_vectors'").fetchone()
            is None
        ):
            return {}
        rows = db.execute(
            "SELECT v.space, count(*) FROM message_vectors v JOIN messages m ON m.pk = v.message_pk "
            f"JOIN conversations c ON c.pk = m.conversation_pk WHERE {LIVE} GROUP BY v.space ORDER BY v.space",
            live,
        ).fetchall()
    return {str(space): int(count) for space, count in rows}


def file_sizes(store: SQLiteStore) -> dict[str, int]:
    """Bytes on disk of the database file and its WAL (those that exist); {} in memory."""
    if store.path == ":memory:":
        return {}
    path = os.path.abspath(store.path)
    sizes = {}
    for name in (path, path + "-wal"):
        try:
            sizes[name] = os.path.getsize(name)
        except FileNotFoundError:
            pass
    return sizes
