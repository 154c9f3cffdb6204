"""What only the SQLite backend promises: URLs, pragmas, indexes, rollback, secure delete."""

from __future__ import annotations

import sqlite3
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import (
    InvalidInputError,
    SessionManager,
    StorageError,
    open_store,
)
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.backends.sqlite import store as store_module
from qv_session_manager.backends.sqlite.matching import to_fts5
from qv_session_manager.backends.sqlite.rows import digest, index_body
from qv_session_manager.protocol import Capability, ConversationFilter
from qv_session_manager.query import parse
from qv_session_manager.testing.contract import conversation, message
from qv_session_manager.text import tokens


def pragma(store: SQLiteStore, name: str):
    return store._db.execute(f"PRAGMA {name}").fetchone()[0]


def test_url_forms(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///relative.db")
    absolute = open_store(f"sqlite:///{tmp_path}/absolute.db")  # four slashes in all
    in_memory = open_store("sqlite://")
    try:
        assert (tmp_path / "relative.db").exists() and (tmp_path / "absolute.db").exists()
        assert Capability.PERSISTENT in relative.capabilities
        assert Capability.PERSISTENT not in in_memory.capabilities
    finally:
        for store in (relative, absolute, in_memory):
            store.close()
    bad_urls = [
        "sqlite:///x.db?journal=off",
        "sqlite://host/x.db",
        "sqlite:///",
        "sqlite:///a?b.db",
        "sqlite:///f.db?foo",
        "sqlite:///%FF.db",
        "sqlite:///x.db?busy_timeout=inf",
        "sqlite:///x.db?busy_timeout=-5",
        "sqlite:///x.db?busy_timeout=soon",
        "memory://x?foo=1",
    ]
    for url in bad_urls:
        with pytest.raises(InvalidInputError):
            open_store(url).close()
            pytest.fail(f"{url} must be refused")
    for path, options in [(123, {}), ("x.db", {"foo": 1}), ("x.db", {"busy_timeout": float("nan")}), ("memory://", {})]:
        with pytest.raises(InvalidInputError):
            SessionManager(path, **options).close()  # type: ignore[arg-type]
            pytest.fail(f"SessionManager({path!r}, **{options}) must be refused")
    assert not (tmp_path / "memory:").exists()


def test_connection_settings(tmp_path: Path) -> None:
    durable = SQLiteStore(tmp_path / "a.db")
    fast = open_store(f"sqlite:///{tmp_path}/b.db?synchronous=normal&busy_timeout=2")
    try:
        assert pragma(durable, "journal_mode") == "wal"
        assert pragma(durable, "foreign_keys") == 1
        assert pragma(durable, "synchronous") == 2  # FULL
        assert pragma(durable, "secure_delete") == 1
        assert pragma(durable, "busy_timeout") == 30_000
        assert pragma(fast, "synchronous") == 1  # NORMAL
        assert pragma(fast, "busy_timeout") == 2_000
    finally:
        durable.close()
        fast.close()
    with pytest.raises(InvalidInputError):
        SQLiteStore(tmp_path / "c.db", synchronous="off")  # type: ignore[arg-type]


def test_a_file_uri_lookalike_is_a_plain_file_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore("file:x.db?mode=memory")
    store.save(conversation("kept"), [])
    store.close()
    reopened = SQLiteStore("file:x.db?mode=memory")
    assert reopened.get("kept") is not None, "data must persist in a real file"
    reopened.close()


def plan(store: SQLiteStore, sql: str, params) -> str:
    return " | ".join(row[-1] for row in store._db.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_reads_use_indexes_not_scans(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "plan.db")
    try:
        load = plan(store, "SELECT id FROM messages WHERE conversation_pk = ? ORDER BY position, pk", (1,))
        assert "SCAN messages" not in load, load
        listing = plan(store, "SELECT id FROM conversations c ORDER BY c.updated_key DESC, c.id DESC LIMIT 20", ())
        assert "SCAN c USING INDEX conversations_by_updated" in listing or "COVERING INDEX" in listing, listing
        search = plan(
            store,
            "SELECT m.pk FROM message_index JOIN messages m ON m.pk = message_index.rowid WHERE message_index MATCH ?",
            (to_fts5(parse("python")),),
        )
        assert "VIRTUAL TABLE INDEX" in search and "SCAN m " not in search + " ", search
    finally:
        store.close()


def test_a_failure_inside_the_transaction_rolls_back_everything(tmp_path: Path, monkeypatch) -> None:
    store = SQLiteStore(tmp_path / "rollback.db")
    record = conversation("c", title="before")
    store.save(record, [message("one", id="a")])
    before = store.load("c")
    real = store_module.body_column

    def explode(text):
        if text == "explode":
            raise RuntimeError("simulated failure after the first writes")
        return real(text)

    monkeypatch.setattr(store_module, "body_column", explode)
    changed = conversation("c", title="after")
    with pytest.raises(RuntimeError):
        store.save(changed, [message("edited", id="a"), message("fine", id="b"), message("explode", id="c")])
    monkeypatch.setattr(store_module, "body_column", real)
    assert store.load("c") == before
    assert [h.conversation.id for h in store.search(parse("before"), ConversationFilter())] == ["c"]
    assert store.search(parse("fine"), ConversationFilter()) == []
    store.save(changed, [message("fine", id="b")])  # the write lock was released
    assert [m.id for m in store.load("c").messages] == ["a", "b"]
    store.close()


def _file_bytes(directory: Path, name: str) -> bytes:
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.name.startswith(name))


@pytest.mark.parametrize("purge", ["immediate", "on_close"])
def test_deleted_text_does_not_stay_in_the_file(tmp_path: Path, purge: str) -> None:
    path = tmp_path / "secret.db"
    secret = "zqxjvsecretword"
    with SessionManager(db_path=path, purge=purge) as manager:
        keep = Conversation(title="keep")
        keep.add_user_message("ordinary words " * 50)
        manager.save_conversation(keep)
        gone = Conversation(title=f"title {secret}title")
        gone.add_user_message(f"the {secret} message " * 20)
        manager.save_conversation(gone)
        assert manager.search_conversations(secret)
        assert manager.delete_conversation(str(gone.id)) is True
        assert manager.search_conversations(secret) == []
        if purge == "on_close":
            assert secret.encode() in _file_bytes(tmp_path, "secret.db"), "the index keeps it until a purge"
            assert manager.store.purge() is True  # type: ignore[attr-defined]
            assert manager.store.purge() is False, "nothing is left to purge"  # type: ignore[attr-defined]
        assert secret.encode() not in _file_bytes(tmp_path, "secret.db"), (
            "the deleted text is still in the database or its WAL"
        )
    assert secret.encode() not in _file_bytes(tmp_path, "secret.db")


def test_a_pending_purge_survives_a_crash_and_runs_at_close(tmp_path: Path) -> None:
    path = tmp_path / "secret.db"
    secret = "zqxjvsecretword"
    store = SQLiteStore(path)
    store.save(conversation("gone"), [message(f"the {secret} message")])
    store.save(conversation("kept"), [message("keep me", id="k"), message(f"{secret} too", id="s")])
    assert store.search(parse(secret), ConversationFilter())  # indexes the new rows
    assert store.delete("gone") and store.delete_message("kept", "s")
    store._db.close()  # the process dies: no close(), no purge
    assert secret.encode() in _file_bytes(tmp_path, "secret.db")
    reopened = SQLiteStore(path)
    reopened.close()
    assert secret.encode() not in _file_bytes(tmp_path, "secret.db")
    again = SQLiteStore(path, purge="immediate")
    loaded = again.load("kept")
    assert loaded is not None and [m.content for m in loaded.messages] == ["keep me"]
    again.close()


def test_deleting_rows_that_never_reached_the_index_needs_no_purge(tmp_path: Path) -> None:
    """New rows wait for the search index; deleting them leaves no entry to purge and no text."""
    path = tmp_path / "waiting.db"
    secret = "zqxjvwaitingword"
    store = SQLiteStore(path)
    store.save(conversation("gone", title=f"a {secret} title"), [message(f"the {secret} message")])
    assert [hit.conversation.id for hit in store.search(parse(secret), ConversationFilter())] == ["gone"]
    store.save(conversation("fresh", title=f"{secret} again"), [message(f"{secret} once more")])
    assert store.delete("fresh") is True
    assert store.purge() is False, "nothing of 'fresh' was ever in the index"
    store._db.close()  # no close(): the text must already be gone
    assert secret.encode() in _file_bytes(tmp_path, "waiting.db"), "'gone' is still stored"
    reopened = SQLiteStore(path)
    assert reopened.delete("gone") is True
    reopened.close()
    assert secret.encode() not in _file_bytes(tmp_path, "waiting.db")


def test_close_still_closes_when_the_purge_cannot_run(tmp_path: Path, caplog) -> None:
    path = tmp_path / "busy.db"
    store = SQLiteStore(path, busy_timeout=0)
    store.save(conversation("gone"), [message("bye")])
    assert store.search(parse("bye"), ConversationFilter())  # indexes it
    store.delete("gone")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        store.close()
        assert "could not purge" in caplog.text
        with pytest.raises(StorageError):
            store.get("gone")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    reopened = SQLiteStore(path)
    assert reopened.purge() is True, "the purge is still due after the failed attempt"
    reopened.close()


def test_purge_option_is_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        SQLiteStore(tmp_path / "x.db", purge="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        SessionManager(url=f"sqlite:///{tmp_path / 'y.db'}?purge=never")


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "closed.db")
    store.close()
    store.close()
    with pytest.raises(StorageError):
        store.load("x")


# Engine errors translated (a size limit gives StorageFullError, the sqlite3 error as its
# cause, nothing written): tests/reliability/test_rel_faults.py.


_index_texts = st.one_of(
    st.text(alphabet=string.printable),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    st.lists(
        st.sampled_from(
            [
                "Hello",
                ", ",
                "_",
                "x" * 200,
                "Y" * 201,
                "é",
                "東京",
                "\x00",
                "42",
                "—",
                "“",
                "ß",
                "e\u0301",
                "²",
                "ǅ",
                "ｱ",
            ]
        )
    ).map("".join),
)


_column = st.one_of(st.none(), st.text(alphabet="a'\"(),\\ \x00\ud800é", max_size=6))
_message_columns = st.tuples(st.text(max_size=3), _column, _column, _column, _column, _column, _column)


@given(_message_columns, _message_columns)
def test_message_digests_are_equal_exactly_when_the_columns_are(a: tuple, b: tuple) -> None:
    """The fingerprint that lets a save skip unchanged messages never confuses two different rows."""
    assert (digest(*a) == digest(*b)) == (a == b)


@given(_message_columns)
def test_a_message_digest_depends_on_where_the_content_ends(a: tuple) -> None:
    """Moving characters between the content and the next column changes the digest."""
    role, content, created_at, *rest = a
    moved = (role, (content or "") + "x", (created_at or "")[1:], *rest)
    assert digest(*a) != digest(*moved)


@given(_index_texts)
def test_fts5_indexes_exactly_the_shared_tokens(text: str) -> None:
    """Whatever index_body hands FTS5 (raw ASCII or joined tokens), FTS5 sees tokens(text)."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5 (body, tokenize = 'ascii')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab (t, 'instance')")
    db.execute("INSERT INTO t (rowid, body) VALUES (1, ?)", (index_body(text),))
    seen = [term for (term,) in db.execute("SELECT term FROM v ORDER BY offset")]
    db.close()
    assert seen == tokens(text)
