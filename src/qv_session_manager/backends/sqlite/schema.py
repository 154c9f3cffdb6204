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
from collections.abc import Callable

from ...errors import SchemaVersionError
from ...records import EXPIRES_AT, stored_expiry_key
from ...text import TOKENIZER_VERSION
from ...timeutil import time_key
from .rows import digest, index_body, parse_timestamp

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


def _table_columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def _create_v1(db: sqlite3.Connection) -> None:
    for statement in SCHEMA_V1.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(
        "INSERT INTO store_info (key, value) VALUES ('tokenizer_version', ?)", (str(TOKENIZER_VERSION),)
    )


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
    fill_index(db)
    log.info(
        "upgraded a qv-session-manager 0.x database to schema 1 (%d messages of deleted conversations dropped)",
        orphans,
    )


def fill_index(db: sqlite3.Connection) -> None:
    """(Re)build both search indexes from the stored text."""
    db.execute("INSERT INTO message_index (message_index) VALUES ('delete-all')")
    db.execute("INSERT INTO title_index (title_index) VALUES ('delete-all')")
    for pk, content in db.execute("SELECT pk, content FROM messages").fetchall():
        body = index_body(content)
        if body:
            db.execute("INSERT INTO message_index (rowid, body) VALUES (?, ?)", (pk, body))
    for pk, title in db.execute("SELECT pk, title FROM conversations").fetchall():
        body = index_body(title)
        if body:
            db.execute("INSERT INTO title_index (rowid, body) VALUES (?, ?)", (pk, body))
    db.execute(
        "INSERT OR REPLACE INTO store_info (key, value) VALUES ('tokenizer_version', ?)",
        (str(TOKENIZER_VERSION),),
    )


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
    db.create_function(
        "qv_expiry_key", 1, lambda value: stored_expiry_key({EXPIRES_AT: value}), deterministic=True
    )
    db.execute(
        f"""UPDATE conversations SET expires_key = qv_expiry_key(json_extract(metadata, '$.{EXPIRES_AT}'))
            WHERE json_valid(metadata) AND json_type(metadata, '$.{EXPIRES_AT}') = 'text'"""
    )


#: MIGRATIONS[i] takes a database from version i to version i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migration_1, _migration_2]
LATEST = len(MIGRATIONS)


def user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection) -> None:
    """Bring the database to :data:`LATEST`, one transaction per migration.

    Raises SchemaVersionError for a database newer than this library.
    """
    while True:
        version = user_version(db)
        if version > LATEST:
            raise SchemaVersionError(
                f"the database has schema version {version}; this qv-session-manager "
                f"understands up to {LATEST}. Upgrade qv-session-manager."
            )
        if version == LATEST:
            break
        db.execute("BEGIN IMMEDIATE")
        try:
            if user_version(db) == version:  # another process may have migrated meanwhile
                MIGRATIONS[version](db)
                db.execute(f"PRAGMA user_version = {version + 1}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    _check_tokenizer(db)


def _check_tokenizer(db: sqlite3.Connection) -> None:
    row = db.execute("SELECT value FROM store_info WHERE key = 'tokenizer_version'").fetchone()
    if row is not None and row[0] == str(TOKENIZER_VERSION):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        fill_index(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
