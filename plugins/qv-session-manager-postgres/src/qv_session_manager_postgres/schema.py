"""The PostgreSQL schema and its migrations.

Everything lives in one PostgreSQL schema (``public`` unless configured), created
when missing. Tables are prefixed ``qv_`` so that they can share a schema with an
application's own tables. ``qv_schema_migrations`` records each applied migration
(``version``, ``applied_at``, ``description``).

Each migration runs in its own transaction that first takes a transaction-level
advisory lock on the schema name (``pg_advisory_xact_lock``), then re-reads the
version: several processes starting at once apply every migration exactly once,
and a failed migration leaves the previous version intact. A store whose
migrations are all applied is opened without writing anything (so a read-only
role can open it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg
import psycopg.errors

from qv_session_manager import codec
from qv_session_manager.errors import SchemaVersionError, StorageError
from qv_session_manager.records import EXPIRES_AT, stored_expiry_key
from qv_session_manager.text import TOKENIZER_VERSION

from .rows import CONTENT, TITLE, load_text
from .textsearch import document_vector

log = logging.getLogger("qv_session_manager")

#: First key of every advisory lock this backend takes ("qv" in ASCII, then 1).
LOCK_CLASS = 0x71760001

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {s}.qv_schema_migrations (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now(),
    description text NOT NULL
)"""

SCHEMA_V1 = """
CREATE TABLE {s}.qv_conversations (
    pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text COLLATE "C" NOT NULL,
    id_key bytea NOT NULL,
    title text,
    model_name text,
    created_at text NOT NULL,
    updated_at text NOT NULL,
    created_key text COLLATE "C" NOT NULL,
    updated_key text COLLATE "C" NOT NULL,
    metadata text NOT NULL,
    filter_doc jsonb NOT NULL,
    escaped smallint NOT NULL DEFAULT 0,
    next_position bigint NOT NULL DEFAULT 0,
    title_tsv tsvector NOT NULL,
    title_exact boolean NOT NULL,
    CONSTRAINT qv_conversations_id_key UNIQUE (id_key)
);
CREATE INDEX qv_conversations_by_updated ON {s}.qv_conversations (updated_key);
CREATE INDEX qv_conversations_by_created ON {s}.qv_conversations (created_key);
CREATE INDEX qv_conversations_filter ON {s}.qv_conversations USING gin (filter_doc jsonb_path_ops);
CREATE INDEX qv_conversations_title_exact ON {s}.qv_conversations USING gin (title_tsv) WHERE title_exact;
CREATE INDEX qv_conversations_title_inexact ON {s}.qv_conversations USING gin (title_tsv) WHERE NOT title_exact;
CREATE TABLE {s}.qv_messages (
    pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_pk bigint NOT NULL REFERENCES {s}.qv_conversations (pk) ON DELETE CASCADE,
    id text COLLATE "C" NOT NULL,
    id_key bytea NOT NULL,
    position bigint NOT NULL,
    role text NOT NULL,
    content text NOT NULL,
    created_at text NOT NULL,
    metadata text NOT NULL,
    images text,
    tool_calls text,
    tool_call_id text,
    escaped smallint NOT NULL DEFAULT 0,
    digest bytea NOT NULL,
    content_digest bytea NOT NULL,
    content_tsv tsvector NOT NULL,
    search_exact boolean NOT NULL,
    CONSTRAINT qv_messages_id_key UNIQUE (conversation_pk, id_key),
    CONSTRAINT qv_messages_position UNIQUE (conversation_pk, position) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX qv_messages_search_exact ON {s}.qv_messages USING gin (content_tsv) WHERE search_exact;
CREATE INDEX qv_messages_search_inexact ON {s}.qv_messages USING gin (content_tsv) WHERE NOT search_exact;
CREATE TABLE {s}.qv_store_info (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO {s}.qv_store_info (key, value) VALUES ('tokenizer_version', '{tokenizer}')
"""


def _migration_1(cursor: psycopg.Cursor, schema: str, vectors: str) -> None:
    for statement in SCHEMA_V1.split(";"):
        if statement.strip():
            cursor.execute(statement.format(s=schema, tokenizer=TOKENIZER_VERSION))


def _migration_2(cursor: psycopg.Cursor, schema: str, vectors: str) -> None:
    """Expiry: ``expires_key``, the time key of ``metadata["expires_at"]`` (NULL when none).

    Filled from the metadata already stored; a value that does not parse stays NULL
    (the conversation never expires). The partial index serves ``purge_expired``.
    """
    table = f"{schema}.qv_conversations"
    cursor.execute(f'ALTER TABLE {table} ADD COLUMN expires_key text COLLATE "C"')
    cursor.execute(f"CREATE INDEX qv_conversations_by_expiry ON {table} (expires_key) WHERE expires_key IS NOT NULL")
    # filter_doc holds every top-level scalar entry, so it names each candidate (a
    # non-scalar value could never parse anyway); the exact metadata text decides.
    found = cursor.execute(f"SELECT pk, metadata FROM {table} WHERE filter_doc ? %s", (EXPIRES_AT,)).fetchall()
    keys = []
    for pk, metadata in found:
        try:
            value = codec.loads(metadata)
        except ValueError:  # not ours to judge here: reading that row reports it
            continue
        key = stored_expiry_key(value) if isinstance(value, dict) else None
        if key is not None:
            keys.append((key, pk))
    if keys:
        cursor.executemany(f"UPDATE {table} SET expires_key = %s WHERE pk = %s", keys)


