"""A zero-length file opens as a new, empty store, in place, as sqlite3 treats it.

``tempfile.mkstemp()``, ``NamedTemporaryFile`` and ``touch`` are common ways to make a
database path (0.3.0's own tests use ``mkstemp``). Such a file becomes a store at
that very path: the same inode (so an open handle and the file's permissions stay),
the whole schema, logged at INFO. Non-empty files that are not databases are still
refused untouched (``test_rel_faults.py``, ``test_sqlite_upgrade.py``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import CorruptStorageError, EncryptionKeyError, SessionManager
from qv_session_manager.backends.sqlite import SQLiteStore, schema

MAGIC = b"SQLite format 3\x00"
NOTICE = "is a zero-length file: opening it as a new, empty store"


def _chat(text: str) -> Conversation:
    conversation = Conversation(model_name="llama3", title=f"about {text}")
    conversation.add_user_message(f"tell me about {text}")
    conversation.add_assistant_message(f"{text} is interesting")
    return conversation


def _use(path: str, **options: Any) -> Conversation:
    """Save a conversation through a manager on ``path`` and read it back, then close."""
    conversation = _chat("walruses")
    with SessionManager(db_path=path, **options) as manager:
        manager.save_conversation(conversation, conversation.messages)
        loaded = manager.load_conversation(str(conversation.id))
        assert loaded is not None and [m.content for m in loaded.messages] == [m.content for m in conversation.messages]
        assert [c["id"] for c in manager.search_conversations("walruses")] == [str(conversation.id)]
    return conversation


def _user_version(path: str | Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_mkstemp_file_becomes_the_store_in_place(caplog: pytest.LogCaptureFixture) -> None:
    """A mkstemp() file opens as a new store, logged at INFO; it keeps its inode and its
    owner-only permissions (0600), holds the latest schema, and the data persists."""
    fd, path = tempfile.mkstemp(suffix=".db")
    os.close(fd)
    try:
        before = os.stat(path)
        with caplog.at_level(logging.INFO, logger="qv_session_manager"):
            saved = _use(path)
        notices = [r for r in caplog.records if NOTICE in r.getMessage()]
        assert len(notices) == 1 and notices[0].levelno == logging.INFO and path in notices[0].getMessage()
        after = os.stat(path)
        assert (after.st_ino, after.st_dev) == (before.st_ino, before.st_dev)
        assert stat.S_IMODE(after.st_mode) == stat.S_IMODE(before.st_mode) == 0o600
        with open(path, "rb") as file:
            assert file.read(16) == MAGIC
        assert _user_version(path) == schema.LATEST
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="qv_session_manager"), SessionManager(db_path=path) as manager:
            assert manager.load_conversation(str(saved.id)) is not None
        assert not [r for r in caplog.records if NOTICE in r.getMessage()], "only an empty file is announced"
    finally:
        for leftover in (path, path + "-wal", path + "-shm", path + "-journal"):
            if os.path.exists(leftover):
                os.remove(leftover)


def test_named_temporary_file_keeps_working_through_its_handle() -> None:
    """With a NamedTemporaryFile still open, the store lands in that file: its handle reads
    the database, and the context manager removes it at the end as its user expects."""
    with tempfile.NamedTemporaryFile(suffix=".db") as handle:
        inode = os.fstat(handle.fileno()).st_ino
        saved = _use(handle.name)
        assert os.stat(handle.name).st_ino == inode
        handle.seek(0)
        assert handle.read(16) == MAGIC
        with SessionManager(db_path=handle.name) as manager:
            assert manager.load_conversation(str(saved.id)) is not None
        name = handle.name
    assert not os.path.exists(name)


def test_touched_file_by_url_and_by_store(tmp_path: Path) -> None:
    """``touch`` then open, by ``url=`` and with SQLiteStore directly: both give a new store."""
    by_url = tmp_path / "by-url.db"
    by_url.touch()
    with SessionManager(url=f"sqlite:///{by_url}") as manager:
        manager.save_conversation(_chat("otters"))
        assert len(manager.list_conversations()) == 1
    direct = tmp_path / "direct.db"
    direct.touch()
    store = SQLiteStore(direct)
    store.close()
    assert _user_version(direct) == schema.LATEST
    assert sorted(p.name for p in tmp_path.iterdir()) == ["by-url.db", "direct.db"], "nothing left beside them"


def test_zero_length_file_with_a_key_becomes_an_encrypted_store(tmp_path: Path) -> None:
    """With a key, the empty file becomes an SQLCipher store from its first page: no plain
    SQLite header on disk, readable with the key only."""
    pytest.importorskip("sqlcipher3", reason="the [sqlcipher] extra is not installed")
    path = tmp_path / "keyed.db"
    path.touch()
    saved = _use(str(path), key="correct horse battery staple")
    assert not path.read_bytes().startswith(MAGIC)
    assert b"walruses" not in path.read_bytes()
    with SessionManager(db_path=str(path), key="correct horse battery staple") as manager:
        assert manager.load_conversation(str(saved.id)) is not None
    with pytest.raises(CorruptStorageError):
        SessionManager(db_path=str(path))
    with pytest.raises(EncryptionKeyError):
        SessionManager(db_path=str(path), key="another passphrase")


def _open_and_save(path: str, start: multiprocessing.synchronize.Barrier, index: int) -> None:  # type: ignore[name-defined]
    start.wait()
    with SessionManager(db_path=path) as manager:
        manager.save_conversation(_chat(f"creature{index}"))


@pytest.mark.slow
def test_processes_opening_one_empty_file_at_once(tmp_path: Path) -> None:
    """Four processes open the same zero-length file at the same moment and each saves:
    the schema is made once, every save is there, and the file is sound."""
    path = tmp_path / "shared.db"
    path.touch()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    workers = [context.Process(target=_open_and_save, args=(str(path), start, i)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    with SessionManager(db_path=str(path)) as manager:
        assert sorted(c["title"] for c in manager.list_conversations()) == [f"about creature{i}" for i in range(4)]
        for i in range(4):
            assert len(manager.search_conversations(f"creature{i}")) == 1
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema.LATEST
    finally:
        db.close()


@pytest.mark.parametrize("failing", range(schema.LATEST))
def test_a_failure_while_creating_leaves_a_file_the_next_open_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: int
) -> None:
    """If creating the schema fails at any migration, the steps before it stay committed
    whole (or the file stays empty) and the next open completes the store."""
    path = tmp_path / "interrupted.db"
    path.touch()
    real = schema.MIGRATIONS[failing]

    def broken(db: sqlite3.Connection) -> None:
        real(db)
        raise sqlite3.OperationalError("disk I/O error")

    patched = list(schema.MIGRATIONS)
    patched[failing] = broken
    monkeypatch.setattr(schema, "MIGRATIONS", patched)
    with pytest.raises(OSError):
        SQLiteStore(path)
    monkeypatch.undo()
    assert path.stat().st_size == 0 or _user_version(path) == failing
    _use(str(path))
    assert _user_version(path) == schema.LATEST


def test_a_stale_wal_beside_an_emptied_file_is_not_replayed(tmp_path: Path) -> None:
    """A database emptied to zero length (``> chats.db``) with an old ``-wal`` left beside it
    opens as a new, empty, sound store: the old log is not replayed into it (SQLite drops a
    log beside an empty database), and nothing is left beside it once closed."""
    path = tmp_path / "emptied.db"
    old = SessionManager(db_path=str(path))
    old.save_conversation(_chat("herons"))
    stale = (tmp_path / "emptied.db-wal").read_bytes()
    assert stale, "the store writes through its WAL"
    old.close()
    path.write_bytes(b"")
    (tmp_path / "emptied.db-wal").write_bytes(stale)
    with SessionManager(db_path=str(path)) as manager:
        assert manager.list_conversations() == []
        assert manager.search_conversations("herons") == []
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emptied.db"]
