"""SQLite stores opened without write access: ``?mode=ro`` and ``?immutable=1``."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

from qv_session_manager import InvalidInputError, SessionManager, StorageError, open_store
from qv_session_manager.backends.sqlite import SQLiteStore, readonly
from qv_session_manager.errors import ReadOnlyStorageError, SchemaVersionError


def chat(title: str, text: str) -> Conversation:
    conversation = Conversation(title=title, model_name="llama3")
    conversation.messages = [Message(role=MessageRole.USER, content=text)]
    return conversation


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    path = tmp_path / "chats.db"
    with SessionManager(db_path=path) as manager:
        manager.save_conversation(chat("Python lists", "how do lists grow"))
        manager.save_conversation(chat("Rust", "what is ownership"))
    return path


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("query", ["mode=ro", "immutable=1", "mode=ro&immutable=true"])
def test_reads_work_and_writes_are_refused_leaving_the_file_as_it_was(stored: Path, query: str) -> None:
    before = fingerprint(stored)
    with SessionManager(url=f"sqlite:///{stored}?{query}") as manager:
        store = manager.store
        assert isinstance(store, SQLiteStore) and store.read_only
        assert store.immutable == ("immutable" in query)
        assert {row["title"] for row in manager.list_conversations()} == {"Python lists", "Rust"}
        assert [hit["title"] for hit in manager.search_conversations("ownership")] == ["Rust"]
        with pytest.raises(ReadOnlyStorageError):
            manager.save_conversation(chat("new", "text"))
        with pytest.raises(ReadOnlyStorageError):
            manager.delete_conversation(manager.list_conversations()[0]["id"])
    assert fingerprint(stored) == before
    with SessionManager(db_path=stored) as manager:
        assert len(manager.list_conversations()) == 2


def test_a_read_only_store_sees_what_a_writer_adds_later(stored: Path) -> None:
    reader = SessionManager(url=f"sqlite:///{stored}?mode=ro")
    try:
        with SessionManager(db_path=stored) as writer:
            writer.save_conversation(chat("later", "a newer conversation about ownership"))
            assert len(reader.search_conversations("ownership")) == 2
    finally:
        reader.close()


def test_a_missing_file_is_not_created(tmp_path: Path) -> None:
    for query in ("mode=ro", "immutable=1"):
        with pytest.raises(StorageError, match="never created"):
            open_store(f"sqlite:///{tmp_path / 'missing.db'}?{query}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("query", ["mode=rw", "mode=memory", "immutable=maybe", "mode="])
def test_bad_values_are_refused(stored: Path, query: str) -> None:
    with pytest.raises(InvalidInputError):
        open_store(f"sqlite:///{stored}?{query}")


def test_in_memory_cannot_be_read_only() -> None:
    with pytest.raises(InvalidInputError):
        SQLiteStore(":memory:", read_only=True)
    with pytest.raises(InvalidInputError):
        SQLiteStore(":memory:", read_only="yes")  # type: ignore[arg-type]


def test_mode_rwc_is_the_default(stored: Path) -> None:
    store = open_store(f"sqlite:///{stored}?mode=rwc")
    try:
        assert isinstance(store, SQLiteStore) and not store.read_only
    finally:
        store.close()


@pytest.mark.parametrize(
    "change",
    [
        "PRAGMA user_version = 99",
        "UPDATE store_info SET value = '0' WHERE key = 'tokenizer_version'",
        "PRAGMA user_version = 3",
    ],
)
def test_a_file_needing_an_upgrade_or_newer_is_refused_untouched(stored: Path, change: str) -> None:
    connection = sqlite3.connect(stored)
    connection.execute(change)
    connection.commit()
    connection.close()
    before = fingerprint(stored)
    with pytest.raises(SchemaVersionError):
        open_store(f"sqlite:///{stored}?mode=ro")
    assert fingerprint(stored) == before


class _NoSharedMemory(sqlite3.OperationalError):
    sqlite_errorcode = 1544  # SQLITE_READONLY_DIRECTORY


def _fake_connect(opened: list[str], fail: bool) -> object:
    def connect(uri: str) -> sqlite3.Connection:
        opened.append(uri)
        if fail and "immutable" not in uri:
            raise _NoSharedMemory("attempt to write a readonly database")
        return sqlite3.connect(":memory:")

    return connect


def test_without_shared_memory_and_without_wal_content_the_file_is_read_as_immutable(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    opened: list[str] = []
    db, immutable = readonly.connect_read_only(
        _fake_connect(opened, True),
        path,
        immutable=False,  # type: ignore[arg-type]
        error=sqlite3.Error,
    )
    db.close()
    assert immutable and opened == [readonly.file_uri(path, immutable=False), readonly.file_uri(path, immutable=True)]
    (tmp_path / "x.db-wal").write_bytes(b"frames")  # WAL content waits: immutable would miss it
    with pytest.raises(_NoSharedMemory):
        readonly.connect_read_only(_fake_connect([], True), path, immutable=False, error=sqlite3.Error)  # type: ignore[arg-type]


def test_file_uri_quotes_the_path() -> None:
    assert readonly.file_uri("/a b/c?d#e.db", immutable=False) == "file:/a%20b/c%3Fd%23e.db?mode=ro"
    assert readonly.file_uri("/x.db", immutable=True) == "file:/x.db?mode=ro&immutable=1"