def _migration_3(cursor: psycopg.Cursor, schema: str, vectors: str) -> None:
    """Revisions: a count of this library's writes to each conversation (see PostgresStore.save_revisioned)."""
    cursor.execute(f"ALTER TABLE {schema}.qv_conversations ADD COLUMN revision bigint NOT NULL DEFAULT 0")


#: The type of extension "vector" (pgvector) is written ``<its schema>.vector``; every
#: name of pgvector is qualified so, whatever the connection's search_path.
EXTENSION_LOOKUP = """SELECT n.nspname, e.extversion FROM pg_extension e
    JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"""

VECTORS_TABLE = """
CREATE TABLE {s}.qv_message_vectors (
    space text COLLATE "C" NOT NULL,
    message_pk bigint NOT NULL REFERENCES {s}.qv_messages (pk) ON DELETE CASCADE,
    embedding {column} NOT NULL,
    PRIMARY KEY (space, message_pk)
);
CREATE INDEX qv_message_vectors_by_message ON {s}.qv_message_vectors (message_pk)
"""


def find_extension(cursor: psycopg.Cursor) -> tuple[str, str] | None:
    """(schema, version) of the pgvector extension installed in the database, or None."""
    found = cursor.execute(EXTENSION_LOOKUP).fetchone()
    return None if found is None else (str(found[0]), str(found[1]))


def _pgvector_for_new_table(cursor: psycopg.Cursor, vectors: str) -> tuple[str, str] | None:
    """The pgvector extension a new vectors table uses, installing it when allowed; None: bytea.

    ``vectors`` is the store option: ``"exact"`` never uses it, ``"auto"`` uses it
    when it is installed or ``CREATE EXTENSION vector`` succeeds (else falls back,
    with a warning), ``"pgvector"`` requires it (StorageError otherwise).
    """
    if vectors == "exact":
        return None
    found = find_extension(cursor)
    if found is None:
        (available,) = cursor.execute(  # type: ignore[misc]
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
        if available:
            try:
                with cursor.connection.transaction():  # a savepoint: a refusal leaves the migration going
                    cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext('extension vector'))", (LOCK_CLASS,))
                    # In public where it exists (never in a store's own schema, whose drop would take it along).
                    public = cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'public'").fetchone()
                    cursor.execute("CREATE EXTENSION IF NOT EXISTS vector" + (" SCHEMA public" if public else ""))
            except psycopg.Error as exc:  # not permitted, or created by another session meanwhile
                log.warning("could not create the PostgreSQL extension vector: %s", str(exc).strip())
            found = find_extension(cursor)
    if found is None:
        if vectors == "pgvector":
            raise StorageError(
                "vectors='pgvector' needs the PostgreSQL extension vector (pgvector), which this server "
                "does not have and could not install; use vectors='auto' or 'exact' to store vectors as bytea"
            )
        log.warning(
            "PostgreSQL has no extension vector (pgvector): message vectors are stored as bytea, ranked exactly"
        )
    return found


def _migration_4(cursor: psycopg.Cursor, schema: str, vectors: str) -> None:
    """Message vectors (protocol.VectorStorage): one row per (space, message), gone with its message.

    The column is pgvector's ``vector`` (without a dimension: a space's dimension is in its
    key, and an HNSW index per space casts to it) when the extension is there, else
    ``bytea`` holding the little-endian float32 values. ``qv_store_info.vector_layout``
    says which (``pgvector`` or ``bytea``); a schema keeps the layout it was made with.
    """
    extension = _pgvector_for_new_table(cursor, vectors)
    column = "bytea" if extension is None else f"{quote_identifier(extension[0])}.vector"
    for statement in VECTORS_TABLE.split(";"):
        if statement.strip():
            cursor.execute(statement.format(s=schema, column=column))
    cursor.execute(
        f"INSERT INTO {schema}.qv_store_info (key, value) VALUES ('vector_layout', %s)",
        ("bytea" if extension is None else "pgvector",),
    )


#: MIGRATIONS[i] takes a schema from version i to version i + 1: (description, function).
#: Each function takes (cursor, quoted schema, the store's ``vectors`` option).
MIGRATIONS: list[tuple[str, Callable[[psycopg.Cursor, str, str], None]]] = [
    ("conversations, messages and their search vectors", _migration_1),
    ("conversation expiry (metadata expires_at)", _migration_2),
    ("conversation revisions", _migration_3),
    ("message vectors for search by meaning", _migration_4),
]
LATEST = len(MIGRATIONS)


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lock(cursor: psycopg.Cursor, schema_name: str) -> None:
    cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, schema_name))


