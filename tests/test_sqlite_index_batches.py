"""SQLite schema 3: keys never reused, deletes that cascade in the file, and a search index filled in batches.

Rows saved recently wait for the search index (store.FLUSH_AT); every search must
find them all the same, whether it indexes them first or scans them (a file that
cannot be written), and deletes by any program must take their text and search
entries with them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from qv_session_manager.backends.sqlite import SQLiteStore, maintenance
from qv_session_manager.backends.sqlite import schema as sqlite_schema
from qv_session_manager.backends.sqlite import store as store_module
from qv_session_manager.cli import main
from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.query import parse
from qv_session_manager.testing import strategies
from qv_session_manager.testing.contract import conversation, message


def _bytes_of(directory: Path, name: str) -> bytes:
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.name.startswith(name))


def _waiting(store: SQLiteStore) -> tuple[int, int]:
    return tuple(store._db.execute(store_module._WAITING).fetchone())  # type: ignore[return-value]


def _hit_ids(store: SQLiteStore, text: str, order: str = "recent") -> list[tuple[str, str | None]]:
    hits = store.search(parse(text), ConversationFilter(), order=order)  # type: ignore[arg-type]
    return [(hit.conversation.id, hit.message_id) for hit in hits]


def test_new_rows_wait_for_the_index_until_a_batch_is_full(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "batches.db")
    try:
        store.save(conversation("first"), [message("alpha words", id="a")])
        assert _waiting(store) == (1, 1), "a small save writes no index entry"
        for number in range(store_module.FLUSH_AT - 2):
            store.append("first", [message(f"more text {number}", id=f"n{number}")])
        assert _waiting(store)[0] == store_module.FLUSH_AT - 1
        store.append("first", [message("the one that fills the batch", id="last")])
        assert _waiting(store) == (0, 0), "a full batch is indexed in the save's own transaction"
    finally:
        store.close()


def test_a_search_indexes_waiting_rows_first_and_finds_them(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "search.db")
    try:
        store.save(conversation("c", title="Gardening"), [message("tomatoes need sun", id="m")])
        assert _waiting(store) != (0, 0)
        assert _hit_ids(store, "tomatoes") == [("c", "m")]
        assert _hit_ids(store, "gardening") == [("c", None)]
        assert _waiting(store) == (0, 0)
    finally:
        store.close()


def test_close_indexes_what_waits(tmp_path: Path) -> None:
    path = tmp_path / "close.db"
    store = SQLiteStore(path)
    store.save(conversation("c"), [message("waiting words", id="m")])
    store.close()
    reopened = SQLiteStore(path)
    try:
        assert _waiting(reopened) == (0, 0)
        assert maintenance.index_problems(reopened) == []
    finally:
        reopened.close()


@settings(max_examples=40)
@given(
    saved=st.lists(st.tuples(strategies.vocabulary_text, strategies.vocabulary_text), min_size=1, max_size=6),
    indexed=st.integers(min_value=0, max_value=6),
    query=strategies.queries,
    order=st.sampled_from(["recent", "relevance"]),
)
def test_scanning_waiting_rows_finds_what_the_index_finds(
    tmp_path_factory: pytest.TempPathFactory, saved: list[tuple[str, str]], indexed: int, query: str, order: str
) -> None:
    """A store that cannot index (a read-only file) scans waiting rows: the hits equal the index's."""
    directory = tmp_path_factory.mktemp("scan")
    scanning = SQLiteStore(directory / "scan.db")
    indexing = SQLiteStore(directory / "index.db")
    try:
        for store in (scanning, indexing):
            for number, (title, content) in enumerate(saved):
                store.save(conversation(f"c{number}", title=title), [message(content, id=f"m{number}")])
                if number + 1 == indexed:
                    store._flush_waiting()  # some rows indexed, the later ones waiting
        scanning._may_flush = False
        found = _hit_ids(scanning, query, order)
        assert indexed >= len(saved) or _waiting(scanning) != (0, 0), "the scan had rows to scan"
        expected = _hit_ids(indexing, query, order)
        assert parse(query).is_empty or _waiting(indexing) == (0, 0), "a search indexes waiting rows first"
        if order == "recent":
            assert found == expected
        else:  # the scanned rows' BM25 statistics are their own: same hits, order may differ
            assert sorted(found) == sorted(expected)
    finally:
        scanning.close()
        indexing.close()


