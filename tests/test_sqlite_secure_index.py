"""FTS5 secure-delete (SQLite 3.42+): deleted text leaves the index at once, and a purge
costs what was written since the last one, not the whole index.

This Python's own SQLite may be older; ``driver="pysqlite3"`` brings a newer one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qv_session_manager import InvalidInputError, SchemaVersionError, SessionManager
from qv_session_manager.backends.sqlite import SQLiteStore, drivers, secure_index
from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.query import parse
from qv_session_manager.testing.contract import conversation, message

pysqlite3 = pytest.importorskip("pysqlite3.dbapi2", reason="driver='pysqlite3' needs pysqlite3-binary")
STDLIB_IS_OLD = drivers.sqlite_version(sqlite3) < secure_index.SINCE
SECRET = "zqxjvsecretword"


def _file_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.name.startswith("chats.db"))


def _filled(path: Path, driver: str, size: int = 40) -> SQLiteStore:
    store = SQLiteStore(path, driver=driver)
    for number in range(size):
        store.save(conversation(f"keep{number}", title=f"kept {number}"), [message(f"ordinary words {number} " * 20)])
    store.save(conversation("gone", title=f"a {SECRET}title"), [message(f"the {SECRET} message " * 10, id="m")])
    store.save(conversation("kept", title="kept"), [message("keep me", id="k"), message(f"{SECRET}x too", id="s")])
    assert {hit.conversation.id for hit in store.search(parse(SECRET), ConversationFilter())} == {"gone"}
    return store


def _statements(store: SQLiteStore) -> list[str]:
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    return seen


def test_a_newer_sqlite_turns_secure_delete_on_for_both_indexes(tmp_path: Path) -> None:
    store = _filled(tmp_path / "chats.db", "pysqlite3")
    assert store._driver is pysqlite3
    assert secure_index.is_on(store._db)
    store.close()


@pytest.mark.skipif(not STDLIB_IS_OLD, reason="this Python's SQLite has secure-delete itself")
def test_an_older_sqlite_keeps_the_old_format(tmp_path: Path) -> None:
    store = _filled(tmp_path / "chats.db", "sqlite3")
    assert not secure_index.is_on(store._db)
    store.close()


def _merged(store: SQLiteStore) -> bool:
    """Close ``store``; whether its purge merged the index."""
    statements = _statements(store)
    store.close()
    return any("'optimize'" in statement for statement in statements)


@pytest.mark.parametrize("driver", ["sqlite3", "pysqlite3"])
def test_few_deletes_are_purged_one_by_one_where_sqlite_can(tmp_path: Path, driver: str) -> None:
    store = _filled(tmp_path / "chats.db", driver, size=500)
    assert store.delete_message("kept", "s")
    assert SECRET.encode() in _file_bytes(tmp_path)
    assert _merged(store) is (driver == "sqlite3" and STDLIB_IS_OLD)
    data = _file_bytes(tmp_path)
    assert f"{SECRET}x".encode() not in data, "the deleted text is still in the database or its WAL"
    assert SECRET.encode() in data, "the text of 'gone' is still stored"
    reopened = SQLiteStore(tmp_path / "chats.db", driver=driver)
    assert [m.id for m in reopened.load("kept").messages] == ["k"]  # type: ignore[union-attr]
    assert len(reopened.list(ConversationFilter())) == 502
    assert secure_index.is_on(reopened._db) is (driver == "pysqlite3" or not STDLIB_IS_OLD)
    reopened.close()


@pytest.mark.parametrize("driver", ["sqlite3", "pysqlite3"])
def test_many_deletes_are_purged_by_one_merge(tmp_path: Path, driver: str) -> None:
    """Past 1 removal per REMOVAL_COST_IN_ENTRIES rows, merging the whole index is cheaper."""
    store = _filled(tmp_path / "chats.db", driver)
    for number in range(30):
        assert store.delete(f"keep{number}")
    assert store.delete("gone") and store.delete_message("kept", "s")
    assert not secure_index.removals_are_few(store._db)
    assert _merged(store) is True
    assert SECRET.encode() not in _file_bytes(tmp_path)
    reopened = SQLiteStore(tmp_path / "chats.db", driver=driver)
    assert secure_index.is_on(reopened._db) is (driver == "pysqlite3" or not STDLIB_IS_OLD), (
        "secure-delete is switched back on"
    )
    assert sorted(r.id for r in reopened.list(ConversationFilter())) == sorted(
        ["kept"] + [f"keep{n}" for n in range(30, 40)]
    )
    reopened.close()


@pytest.mark.parametrize("driver", ["sqlite3", "pysqlite3"])
def test_deletes_leave_their_entries_to_the_purge_and_no_search_reaches_them(tmp_path: Path, driver: str) -> None:
    store = _filled(tmp_path / "chats.db", driver)
    store.save(conversation("late", title="late"), [message(f"{SECRET} unindexed")])  # waits for the index
    assert store.delete("gone") and store.delete_message("kept", "s") and store.delete("late")
    waiting = store._db.execute("SELECT kind, count(*) FROM index_removals GROUP BY kind ORDER BY kind").fetchall()
    assert waiting == [("messages", 2), ("titles", 1)], "the unindexed row has no entry to remove"
    for query in (SECRET, f"{SECRET}title", f"{SECRET}x", "the message", "too"):
        assert [hit.conversation.id for hit in store.search(parse(query), ConversationFilter())] in ([], ["kept"])
    assert not {SECRET, f"{SECRET}title", f"{SECRET}x"} & store.indexed_tokens()
    assert store.purge() is True
    assert store._db.execute("SELECT count(*) FROM index_removals").fetchone() == (0,)
    assert store.purge() is False
    store.close()
    assert SECRET.encode() not in _file_bytes(tmp_path)


def test_an_older_file_with_a_pending_purge_gets_secure_delete_and_loses_its_leftovers(tmp_path: Path) -> None:
    store = _filled(tmp_path / "chats.db", "sqlite3")
    assert store.delete("gone")
    store._db.close()  # the process dies before its purge: the tokens stay in the segments
    assert SECRET.encode() in _file_bytes(tmp_path)
    newer = SQLiteStore(tmp_path / "chats.db", driver="pysqlite3")
    assert secure_index.is_on(newer._db)
    assert newer.purge() is True, "the purge stays due, for the WAL"
    assert newer.delete_message("kept", "s")
    newer.close()
    assert SECRET.encode() not in _file_bytes(tmp_path)


@pytest.mark.skipif(not STDLIB_IS_OLD, reason="this Python's SQLite reads secure-delete indexes")
@pytest.mark.parametrize("options", [{}, {"read_only": True}, {"immutable": True}], ids=["write", "ro", "immutable"])
def test_an_sqlite_too_old_for_the_index_is_refused_and_the_file_left_as_it_was(tmp_path: Path, options) -> None:
    path = tmp_path / "chats.db"
    _filled(path, "pysqlite3").close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(SchemaVersionError, match=r"secure-delete.*driver='pysqlite3'"):
        SQLiteStore(path, **options)
    with pytest.raises(SchemaVersionError):
        SessionManager(db_path=path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    again = SQLiteStore(path, driver="pysqlite3", **options)
    assert again.load("gone") is not None
    again.close()
    if options:
        return
    # Another program on the old SQLite (0.3.0, the sqlite3 shell) can still delete: the
    # triggers only record the entries, and the next purge removes them securely. It
    # cannot edit indexed text, which would need the index: the edit fails, changing nothing.
    other = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.DatabaseError, match="fts5"):
        other.execute("UPDATE messages SET content = 'edited' WHERE id = 'k'")
    other.execute("DELETE FROM conversations WHERE id = 'gone'")
    other.execute("DELETE FROM messages WHERE id = 's'")
    other.close()
    newer = SQLiteStore(path, driver="pysqlite3")
    assert newer.load("gone") is None and [m.content for m in newer.load("kept").messages] == ["keep me"]  # type: ignore[union-attr]
    assert newer.purge() is True
    newer.close()
    assert SECRET.encode() not in _file_bytes(tmp_path)


def test_the_driver_option_in_urls_and_its_errors(tmp_path: Path, monkeypatch) -> None:
    with SessionManager(url=f"sqlite:///{tmp_path / 'chats.db'}?driver=pysqlite3") as manager:
        assert manager.store._driver is pysqlite3  # type: ignore[attr-defined]
    with SessionManager(url=f"sqlite:///{tmp_path / 'other.db'}?driver=sqlite3") as manager:
        assert manager.store._driver is sqlite3  # type: ignore[attr-defined]
    with pytest.raises(InvalidInputError, match="driver must be one of pysqlite3, sqlite3"):
        SQLiteStore(tmp_path / "x.db", driver="mysql")
    with pytest.raises(InvalidInputError, match="SQLCipher"):
        SQLiteStore(tmp_path / "x.db", driver="pysqlite3", key=bytes(32))
    monkeypatch.setitem(drivers.MODULES, "pysqlite3", "no_such_module_here")
    with pytest.raises(InvalidInputError, match="pip install pysqlite3-binary"):
        SQLiteStore(tmp_path / "x.db", driver="pysqlite3")
    assert not (tmp_path / "x.db").exists()


def test_an_encrypted_store_deletes_securely(tmp_path: Path) -> None:
    pytest.importorskip("sqlcipher3", reason="needs the [sqlcipher] extra")
    store = SQLiteStore(tmp_path / "chats.db", key=bytes(32))
    store.save(conversation("c"), [message("hello")])
    assert secure_index.is_on(store._db) is (drivers.sqlite_version(store._driver) >= secure_index.SINCE)
    store.close()


@pytest.mark.parametrize("driver", ["sqlite3", "pysqlite3"])
def test_doctor_counts_waiting_removals_as_sound(tmp_path: Path, driver: str) -> None:
    from qv_session_manager.backends.sqlite import maintenance

    store = _filled(tmp_path / "chats.db", driver)
    store.save(conversation("folded", title="Ünïcode Tïtle"), [message("Straße — naïve café", id="u")])
    assert store.search(parse("strasse"), ConversationFilter())  # indexes it
    assert store.delete("gone") and store.delete("folded") and store.delete_message("kept", "s")
    assert store._db.execute("SELECT count(*) FROM index_removals").fetchone()[0] == 5
    assert maintenance.index_problems(store) == [], "entries waiting for the purge are expected"
    assert store.purge() is True
    assert maintenance.index_problems(store) == []
    store.close()