def current_version(cursor: psycopg.Cursor, schema: str) -> int | None:
    """The applied version, or None when the schema holds no migrations table."""
    (table,) = cursor.execute("SELECT to_regclass(%s)", (f"{schema}.qv_schema_migrations",)).fetchone()  # type: ignore[misc]
    if table is None:
        (stray,) = cursor.execute("SELECT to_regclass(%s)", (f"{schema}.qv_conversations",)).fetchone()  # type: ignore[misc]
        if stray is not None:
            raise SchemaVersionError(
                f"schema {schema} has a qv_conversations table but no qv_schema_migrations: "
                "it was not made by qv-session-manager-postgres; refusing to change it"
            )
        return None
    (version,) = cursor.execute(f"SELECT coalesce(max(version), 0) FROM {schema}.qv_schema_migrations").fetchone()  # type: ignore[misc]
    return int(version)


def _check_not_newer(version: int, schema: str) -> None:
    if version > LATEST:
        raise SchemaVersionError(
            f"schema {schema} has version {version}; this qv-session-manager-postgres "
            f"understands up to {LATEST}. Upgrade qv-session-manager-postgres."
        )


def migrate(connection: psycopg.Connection, schema_name: str, vectors: str = "auto") -> None:
    """Bring ``schema_name`` to :data:`LATEST` on an autocommit ``connection``.

    ``vectors`` (the store option) decides the layout of the vectors table when
    migration 4 creates it (see :func:`_migration_4`).

    Raises SchemaVersionError for a schema newer than this library, and lets
    psycopg errors through (the caller translates them).
    """
    schema = quote_identifier(schema_name)
    cursor = connection.cursor()
    version = current_version(cursor, schema)
    if version is not None:
        _check_not_newer(version, schema)
    while version != LATEST:
        with connection.transaction():
            _lock(cursor, schema_name)
            found = cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema_name,)).fetchone()
            if found is None:
                cursor.execute(f"CREATE SCHEMA {schema}")
            cursor.execute(MIGRATIONS_TABLE.format(s=schema))
            version = current_version(cursor, schema) or 0
            _check_not_newer(version, schema)
            if version < LATEST:
                description, apply = MIGRATIONS[version]
                apply(cursor, schema, vectors)
                cursor.execute(
                    f"INSERT INTO {schema}.qv_schema_migrations (version, description) VALUES (%s, %s)",
                    (version + 1, description),
                )
                log.info("applied migration %d of schema %s: %s", version + 1, schema, description)
                version += 1
    _check_tokenizer(connection, schema_name)


#: Every table a store creates, each after the tables that refer to it.
TABLES = ("qv_message_vectors", "qv_messages", "qv_conversations", "qv_store_info", "qv_schema_migrations")


def drop(cursor: psycopg.Cursor, schema_name: str) -> None:
    """Drop the store's tables in ``schema_name``, and the schema when nothing else is in it.

    ``public`` is never dropped, nor a schema holding anything but this store's tables.
    """
    schema = quote_identifier(schema_name)
    _lock(cursor, schema_name)
    cursor.execute("DROP TABLE IF EXISTS " + ", ".join(f"{schema}.{table}" for table in TABLES))
    if schema_name == "public":
        return
    try:
        with cursor.connection.transaction():  # a savepoint: a schema still holding objects stays
            cursor.execute(f"DROP SCHEMA IF EXISTS {schema}")
    except psycopg.errors.DependentObjectsStillExist:
        pass


def _check_tokenizer(connection: psycopg.Connection, schema_name: str) -> None:
    schema = quote_identifier(schema_name)
    query = f"SELECT value FROM {schema}.qv_store_info WHERE key = 'tokenizer_version'"
    row = connection.execute(query).fetchone()
    if row is not None and row[0] == str(TOKENIZER_VERSION):
        return
    with connection.transaction():
        cursor = connection.cursor()
        _lock(cursor, schema_name)
        row = cursor.execute(query).fetchone()
        if row is None or row[0] != str(TOKENIZER_VERSION):
            fill_index(connection, schema)


def fill_index(connection: psycopg.Connection, schema: str) -> None:
    """Recompute every search vector from the stored text (inside a transaction)."""
    for table, column, exact, text, bit in (
        ("qv_messages", "content_tsv", "search_exact", "content", CONTENT),
        ("qv_conversations", "title_tsv", "title_exact", "title", TITLE),
    ):
        reader = connection.cursor(name=f"qv_fill_{table}")
        reader.itersize = 500
        reader.execute(f"SELECT pk, {text}, escaped FROM {schema}.{table}")
        writer = connection.cursor()
        while True:
            batch = reader.fetchmany(500)
            if not batch:
                break
            updates = []
            for pk, value, escaped in batch:
                vector, is_exact = document_vector(load_text(value, escaped, bit) or "")
                updates.append((vector, is_exact, pk))
            writer.executemany(
                f"UPDATE {schema}.{table} SET {column} = %s::tsvector, {exact} = %s WHERE pk = %s",
                updates,
            )
        reader.close()
    connection.execute(
        f"""INSERT INTO {schema}.qv_store_info (key, value) VALUES ('tokenizer_version', %s)
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value""",
        (str(TOKENIZER_VERSION),),
    )
    log.info("rebuilt the search vectors of schema %s for tokenizer version %d", schema, TOKENIZER_VERSION)