def test_a_read_only_store_scans_waiting_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "readonly.db"
    writer = SQLiteStore(path)
    writer.save(conversation("c"), [message("parsnips in winter", id="m")])
    writer._db.close()  # the writer dies before indexing

    reader = SQLiteStore(path)
    try:
        monkeypatch.setattr(
            SQLiteStore,
            "_transaction",
            _refusing_writes(SQLiteStore._transaction),  # type: ignore[arg-type]
        )
        assert _hit_ids(reader, "parsnips") == [("c", "m")]
        assert reader._may_flush is False, "after a refused write the store stops trying"
        assert _hit_ids(reader, "winter") == [("c", "m")]
    finally:
        monkeypatch.undo()
        reader.close()


def _refusing_writes(transaction):  # type: ignore[no-untyped-def]
    def patched(self, doing, *, write):  # type: ignore[no-untyped-def]
        if write:
            raise store_module.ReadOnlyStorageError(f"{doing}: attempt to write a readonly database")
        return transaction(self, doing, write=write)

    return patched


# -- deletes by other programs ------------------------------------------------------


def test_a_delete_without_foreign_keys_cascades_and_removes_search_entries(tmp_path: Path) -> None:
    """What qv-session-manager 0.3.0 or the sqlite3 shell do: delete the conversation row, foreign keys off."""
    path = tmp_path / "foreign.db"
    secret = "zqxjvforeignword"
    store = SQLiteStore(path)
    store.save(conversation("gone", title=f"{secret} title"), [message(f"the {secret} text", id="g")])
    assert _hit_ids(store, secret) == [("gone", None)]  # indexed now
    store.close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA foreign_keys = OFF")
    other.execute("DELETE FROM conversations WHERE id = 'gone'")
    other.close()
    reopened = SQLiteStore(path)
    try:
        assert reopened._db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
        reopened.save(conversation("new"), [message("hello again", id="n")])
        loaded = reopened.load("new")
        assert loaded is not None and [m.id for m in loaded.messages] == ["n"]
        assert _hit_ids(reopened, secret) == []
        assert maintenance.index_problems(reopened) == []
    finally:
        reopened.close()
    assert secret.encode() not in _bytes_of(tmp_path, "foreign.db"), "the purge at close removes the tokens"


def test_keys_are_never_reused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "keys.db")
    try:
        store.save(conversation("a"), [message("one", id="x")])
        (conversation_key, message_key) = store._db.execute(
            "SELECT c.pk, m.pk FROM conversations c JOIN messages m ON m.conversation_pk = c.pk"
        ).fetchone()
        assert store.delete("a")
        store.save(conversation("b"), [message("two", id="y")])
        (new_conversation_key, new_message_key) = store._db.execute(
            "SELECT c.pk, m.pk FROM conversations c JOIN messages m ON m.conversation_pk = c.pk"
        ).fetchone()
        assert new_conversation_key > conversation_key and new_message_key > message_key
    finally:
        store.close()


def test_an_edit_by_another_program_keeps_the_index_right(tmp_path: Path) -> None:
    path = tmp_path / "edit.db"
    store = SQLiteStore(path)
    store.save(conversation("c"), [message("original wording", id="m")])
    assert _hit_ids(store, "original") == [("c", "m")]
    store.close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("UPDATE messages SET content = 'replacement wording' WHERE id = 'm'")
    other.close()
    reopened = SQLiteStore(path)
    try:
        assert _hit_ids(reopened, "original") == []
        assert _hit_ids(reopened, "replacement") == [("c", "m")]
        assert maintenance.index_problems(reopened) == []
    finally:
        reopened.close()


# -- files written before schema 3 ----------------------------------------------------


