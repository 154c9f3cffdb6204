"""The SQLite schema and its migrations.

``PRAGMA user_version`` holds the schema version. Each migration runs in its own
``BEGIN IMMEDIATE`` transaction together with the version bump, so concurrent
openers apply it once and a crash leaves the previous version intact.
Version 1 is reached from an empty file or from either seed layout
(qv-session-manager <= 0.3.0, with or without ``model_name``).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ...errors import SchemaVersionError
from ...records import EXPIRES_AT, stored_expiry_key
from ...text import TOKENIZER_VERSION
from ...timeutil import time_key
from .rows import body_column, digest, index_body, parse_timestamp

log = logging.getLogger("qv_session_manager")

SCHEMA_V1 = """
CREATE TABLE conversations (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT,
    model_name TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_key TEXT NOT NULL,
    updated_key TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    next_position INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX conversations_by_updated ON conversations (updated_key, id);
CREATE INDEX conversations_by_created ON conversations (created_key, id);
CREATE TABLE messages (
    pk INTEGER PRIMARY KEY,
    conversation_pk INTEGER NOT NULL REFERENCES conversations (pk) ON DELETE CASCADE,
    id TEXT NOT NULL,
    position INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    images TEXT,
    tool_calls TEXT,
    tool_call_id TEXT,
    digest BLOB NOT NULL,
    UNIQUE (conversation_pk, id)
);
CREATE INDEX messages_by_position ON messages (conversation_pk, position);
-- Contentless indexes of text as rows.index_body gives it: the shared tokens, which
-- the ascii tokenizer finds unchanged (see qv_session_manager.text).
CREATE VIRTUAL TABLE message_index USING fts5 (body, tokenize = 'ascii', content = '');
CREATE VIRTUAL TABLE title_index USING fts5 (body, tokenize = 'ascii', content = '');
CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _statements(script: str) -> list[str]:
    """The SQL statements of ``script``, trigger bodies kept whole (executescript would commit)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return [statement for statement in statements if statement.rstrip(";").strip()]


def _table_columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def _create_v1(db: sqlite3.Connection) -> None:
    for statement in _statements(SCHEMA_V1):
        db.execute(statement)
    db.execute("INSERT INTO store_info (key, value) VALUES ('tokenizer_version', ?)", (str(TOKENIZER_VERSION),))


def _object_or_empty(column: str) -> str:
    """SQL for a metadata column: its JSON object, or '{}' for NULL, 'null' or anything else.

    0.3.0 wrote ``json.dumps(metadata)`` whatever metadata was, so ``None`` became 'null'.
    """
    return f"CASE WHEN json_valid({column}) AND json_type({column}) = 'object' THEN {column} ELSE '{{}}' END"


def _upgrade_seed(db: sqlite3.Connection) -> None:
    """Move a seed (<= 0.3.0) database into schema 1, keeping every reachable row.

    Message order comes from created_at, then rowid (the seed's own order). Messages
    whose conversation was deleted (the seed never enabled foreign keys) are left
    behind, as the seed's delete intended; their number is logged.
    """
    conversation_columns = _table_columns(db, "conversations")
    message_columns = _table_columns(db, "messages")
    expected = {"id", "title", "created_at", "updated_at", "metadata"}
    if not expected <= set(conversation_columns) or not {"id", "conversation_id", "role", "content"} <= set(
        message_columns
    ):
        raise SchemaVersionError(
            "this SQLite file has a 'conversations' table that is neither the seed layout "
            "nor a qv-session-manager schema; refusing to change it"
        )
    model_name = "coalesce(model_name, 'llama3')" if "model_name" in conversation_columns else "'llama3'"
    db.execute("ALTER TABLE conversations RENAME TO seed_conversations")
    db.execute("ALTER TABLE messages RENAME TO seed_messages")
    _create_v1(db)
    db.create_function("qv_time_key", 1, lambda text: time_key(parse_timestamp(text)), deterministic=True)
    db.create_function("qv_digest", 7, digest, deterministic=True)
    db.execute(
        f"""INSERT INTO conversations (id, title, model_name, created_at, updated_at,
                created_key, updated_key, metadata)
            SELECT id, title, {model_name}, created_at, updated_at,
                qv_time_key(created_at), qv_time_key(updated_at), {_object_or_empty("metadata")}
            FROM seed_conversations"""
    )
    db.execute(
        f"""INSERT INTO messages (conversation_pk, id, position, role, content, created_at,
                metadata, digest)
            SELECT c.pk, m.id,
                row_number() OVER (PARTITION BY c.pk ORDER BY m.created_at, m.rowid) - 1,
                m.role, coalesce(m.content, ''), m.created_at, {_object_or_empty("m.metadata")},
                qv_digest(m.role, coalesce(m.content, ''), m.created_at,
                          {_object_or_empty("m.metadata")}, NULL, NULL, NULL)
            FROM seed_messages m JOIN conversations c ON c.id = m.conversation_id"""
    )
    db.execute(
        """UPDATE conversations SET next_position =
            (SELECT count(*) FROM messages WHERE conversation_pk = conversations.pk)"""
    )
    orphans = db.execute(
        "SELECT count(*) FROM seed_messages WHERE conversation_id NOT IN (SELECT id FROM conversations)"
    ).fetchone()[0]
    db.execute("DROP TABLE seed_messages")
    db.execute("DROP TABLE seed_conversations")
    _fill_v1(db)
    log.info(
        "upgraded a qv-session-manager 0.x database to schema 1 (%d messages of deleted conversations dropped)",
        orphans,
    )


def _fill_v1(db: sqlite3.Connection) -> None:
    """Build both search indexes of a schema-1 database (the seed upgrade) from the stored text."""
    for pk, content in db.execute("SELECT pk, content FROM messages").fetchall():
        body = index_body(content)
        if body:
            db.execute("INSERT INTO message_index (rowid, body) VALUES (?, ?)", (pk, body))
    for pk, title in db.execute("SELECT pk, title FROM conversations").fetchall():
        body = index_body(title)
        if body:
            db.execute("INSERT INTO title_index (rowid, body) VALUES (?, ?)", (pk, body))


def fill_index(db: sqlite3.Connection) -> None:
    """(Re)build both search indexes, and the index bodies beside the text, from the stored text.

    Afterwards every row is indexed (``search_state`` points at the newest keys).
    """
    # Mark every row unindexed first, so the triggers leave the index alone while the
    # bodies are rewritten.
    db.execute("UPDATE search_state SET indexed_upto = 0")
    db.create_function("qv_body_column", 1, body_column, deterministic=True)
    db.execute("UPDATE messages SET index_body = qv_body_column(content)")
    db.execute("UPDATE conversations SET title_body = qv_body_column(title)")
    db.execute("INSERT INTO message_index (message_index) VALUES ('delete-all')")
    db.execute("INSERT INTO title_index (title_index) VALUES ('delete-all')")
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'index_removals'").fetchone() is not None:
        db.execute("DELETE FROM index_removals")  # schema 5: nothing left to remove from an empty index
    db.execute("INSERT OR REPLACE INTO search_state (kind, indexed_upto) VALUES ('messages', 0), ('titles', 0)")
    flush_index(db)
    db.execute(
        "INSERT OR REPLACE INTO store_info (key, value) VALUES ('tokenizer_version', ?)",
        (str(TOKENIZER_VERSION),),
    )


#: kind -> (its search index, the SQL giving (key, index body) of the rows above a key, in key order).
PENDING = {
    "messages": ("message_index", "SELECT pk, coalesce(index_body, content) FROM messages WHERE pk > ? ORDER BY pk"),
    "titles": ("title_index", "SELECT pk, coalesce(title_body, title) FROM conversations WHERE pk > ? ORDER BY pk"),
}


def indexed_upto(db: sqlite3.Connection) -> dict[str, int]:
    """kind ('messages', 'titles') -> the key up to which rows are in the search index."""
    return {kind: int(upto) for kind, upto in db.execute("SELECT kind, indexed_upto FROM search_state")}


def flush_index(db: sqlite3.Connection) -> int:
    """Put every row not yet in the search indexes into them (in the caller's write transaction).

    Returns how many rows were indexed. New rows get keys above every key before them
    (AUTOINCREMENT), so "indexed" is one number per index, moved up here.
    """
    done = 0
    for kind, upto in indexed_upto(db).items():
        table, pending = PENDING[kind]
        rows = db.execute(pending, (upto,)).fetchall()
        if not rows:
            continue
        db.executemany(f"INSERT INTO {table} (rowid, body) VALUES (?, ?)", [row for row in rows if row[1]])
        db.execute("UPDATE search_state SET indexed_upto = ? WHERE kind = ?", (rows[-1][0], kind))
        done += len(rows)
    return done


def _migration_1(db: sqlite3.Connection) -> None:
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "conversations" in tables or "messages" in tables:
        _upgrade_seed(db)
    else:
        _create_v1(db)


def _migration_2(db: sqlite3.Connection) -> None:
    """Expiry: a column holding the time key of ``metadata["expires_at"]``, NULL when there is none.

    Filled from the metadata already stored; a value that does not parse stays NULL
    (the conversation never expires). The partial index serves ``purge_expired``;
    reads filter on the column in rows they reach through other indexes.
    """
    db.execute("ALTER TABLE conversations ADD COLUMN expires_key TEXT")
    db.execute("CREATE INDEX conversations_by_expiry ON conversations (expires_key) WHERE expires_key IS NOT NULL")
    db.create_function("qv_expiry_key", 1, lambda value: stored_expiry_key({EXPIRES_AT: value}), deterministic=True)
    db.execute(
        f"""UPDATE conversations SET expires_key = qv_expiry_key(json_extract(metadata, '$.{EXPIRES_AT}'))
            WHERE json_valid(metadata) AND json_type(metadata, '$.{EXPIRES_AT}') = 'text'"""
    )


#: Schema 3's tables. Keys are AUTOINCREMENT, so a key is never given out twice: a row
#: deleted by any tool can never lend its key, or the search entries filed under it, to
#: a later conversation. ``title_body`` / ``index_body`` hold what the search index
#: holds for the title / content when that differs from the text itself (NULL: the text).
#: ``revision`` counts the writes of this library to a conversation (see store.save_revisioned).
CONVERSATIONS_V3 = """
CREATE TABLE conversations_v3 (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    title TEXT,
    model_name TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_key TEXT NOT NULL,
    updated_key TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    next_position INTEGER NOT NULL DEFAULT 0,
    expires_key TEXT,
    title_body TEXT,
    revision INTEGER NOT NULL DEFAULT 0
)"""
MESSAGES_V3 = """
CREATE TABLE messages_v3 (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_pk INTEGER NOT NULL REFERENCES conversations_v3 (pk) ON DELETE CASCADE,
    id TEXT NOT NULL,
    position INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    images TEXT,
    tool_calls TEXT,
    tool_call_id TEXT,
    digest BLOB NOT NULL,
    index_body TEXT,
    UNIQUE (conversation_pk, id)
)"""
_COPIED_CONVERSATION_COLUMNS = (
    "pk, id, title, model_name, created_at, updated_at, created_key, updated_key, metadata, next_position, expires_key"
)
_COPIED_MESSAGE_COLUMNS = (
    "pk, conversation_pk, id, position, role, content, created_at, metadata, images, tool_calls, tool_call_id, digest"
)

#: The search indexes are kept by these triggers, so every delete or edit, by this
#: library or by any other program (an older qv-session-manager, the sqlite3 shell),
#: removes the old entries and cascades from a conversation to its messages, whatever
#: the connection's foreign_keys setting. Rows with keys above ``search_state.indexed_upto``
#: are not in the index yet (see store.flush_index) and need no index work. A removed
#: entry leaves its tokens in old index segments until a purge, noted in ``store_info``.
SEARCH_TRIGGERS = """
CREATE TABLE search_state (kind TEXT PRIMARY KEY, indexed_upto INTEGER NOT NULL);
CREATE TRIGGER conversations_cascade AFTER DELETE ON conversations BEGIN
    DELETE FROM messages WHERE conversation_pk = old.pk;
END;
CREATE TRIGGER conversations_unindex AFTER DELETE ON conversations
WHEN old.pk <= (SELECT indexed_upto FROM search_state WHERE kind = 'titles')
    AND coalesce(old.title_body, old.title, '') <> '' BEGIN
    INSERT INTO title_index (title_index, rowid, body) VALUES ('delete', old.pk, coalesce(old.title_body, old.title));
    INSERT OR REPLACE INTO store_info (key, value) VALUES ('purge_pending', '1');
END;
CREATE TRIGGER conversations_reindex AFTER UPDATE OF title, title_body ON conversations
WHEN old.pk <= (SELECT indexed_upto FROM search_state WHERE kind = 'titles')
    AND coalesce(old.title_body, old.title, '') IS NOT coalesce(new.title_body, new.title, '') BEGIN
    INSERT INTO title_index (title_index, rowid, body)
        SELECT 'delete', old.pk, coalesce(old.title_body, old.title) WHERE coalesce(old.title_body, old.title, '') <> '';
    INSERT INTO title_index (rowid, body)
        SELECT new.pk, coalesce(new.title_body, new.title) WHERE coalesce(new.title_body, new.title, '') <> '';
    INSERT OR REPLACE INTO store_info (key, value) VALUES ('purge_pending', '1');
END;
CREATE TRIGGER messages_unindex AFTER DELETE ON messages
WHEN old.pk <= (SELECT indexed_upto FROM search_state WHERE kind = 'messages')
    AND coalesce(old.index_body, old.content) <> '' BEGIN
    INSERT INTO message_index (message_index, rowid, body) VALUES ('delete', old.pk, coalesce(old.index_body, old.content));
    INSERT OR REPLACE INTO store_info (key, value) VALUES ('purge_pending', '1');
END;
CREATE TRIGGER messages_reindex AFTER UPDATE OF content, index_body ON messages
WHEN old.pk <= (SELECT indexed_upto FROM search_state WHERE kind = 'messages')
    AND coalesce(old.index_body, old.content) IS NOT coalesce(new.index_body, new.content) BEGIN
    INSERT INTO message_index (message_index, rowid, body)
        SELECT 'delete', old.pk, coalesce(old.index_body, old.content) WHERE coalesce(old.index_body, old.content) <> '';
    INSERT INTO message_index (rowid, body)
        SELECT new.pk, coalesce(new.index_body, new.content) WHERE coalesce(new.index_body, new.content) <> '';
    INSERT OR REPLACE INTO store_info (key, value) VALUES ('purge_pending', '1');
END
"""


def _migration_3(db: sqlite3.Connection) -> None:
    """Keys never reused, deletes that cascade without foreign_keys, and triggers that keep the indexes.

    The two tables are rebuilt (SQLite cannot add AUTOINCREMENT to a table) keeping
    every key, so the search indexes stay valid; the key counters start above every
    key ever filed in an index, so entries left behind by an older library's deletes
    can never match a new row. Messages whose conversation no longer exists (deleted
    by a program that did not cascade) are dropped with their search entries.
    """
    db.create_function("qv_body_column", 1, body_column, deterministic=True)
    db.execute(CONVERSATIONS_V3)
    db.execute(MESSAGES_V3)
    db.execute(
        f"""INSERT INTO conversations_v3 ({_COPIED_CONVERSATION_COLUMNS}, title_body)
            SELECT {_COPIED_CONVERSATION_COLUMNS}, qv_body_column(title) FROM conversations"""
    )
    db.execute(
        f"""INSERT INTO messages_v3 ({_COPIED_MESSAGE_COLUMNS}, index_body)
            SELECT {_COPIED_MESSAGE_COLUMNS}, qv_body_column(content) FROM messages
            WHERE conversation_pk IN (SELECT pk FROM conversations)"""
    )
    orphans = db.execute(
        "SELECT count(*) FROM messages WHERE conversation_pk NOT IN (SELECT pk FROM conversations)"
    ).fetchone()[0]
    highest = {
        table: db.execute(
            f"SELECT max(coalesce((SELECT max(pk) FROM {table}), 0), coalesce((SELECT max(rowid) FROM {index}), 0))"
        ).fetchone()[0]
        for table, index in (("messages", "message_index"), ("conversations", "title_index"))
    }
    db.execute("DROP TABLE messages")
    db.execute("DROP TABLE conversations")
    db.execute("ALTER TABLE conversations_v3 RENAME TO conversations")
    db.execute("ALTER TABLE messages_v3 RENAME TO messages")
    for statement in (
        "CREATE INDEX conversations_by_updated ON conversations (updated_key, id)",
        "CREATE INDEX conversations_by_created ON conversations (created_key, id)",
        "CREATE INDEX conversations_by_expiry ON conversations (expires_key) WHERE expires_key IS NOT NULL",
        "CREATE INDEX messages_by_position ON messages (conversation_pk, position)",
    ):
        db.execute(statement)
    for table, value in highest.items():
        db.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, value))
    for statement in _statements(SEARCH_TRIGGERS):
        db.execute(statement)
    db.executemany(
        "INSERT INTO search_state (kind, indexed_upto) VALUES (?, ?)",
        [("messages", highest["messages"]), ("titles", highest["conversations"])],
    )
    if orphans:
        # Their index entries cannot be told apart any more: rebuild from what is kept.
        fill_index(db)
        db.execute("INSERT OR REPLACE INTO store_info (key, value) VALUES ('purge_pending', '1')")
    log.info("upgraded the database to schema 3 (%d messages of deleted conversations dropped)", orphans)


def _migration_4(db: sqlite3.Connection) -> None:
    """Schema 4: the time indexes also hold ``expires_key``.

    Every listing skips expired conversations, so with the key in the index SQLite
    decides from the index alone, and an ``offset`` page skips entries without reading
    each skipped row (a page at depth 17,000 went from ~3.5 ms to ~0.8 ms).
    """
    for name, key in (("conversations_by_updated", "updated_key"), ("conversations_by_created", "created_key")):
        db.execute(f"DROP INDEX {name}")
        db.execute(f"CREATE INDEX {name} ON conversations ({key}, id, expires_key)")
    log.info("upgraded the database to schema 4 (time indexes that cover the expiry check)")


#: Schema 5: a deleted row's search entries are removed at the next purge, not in the
#: delete. ``index_removals`` holds what each removal needs (FTS5's contentless
#: ``'delete'`` command takes the entry's body) and, where the body differs from it, the
#: text the entry came from (for doctor's comparison; NULL: the body); until the purge, searches never reach those entries, because
#: every search joins its index rows to the live rows and keys are never reused. An edit
#: (UPDATE) still replaces its entry at once: the row keeps its key.
REMOVAL_TRIGGERS = """
CREATE TABLE index_removals (
    kind TEXT NOT NULL,
    key INTEGER NOT NULL,
    body TEXT NOT NULL,
    text TEXT,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TRIGGER conversations_unindex AFTER DELETE ON conversations
WHEN old.pk <= (SELECT indexed_upto FROM search_state WHERE kind = 'titles')
    AND coalesce(old.title_body, old.title, '') <> '' BEGIN
    INSERT OR REPLACE INTO index_removals (kind, key, body, text)
        VALUES ('titles', old.pk, coalesce(old.title_body, old.title),
                CASE WHEN old.title_body IS NULL THEN NULL ELSE old.title END);
END;
CREATE TRIGGER messages_unindex AFTER DELETE ON messages
WHEN old.pk <= (SELECT indexed_upto FROM search_state WHERE kind = 'messages')
    AND coalesce(old.index_body, old.content) <> '' BEGIN
    INSERT OR REPLACE INTO index_removals (kind, key, body, text)
        VALUES ('messages', old.pk, coalesce(old.index_body, old.content),
                CASE WHEN old.index_body IS NULL THEN NULL ELSE old.content END);
END
"""


def _migration_5(db: sqlite3.Connection) -> None:
    """Schema 5: deletes leave their search entries to the next purge (see :data:`REMOVAL_TRIGGERS`).

    A delete then costs what deleting the rows costs, and a purge removes the entries
    of every delete since the last one together: with FTS5 secure-delete in time
    proportional to how many there are (see :mod:`.secure_index`).
    """
    db.execute("DROP TRIGGER conversations_unindex")
    db.execute("DROP TRIGGER messages_unindex")
    for statement in _statements(REMOVAL_TRIGGERS):
        db.execute(statement)
    log.info("upgraded the database to schema 5 (search entries of deletes removed at the next purge)")


def apply_removals(db: sqlite3.Connection) -> int:
    """Remove from the search indexes the entries that deletes left (in the caller's write transaction).

    Returns how many entries were removed. Without FTS5 secure-delete their tokens
    stay in the index segments until the indexes are merged (see :mod:`.secure_index`).
    """
    removed = 0
    for kind, (table, _) in PENDING.items():
        rows = db.execute("SELECT key, body FROM index_removals WHERE kind = ? ORDER BY key", (kind,)).fetchall()
        if rows:
            db.executemany(f"INSERT INTO {table} ({table}, rowid, body) VALUES ('delete', ?, ?)", rows)
            removed += len(rows)
    if removed:
        db.execute("DELETE FROM index_removals")
    return removed


#: Schema 6: message vectors for search by meaning (see protocol.VectorStorage). A vector
#: goes with its message whatever deletes it (these triggers also run in 0.3.0's
#: connections and the sqlite3 shell), and an edit of the content drops it.
#: ``store_info.vectors_version`` changes with every vector added or removed, by any
#: process, so a copy of the vectors in memory knows when it is stale (see .vector_cache);
#: ``vectors_dropped`` with every edit of a message's content and every forget, so a
#: store knows when an old message may be pending again (see vectors.PendingFrom). A rowid table, not WITHOUT
#: ROWID: a vector of 256 float32 values (1 KiB) fits on its page there, where the
#: narrower WITHOUT ROWID cell put every vector on an overflow page of its own (4.6x
#: the bytes, measured on ShareGPT).
VECTOR_TABLES = """
CREATE TABLE message_vectors (
    space TEXT NOT NULL,
    message_pk INTEGER NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (space, message_pk)
);
CREATE INDEX message_vectors_by_message ON message_vectors (message_pk);
CREATE TRIGGER messages_drop_vectors AFTER DELETE ON messages BEGIN
    DELETE FROM message_vectors WHERE message_pk = old.pk;
END;
CREATE TRIGGER messages_drop_stale_vectors AFTER UPDATE OF content ON messages
WHEN old.content IS NOT new.content BEGIN
    DELETE FROM message_vectors WHERE message_pk = old.pk;
    UPDATE store_info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'vectors_dropped';
END;
INSERT OR REPLACE INTO store_info (key, value) VALUES ('vectors_version', '0'), ('vectors_dropped', '0');
CREATE TRIGGER message_vectors_added AFTER INSERT ON message_vectors BEGIN
    UPDATE store_info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'vectors_version';
END;
CREATE TRIGGER message_vectors_removed AFTER DELETE ON message_vectors BEGIN
    UPDATE store_info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'vectors_version';
END
"""


def _migration_6(db: sqlite3.Connection) -> None:
    """Schema 6: a table of message vectors (empty until something embeds the messages)."""
    for statement in _statements(VECTOR_TABLES):
        db.execute(statement)
    log.info("upgraded the database to schema 6 (message vectors for search by meaning)")


#: MIGRATIONS[i] takes a database from version i to version i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
]
LATEST = len(MIGRATIONS)


def user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _refuse_newer(version: int) -> None:
    if version > LATEST:
        raise SchemaVersionError(
            f"the database has schema version {version}; this qv-session-manager "
            f"understands up to {LATEST}. Upgrade qv-session-manager."
        )


def check_readable(db: sqlite3.Connection) -> None:
    """For a connection that must not write: the file is at :data:`LATEST` with a current index.

    Changes nothing. Raises SchemaVersionError for a newer schema, and for an older
    one or a search index built by an older tokenizer (both need a write to bring
    up to date: open the file once without ``mode=ro``/``immutable=1``).
    """
    version = user_version(db)
    _refuse_newer(version)
    if version < LATEST:
        raise SchemaVersionError(
            f"the database has schema version {version} and read-only access cannot upgrade it to {LATEST}; "
            "open it once with write access"
        )
    row = db.execute("SELECT value FROM store_info WHERE key = 'tokenizer_version'").fetchone()
    if row is None or row[0] != str(TOKENIZER_VERSION):
        raise SchemaVersionError(
            "the search index was built by an older qv-session-manager and read-only access cannot rebuild it; "
            "open the file once with write access"
        )


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A ``BEGIN IMMEDIATE`` transaction around the block: committed, or rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def migrate(db: sqlite3.Connection) -> None:
    """Bring the database to :data:`LATEST`, one transaction per migration.

    Raises SchemaVersionError for a database newer than this library.
    """
    while True:
        version = user_version(db)
        _refuse_newer(version)
        if version == LATEST:
            break
        with immediate(db):
            if user_version(db) == version:  # another process may have migrated meanwhile
                MIGRATIONS[version](db)
                db.execute(f"PRAGMA user_version = {version + 1}")
    _check_tokenizer(db)


def _check_tokenizer(db: sqlite3.Connection) -> None:
    row = db.execute("SELECT value FROM store_info WHERE key = 'tokenizer_version'").fetchone()
    if row is not None and row[0] == str(TOKENIZER_VERSION):
        return
    with immediate(db):
        fill_index(db)
