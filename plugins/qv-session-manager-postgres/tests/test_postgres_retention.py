"""Expiry on PostgreSQL: the schema migration of existing schemas, the index, the manager over it.

The storage contract of expiry runs in test_postgres_contract.py (and the async one);
here is what only a real server shows.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest

from qv_session_manager import EXPIRES_AT, ConversationRecord, MessageRecord, SessionManager, codec
from qv_session_manager_postgres import PostgresStore
from qv_session_manager_postgres import schema as schema_module
from qv_session_manager_postgres.rows import encode_conversation, filter_document

AT = datetime(2025, 1, 20, 12, 0, 0)


def _version_1_schema(
    postgres_url: str, schema: str, monkeypatch: pytest.MonkeyPatch, metadata: dict[str, Any]
) -> None:
    """A schema as the previous release left it (migration 1 only), one conversation per metadata value."""
    with monkeypatch.context() as patched:
        patched.setattr(schema_module, "MIGRATIONS", schema_module.MIGRATIONS[:1])
        patched.setattr(schema_module, "LATEST", 1)
        PostgresStore(postgres_url, schema=schema).close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        for name, value in metadata.items():
            row = encode_conversation(ConversationRecord(id=name, created_at=AT, updated_at=AT, title=name))
            del row["expires_key"]
            document = {"name": name} if value is None else {"name": name, EXPIRES_AT: value}
            row.update(metadata=codec.dumps(document), filter_doc=filter_document(document))
            columns = ", ".join(row)
            values = ", ".join(f"%({column})s" for column in row)
            connection.execute(
                f'INSERT INTO "{schema}".qv_conversations ({columns}) VALUES ({values})',
                row,  # type: ignore[arg-type]
            )


def test_migration_2_fills_the_expiry_of_existing_rows(
    postgres_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _version_1_schema(
        postgres_url,
        schema,
        monkeypatch,
        {
            "expired": "2000-01-01T00:00:00+01:00",
            "future": "2999-01-01T00:00:00",
            "zulu": "2999-01-01T00:00:00Z",
            "garbage": "soon",
            "number": 5,
            "listed": ["2000-01-01"],
            "none": None,
        },
    )
    store = PostgresStore(postgres_url, schema=schema)
    try:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            versions = connection.execute(f'SELECT version FROM "{schema}".qv_schema_migrations ORDER BY 1').fetchall()
            keys = dict(connection.execute(f'SELECT id, expires_key FROM "{schema}".qv_conversations').fetchall())
        assert [v[0] for v in versions] == [1, 2, 3, 4] == list(range(1, schema_module.LATEST + 1))
        assert keys == {
            "expired": "1999-12-31T23:00:00.000000",
            "future": "2999-01-01T00:00:00.000000",
            "zulu": "2999-01-01T00:00:00.000000",
            "garbage": None,
            "number": None,
            "listed": None,
            "none": None,
        }
        assert store.get("expired") is None and store.load("future") is not None
        garbage = store.get("garbage")
        assert garbage is not None and garbage.metadata[EXPIRES_AT] == "soon", "a value that does not parse is kept"
        with SessionManager(store=store) as manager:
            assert sorted(row["id"] for row in manager.list_conversations()) == [
                "future",
                "garbage",
                "listed",
                "none",
                "number",
                "zulu",
            ]
            assert manager.purge_expired() == 1
    finally:
        store.close()


def test_purge_uses_the_expiry_index(make_store, postgres_url: str, schema_for) -> None:
    store = make_store()
    store.save(
        ConversationRecord(id="c", created_at=AT, updated_at=AT, metadata={EXPIRES_AT: "2000-01-01"}),
        [MessageRecord(id="m", role="user", content="x", created_at=AT)],
    )
    schema = schema_for("main")
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in connection.execute(
                f"""EXPLAIN DELETE FROM "{schema}".qv_conversations WHERE expires_key <= %s COLLATE "C" """,  # type: ignore[arg-type]
                ("2025-01-01T00:00:00.000000",),
            )
        )
    assert "qv_conversations_by_expiry" in plan, plan
    assert store.purge_expired() == 1
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        left = connection.execute(f'SELECT count(*) FROM "{schema}".qv_messages').fetchone()
    assert left == (0,), "purged conversations take their messages with them"


def test_manager_retention_on_postgres(make_store) -> None:
    from qv_ollama_sdk.domain.models import Conversation

    with SessionManager(store=make_store()) as manager:
        ids = []
        for day in range(5):
            chat = Conversation(title=f"day {day}", updated_at=datetime(2025, 1, 10 + day, tzinfo=timezone.utc))
            chat.add_user_message("hello")
            chat.updated_at = datetime(2025, 1, 10 + day, tzinfo=timezone.utc)
            manager.save_conversation(chat)
            ids.append(str(chat.id))
        assert manager.delete_older_than(datetime(2025, 1, 11)) == 1
        assert manager.keep_newest(2) == 2
        assert manager.set_expiry(ids[4], datetime(2000, 1, 1)) is True
        assert [row["title"] for row in manager.list_conversations()] == ["day 3"]
        assert manager.purge_expired() == 1