def _schema_2_file(path: Path) -> sqlite3.Connection:
    """An empty database as the previous release created it (schema 2), open for writing rows."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for migration in sqlite_schema.MIGRATIONS[:2]:
        migration(db)
    db.execute("PRAGMA user_version = 2")
    return db


def _add(db: sqlite3.Connection, conversation_id: str, created: str, messages: list[tuple[str, str, str]]) -> int:
    """Insert a conversation and its messages (id, content, created_at) as schema 2 did, with index entries."""
    pk = db.execute(
        """INSERT INTO conversations (id, title, model_name, created_at, updated_at, created_key, updated_key)
           VALUES (?, NULL, 'llama3', ?, ?, ?, ?)""",
        (conversation_id, created, created, created + ".000000", created + ".000000"),
    ).lastrowid
    start = db.execute("SELECT next_position FROM conversations WHERE pk = ?", (pk,)).fetchone()[0]
    for position, (message_id, content, at) in enumerate(messages, start=start):
        message_pk = db.execute(
            """INSERT INTO messages (conversation_pk, id, position, role, content, created_at, digest)
               VALUES (?, ?, ?, 'user', ?, ?, x'00')""",
            (pk, message_id, position, content, at),
        ).lastrowid
        db.execute("INSERT INTO message_index (rowid, body) VALUES (?, ?)", (message_pk, content))
    db.execute("UPDATE conversations SET next_position = ? WHERE pk = ?", (start + len(messages), pk))
    return int(pk)  # type: ignore[arg-type]


def test_upgrading_drops_messages_left_by_deletes_that_did_not_cascade(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    db = _schema_2_file(path)
    _add(db, "kept", "2025-01-01T10:00:00", [("k", "kept words", "2025-01-01T10:00:00")])
    _add(db, "gone", "2025-01-02T10:00:00", [("g", "private zqxjvleftword", "2025-01-02T10:00:00")])
    db.execute("DELETE FROM conversations WHERE id = 'gone'")  # foreign keys off: the message stays
    db.close()
    store = SQLiteStore(path)
    try:
        assert maintenance.schema_version(store) == sqlite_schema.LATEST
        assert maintenance.orphaned_messages(store) == 0
        store.save(conversation("new"), [message("fresh", id="f")])
        loaded = store.load("new")
        assert loaded is not None and [m.id for m in loaded.messages] == ["f"]
        assert _hit_ids(store, "zqxjvleftword") == []
        assert maintenance.index_problems(store) == []
    finally:
        store.close()
    assert b"zqxjvleftword" not in _bytes_of(tmp_path, "v2.db")


def test_doctor_finds_and_repairs_messages_a_later_conversation_took_over(tmp_path: Path) -> None:
    """A file where the leak already happened: a new conversation got the freed key and shows old messages."""
    path = tmp_path / "leaked.db"
    db = _schema_2_file(path)
    _add(db, "kept", "2025-01-01T10:00:00", [("k", "kept words", "2025-01-01T10:00:00")])
    freed = _add(
        db,
        "gone",
        "2025-01-02T10:00:00",
        [
            ("g1", "private zqxjvadopted one", "2025-01-02T10:00:00"),
            ("g2", "private zqxjvadopted two", "2025-01-02T10:01:00"),
        ],
    )
    db.execute("DELETE FROM conversations WHERE id = 'gone'")
    assert _add(db, "heir", "2025-03-01T10:00:00", [("h", "my own message", "2025-03-01T10:00:00")]) == freed
    db.close()
    url = f"sqlite:///{path}"
    found = CliRunner().invoke(main, ["--url", url, "doctor"])
    assert found.exit_code == 1, found.output
    assert "2 FOUND" in found.stdout and "conversation heir: 2 messages" in found.stdout
    store = SQLiteStore(path)
    heir = store.load("heir")
    assert heir is not None and len(heir.messages) == 3, "doctor without --repair changes nothing"
    store.close()
    repaired = CliRunner().invoke(main, ["--url", url, "doctor", "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert "2 removed" in repaired.stdout
    store = SQLiteStore(path)
    try:
        heir = store.load("heir")
        kept = store.load("kept")
        assert heir is not None and [m.id for m in heir.messages] == ["h"]
        assert kept is not None and [m.id for m in kept.messages] == ["k"]
        assert _hit_ids(store, "zqxjvadopted") == []
        assert maintenance.adopted_leftovers(store) == [] and maintenance.index_problems(store) == []
    finally:
        store.close()
    assert b"zqxjvadopted" not in _bytes_of(tmp_path, "leaked.db")
    assert CliRunner().invoke(main, ["--url", url, "doctor"]).exit_code == 0


def test_a_replace_is_not_mistaken_for_leftovers(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "replace.db")
    try:
        store.save(conversation("c"), [message("a", id="a"), message("b", id="b"), message("c", id="c")])
        store.save(conversation("c"), [message("c", id="c"), message("d", id="d")], replace=True)
        store.save(conversation("c"), [message("e", id="e")])
        assert maintenance.adopted_leftovers(store) == []
        assert maintenance.orphaned_messages(store) == 0
    finally:
        store.close()
