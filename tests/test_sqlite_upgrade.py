"""Opening databases written by qv-session-manager 0.3.0 (the seed) and older.

Seed databases are built three ways, all holding the same data (``CONVERSATIONS``):

- ``seed_ddl``: the seed 0.3.0 DDL copied verbatim, rows inserted with plain sqlite3
  exactly as the seed's ``save_conversation`` does (``INSERT OR REPLACE``,
  ``json.dumps`` metadata, ``isoformat`` timestamps);
- ``old_ddl``: the older layout without ``model_name`` (the DDL of the seed README),
  filled the same way;
- ``seed_package``: the seed module itself (imported by path from /tmp/seedpkg)
  saving qv-ollama-sdk objects. When that package is not available this variant
  falls back to the ``seed_ddl`` build, so the test still runs.

The data has several conversations, messages with identical ``created_at`` (their
order must then follow insertion, i.e. rowid, order), non-ASCII text, an empty
conversation, aware timestamps, and orphan messages of a conversation the seed
deleted (it never enabled foreign keys): orphans must not survive the upgrade.

Also checked: files that are not seed databases (a foreign ``conversations``
table, a newer schema, garbage files) are refused with the documented error and
left byte-for-byte untouched, while a zero-length file is, as for sqlite3, an empty
database that becomes a new store (more in ``test_sqlite_zero_length.py``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sqlite3
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

from qv_session_manager import CorruptStorageError, SchemaVersionError, SessionManager
from qv_session_manager.backends.sqlite.schema import LATEST

from seed_layouts import OLD_DDL, SEED_DDL

SEED_MODULE_PATH = Path("/tmp/seedpkg/qv_session_manager/qv_session_manager/session_manager.py")


# -- the data --------------------------------------------------------------------------


@dataclass
class Msg:
    id: str
    role: str
    content: str
    created_at: str
    metadata: dict = field(default_factory=dict)


@dataclass
class Conv:
    id: str
    title: str
    model_name: str
    created_at: str
    updated_at: str
    metadata: dict
    messages: list[Msg]  # in insertion (rowid) order, which is not always the expected order


def _uid(prefix: str) -> str:
    """A fixed UUID string starting with ``prefix`` (hex), to control id sort order."""
    return str(uuid.UUID(prefix.ljust(32, "0")))


TIE = "2025-01-20T09:00:00.500000"

RESUME = Conv(
    id=_uid("c1"),
    title="Résumé review",
    model_name="gemma3:1b",
    created_at="2025-01-20T09:00:00",
    updated_at="2025-01-20T09:05:00.123456",
    metadata={"topic": "career", "language": "fr", "tags": ["cv", "emploi"], "rating": 4.5},
    messages=[
        # Three messages with one created_at: order must be insertion order, although
        # their ids sort the other way round.
        Msg(_uid("f3"), "system", "Tu es un conseiller d'orientation.", TIE),
        Msg(
            _uid("b2"),
            "user",
            "Pouvez-vous relire mon Résumé ? Ça commence par « Naïve café ».",
            TIE,
            {"source": "upload"},
        ),
        Msg(_uid("a1"), "assistant", "Bien sûr ! Envoyez-le-moi.", TIE),
        Msg(_uid("05"), "user", "Voilà, merci.", "2025-01-20T09:04:59"),
    ],
)
TOKYO = Conv(
    id=_uid("c2"),
    title="旅行の相談",
    model_name="llama3",
    created_at="2025-01-21T08:00:00+09:00",
    updated_at="2025-01-21T08:10:00+09:00",
    metadata={"topic": "travel", "city": "東京"},
    messages=[
        # Inserted out of chronological order: created_at decides, as in the seed.
        Msg(_uid("d2"), "assistant", "晴れです。Sunny with light wind.", "2025-01-21T08:01:00+09:00"),
        Msg(_uid("d1"), "user", "東京の天気はどうですか", "2025-01-21T08:00:30+09:00"),
        Msg(_uid("d3"), "user", "ありがとう 🌸", "2025-01-21T08:02:00+09:00"),
    ],
)
JAVASCRIPT = Conv(
    id=_uid("c3"),
    title="JavaScript Tutorial",
    model_name="mistral",
    created_at="2025-01-19T10:00:00",
    updated_at="2025-01-19T10:00:02",
    metadata={"topic": "web-development", "difficulty": "beginner", "language": "javascript"},
    messages=[
        Msg(_uid("e1"), "system", "You are an experienced web developer.", "2025-01-19T10:00:00.000001"),
        Msg(_uid("e2"), "user", "Explain closures in JavaScript.", "2025-01-19T10:00:01"),
    ],
)
EMPTY = Conv(
    id=_uid("c4"),
    title="Kubernetes notes",
    model_name="llama3",
    created_at="2024-12-31T23:59:59.999999",
    updated_at="2024-12-31T23:59:59.999999",
    metadata={},
    messages=[],
)
#: Saved, then deleted by the seed: its messages stay behind as orphans.
DELETED = Conv(
    id=_uid("c5"),
    title="Zebrafish genetics",
    model_name="llama3",
    created_at="2025-01-22T12:00:00",
    updated_at="2025-01-22T12:00:01",
    metadata={"topic": "biology"},
    messages=[
        Msg(_uid("99"), "user", "Tell me about zebrafish fins.", "2025-01-22T12:00:00"),
        Msg(_uid("98"), "assistant", "Zebrafish regenerate their fins.", "2025-01-22T12:00:01"),
    ],
)
#: Orphans whose conversation row never existed at all.
STRAY_CONVERSATION_ID = _uid("c6")
STRAY = [Msg(_uid("97"), "user", "A stray platypus message.", "2025-01-23T00:00:00")]

CONVERSATIONS = [RESUME, TOKYO, JAVASCRIPT, EMPTY]
ORPHAN_IDS = {m.id for m in DELETED.messages + STRAY}


def _seed_written_timestamps() -> list[str]:
    convs = CONVERSATIONS + [DELETED]
    return (
        [t for c in convs for t in (c.created_at, c.updated_at)]
        + [m.created_at for c in convs for m in c.messages]
        + [m.created_at for m in STRAY]
    )


# The seed stored datetime.isoformat() output, so every timestamp above is in that form.
assert all(datetime.fromisoformat(t).isoformat() == t for t in _seed_written_timestamps())

#: Expected message order per conversation (seed order: created_at, then rowid).
EXPECTED_ORDER = {
    RESUME.id: [_uid("f3"), _uid("b2"), _uid("a1"), _uid("05")],
    TOKYO.id: [_uid("d1"), _uid("d2"), _uid("d3")],
    JAVASCRIPT.id: [_uid("e1"), _uid("e2")],
    EMPTY.id: [],
}
#: list_conversations order: most recently updated first. TOKYO (08:10+09:00 on the 21st)
#: is 23:10 UTC on the 20th: later than RESUME both as an instant and as text.
EXPECTED_LIST_ORDER = [TOKYO.id, RESUME.id, JAVASCRIPT.id, EMPTY.id]


# -- the three ways of building a seed database -----------------------------------------


def _insert_seed_style(db: sqlite3.Connection, conv: Conv, *, with_model_name: bool) -> None:
    """What the seed's save_conversation executes for one conversation."""
    if with_model_name:
        db.execute(
            """
                INSERT OR REPLACE INTO conversations (id, title, model_name, created_at, updated_at, metadata)
                VALUES (?, ?, ?, ?, ?, ?)
                """,
            (conv.id, conv.title, conv.model_name, conv.created_at, conv.updated_at, json.dumps(conv.metadata)),
        )
    else:
        db.execute(
            "INSERT OR REPLACE INTO conversations (id, title, created_at, updated_at, metadata) VALUES (?, ?, ?, ?, ?)",
            (conv.id, conv.title, conv.created_at, conv.updated_at, json.dumps(conv.metadata)),
        )
    for m in conv.messages:
        db.execute(
            """
                    INSERT OR REPLACE INTO messages (id, conversation_id, role, content, created_at, metadata)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
            (m.id, conv.id, m.role, m.content, m.created_at, json.dumps(m.metadata)),
        )


def build_with_ddl(path: Path, ddl: str) -> None:
    """A seed database made with the verbatim DDL and seed-style inserts."""
    with_model_name = ddl is SEED_DDL
    db = sqlite3.connect(path)
    db.executescript(ddl)
    # Deleted conversation first, so its orphans sit between live rows.
    _insert_seed_style(db, DELETED, with_model_name=with_model_name)
    db.commit()
    # Saved in two steps, as a seed user continuing a chat would (the second save
    # re-inserts the earlier messages with INSERT OR REPLACE).
    first_part = Conv(**{**RESUME.__dict__, "messages": RESUME.messages[:2]})
    _insert_seed_style(db, first_part, with_model_name=with_model_name)
    db.commit()
    for conv in CONVERSATIONS:
        _insert_seed_style(db, conv, with_model_name=with_model_name)
        db.commit()
    for m in STRAY:
        db.execute(
            "INSERT OR REPLACE INTO messages (id, conversation_id, role, content, created_at, metadata)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (m.id, STRAY_CONVERSATION_ID, m.role, m.content, m.created_at, json.dumps(m.metadata)),
        )
    # The seed's delete_conversation: no foreign keys, so the messages stay.
    db.execute("DELETE FROM conversations WHERE id = ?", (DELETED.id,))
    db.commit()
    db.close()


def load_seed_module():
    """The seed 0.3.0 module, imported by path under a name of its own; None if absent."""
    if not SEED_MODULE_PATH.is_file():
        return None
    name = "qv_session_manager_seed_0_3_0"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SEED_MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def _sdk_conversation(conv: Conv, messages: list[Msg]) -> Conversation:
    return Conversation(
        id=uuid.UUID(conv.id),
        model_name=conv.model_name,
        title=conv.title,
        messages=[
            Message(
                id=uuid.UUID(m.id),
                role=MessageRole(m.role),
                content=m.content,
                created_at=datetime.fromisoformat(m.created_at),
                metadata=dict(m.metadata),
            )
            for m in messages
        ],
        created_at=datetime.fromisoformat(conv.created_at),
        updated_at=datetime.fromisoformat(conv.updated_at),
        metadata=dict(conv.metadata),
    )


def build_with_seed_package(path: Path, seed) -> None:
    """A seed database written by the seed's own SessionManager."""
    mgr = seed.SessionManager(db_path=str(path))
    deleted = _sdk_conversation(DELETED, DELETED.messages)
    mgr.save_conversation(deleted, deleted.messages)
    first_part = _sdk_conversation(RESUME, RESUME.messages[:2])
    mgr.save_conversation(first_part, first_part.messages)
    for conv in CONVERSATIONS:
        sdk_conv = _sdk_conversation(conv, conv.messages)
        mgr.save_conversation(sdk_conv, sdk_conv.messages)
    stray_owner = Conversation(id=uuid.UUID(STRAY_CONVERSATION_ID))
    stray = _sdk_conversation(
        Conv(STRAY_CONVERSATION_ID, "", "llama3", STRAY[0].created_at, STRAY[0].created_at, {}, []), STRAY
    )
    mgr.save_conversation(stray_owner, stray.messages)
    mgr.delete_conversation(STRAY_CONVERSATION_ID)
    mgr.delete_conversation(DELETED.id)
    # Sanity: the seed itself sees what we expect before the upgrade.
    assert {c["id"] for c in mgr.list_conversations()} == {c.id for c in CONVERSATIONS}
    assert len(mgr.load_conversation(RESUME.id).messages) == len(RESUME.messages)


@pytest.fixture(params=["seed_ddl", "old_ddl", "seed_package"])
def seed_db(request, tmp_path) -> tuple[Path, str]:
    """(path, layout) of a freshly built seed database; layout is 'seed' or 'old'."""
    path = tmp_path / "seed.sqlite3"
    if request.param == "old_ddl":
        build_with_ddl(path, OLD_DDL)
        return path, "old"
    if request.param == "seed_package":
        seed = load_seed_module()
        if seed is not None:
            build_with_seed_package(path, seed)
            return path, "seed"
        # The seed package is not unpacked here: the verbatim-DDL build stands in.
    build_with_ddl(path, SEED_DDL)
    return path, "seed"


def _expected_model(conv: Conv, layout: str) -> str:
    return "llama3" if layout == "old" else conv.model_name


def _raw(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _dump(path: Path) -> tuple[int, list[str]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0], list(db.iterdump())
    finally:
        db.close()


# -- upgrading seed databases --------------------------------------------------------------


def test_seed_layout_is_what_the_builders_made(seed_db):
    """The fixtures really are seed databases: seed columns, user_version 0, orphans present."""
    path, layout = seed_db
    columns = [row[1] for row in _raw(path, "PRAGMA table_info(conversations)")]
    expected = ["id", "title", "model_name", "created_at", "updated_at", "metadata"]
    assert columns == (expected if layout == "seed" else [c for c in expected if c != "model_name"])
    assert _raw(path, "PRAGMA user_version") == [(0,)]
    stored_ids = {row[0] for row in _raw(path, "SELECT id FROM messages")}
    assert ORPHAN_IDS <= stored_ids


def test_every_conversation_survives_the_upgrade(seed_db):
    """Every conversation comes through with its title, model (llama3 for the old layout),
    timestamps exactly as stored, and metadata dict; none of the deleted ones come back."""
    path, layout = seed_db
    with SessionManager(db_path=str(path)) as mgr:
        listed = mgr.list_conversations()
    assert [c["id"] for c in listed] == EXPECTED_LIST_ORDER
    by_id = {c["id"]: c for c in listed}
    for conv in CONVERSATIONS:
        assert by_id[conv.id] == {
            "id": conv.id,
            "title": conv.title,
            "model_name": _expected_model(conv, layout),
            "created_at": conv.created_at,  # the very text the seed stored
            "updated_at": conv.updated_at,
            "metadata": conv.metadata,
        }


def test_every_message_survives_in_seed_order(seed_db):
    """Each conversation loads with all its messages: ids, roles, content, created_at and
    metadata intact, ordered by created_at and then by insertion (rowid) for ties."""
    path, layout = seed_db
    with SessionManager(db_path=str(path)) as mgr:
        for conv in CONVERSATIONS:
            loaded = mgr.load_conversation(conv.id)
            assert loaded is not None, conv.title
            assert str(loaded.id) == conv.id
            assert loaded.title == conv.title
            assert loaded.model_name == _expected_model(conv, layout)
            assert loaded.metadata == conv.metadata
            assert loaded.created_at == datetime.fromisoformat(conv.created_at)
            assert loaded.updated_at == datetime.fromisoformat(conv.updated_at)
            by_id = {m.id: m for m in conv.messages}
            assert [str(m.id) for m in loaded.messages] == EXPECTED_ORDER[conv.id]
            for got in loaded.messages:
                want = by_id[str(got.id)]
                assert got.role.value == want.role
                assert got.content == want.content
                assert got.created_at == datetime.fromisoformat(want.created_at)
                assert got.created_at.isoformat() == want.created_at
                assert got.metadata == want.metadata
    # The tie group, spelled out: insertion order although the ids sort the other way.
    with SessionManager(db_path=str(path)) as mgr:
        resume = mgr.load_conversation(RESUME.id)
    assert [m.role.value for m in resume.messages] == ["system", "user", "assistant", "user"]
    assert resume.messages[1].content.startswith("Pouvez-vous relire mon Résumé")


def test_orphan_messages_do_not_survive(seed_db):
    """Messages of conversations the seed deleted appear nowhere after the upgrade:
    not in any conversation, not in search, not in the file's message table."""
    path, _ = seed_db
    with SessionManager(db_path=str(path)) as mgr:
        assert mgr.load_conversation(DELETED.id) is None
        assert mgr.load_conversation(STRAY_CONVERSATION_ID) is None
        for conv in mgr.list_conversations():
            ids = {str(m.id) for m in mgr.load_conversation(conv["id"]).messages}
            assert not ids & ORPHAN_IDS
        assert mgr.search_conversations("zebrafish") == []
        assert mgr.search_conversations("fins") == []
        assert mgr.search_conversations("platypus") == []
        assert mgr.resume_conversation(DELETED.id) is None
    stored = {row[0] for row in _raw(path, "SELECT id FROM messages")}
    assert stored == {m.id for conv in CONVERSATIONS for m in conv.messages}


def test_search_finds_migrated_text(seed_db):
    """Search works on migrated data at once: words of messages and of titles, with case and
    accents folded ('resume' finds 'Résumé') and CJK text ('東京')."""
    path, _ = seed_db
    with SessionManager(db_path=str(path)) as mgr:

        def ids(query: str) -> list[str]:
            return [c["id"] for c in mgr.search_conversations(query)]

        assert ids("resume") == [RESUME.id]  # title and a message
        assert ids("RÉSUMÉ") == [RESUME.id]
        assert ids("naive cafe") == [RESUME.id]  # message only
        assert ids("東京") == [TOKYO.id]  # message only
        assert ids("天気") == [TOKYO.id]
        assert ids("旅行") == [TOKYO.id]  # title only
        assert ids("sunny") == [TOKYO.id]
        assert ids("closures") == [JAVASCRIPT.id]  # message only
        assert ids("tutorial") == [JAVASCRIPT.id]  # title only
        assert ids("kubernetes") == [EMPTY.id]  # title of a conversation without messages
        hit = mgr.search_conversations("東京", snippets=True)[0]
        assert hit["message_id"] == _uid("d1")
        assert "東京" in hit["snippet"]


def test_user_version_is_latest_after_upgrade(seed_db):
    """After the first open the file carries the latest schema version."""
    path, _ = seed_db
    SessionManager(db_path=str(path)).close()
    assert _raw(path, "PRAGMA user_version") == [(LATEST,)]
    tables = {row[0] for row in _raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not {name for name in tables if name.startswith("seed_")}


def test_time_indexes_of_upgraded_and_new_files_hold_the_expiry_key(seed_db, tmp_path):
    """Schema 4: listings decide the expiry check from the time index, so offset pages skip
    entries without reading their rows; the index is the one the listing uses."""
    from qv_session_manager.protocol import ConversationFilter

    upgraded, _ = seed_db
    for path in (upgraded, tmp_path / "new.db"):
        SessionManager(db_path=str(path)).close()
        for name, key in (("conversations_by_updated", "updated_key"), ("conversations_by_created", "created_key")):
            assert [row[2] for row in _raw(path, f"PRAGMA index_info({name})")] == [key, "id", "expires_key"]
        manager = SessionManager(db_path=str(path))
        try:
            db = manager.store._db  # type: ignore[attr-defined]
            for field, name in (("updated_at", "conversations_by_updated"), ("created_at", "conversations_by_created")):
                seen: list[str] = []
                db.set_trace_callback(seen.append)
                try:
                    manager.store.list(ConversationFilter(field=field), limit=2, offset=1)
                finally:
                    db.set_trace_callback(None)
                listing = next(statement for statement in seen if statement.lstrip().startswith("SELECT"))
                plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {listing}")]
                assert plan == [f"SCAN c USING INDEX {name}"], plan
        finally:
            manager.close()


def test_second_open_is_a_no_op(seed_db):
    """Opening an upgraded file again changes nothing: same version, schema and rows."""
    path, _ = seed_db
    SessionManager(db_path=str(path)).close()
    before = _dump(path)
    before_bytes = path.read_bytes()
    with SessionManager(db_path=str(path)) as mgr:
        assert [c["id"] for c in mgr.list_conversations()] == EXPECTED_LIST_ORDER
    assert _dump(path) == before
    assert path.read_bytes() == before_bytes


def test_saving_to_a_migrated_conversation_appends(seed_db):
    """A message saved to a migrated conversation goes after the migrated ones (whether the
    whole conversation or just the new message is saved), and is searchable."""
    path, _ = seed_db
    with SessionManager(db_path=str(path)) as mgr:
        conv = mgr.load_conversation(RESUME.id)
        conv.add_user_message("Une dernière question sur la lettre de motivation.")
        mgr.save_conversation(conv, conv.messages)

        # Only the newest message, stamped earlier than everything stored: still appended.
        late = Message(
            role=MessageRole.ASSISTANT, content="Avec plaisir, platypodes inclus.", created_at=datetime(2000, 1, 1)
        )
        mgr.save_conversation(conv, [late])

    with SessionManager(db_path=str(path)) as mgr:
        reloaded = mgr.load_conversation(RESUME.id)
        assert [str(m.id) for m in reloaded.messages] == [
            *EXPECTED_ORDER[RESUME.id],
            str(conv.messages[-1].id),
            str(late.id),
        ]
        assert reloaded.messages[-2].content == "Une dernière question sur la lettre de motivation."
        assert reloaded.messages[-1].content == "Avec plaisir, platypodes inclus."
        assert [c["id"] for c in mgr.search_conversations("motivation")] == [RESUME.id]
        assert [c["id"] for c in mgr.search_conversations("derniere")] == [RESUME.id]
        # The other conversations are untouched.
        assert [str(m.id) for m in mgr.load_conversation(TOKYO.id).messages] == EXPECTED_ORDER[TOKYO.id]


def test_seed_default_model_name_fill_for_old_layout(tmp_path):
    """The old layout (no model_name column) upgrades with model_name 'llama3' everywhere."""
    path = tmp_path / "old.sqlite3"
    build_with_ddl(path, OLD_DDL)
    with SessionManager(db_path=str(path)) as mgr:
        assert {c["model_name"] for c in mgr.list_conversations()} == {"llama3"}
        assert mgr.load_conversation(JAVASCRIPT.id).model_name == "llama3"
        assert [c["id"] for c in mgr.list_conversations(metadata={"topic": "web-development"})] == [JAVASCRIPT.id]


# -- files that must be refused and left alone -----------------------------------------------


def _assert_refused_untouched(path: Path, error: type[Exception]) -> None:
    before = path.read_bytes()
    siblings = sorted(os.listdir(path.parent))
    with pytest.raises(error):
        SessionManager(db_path=str(path))
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == siblings


@pytest.mark.parametrize(
    "ddl",
    [
        pytest.param(
            "CREATE TABLE conversations (name TEXT, amount INTEGER);INSERT INTO conversations VALUES ('invoice', 42);",
            id="foreign-conversations",
        ),
        pytest.param(
            "CREATE TABLE conversations (id TEXT PRIMARY KEY, title TEXT, created_at TEXT,"
            " updated_at TEXT, metadata TEXT);"
            "CREATE TABLE messages (id TEXT PRIMARY KEY, body TEXT);"
            "INSERT INTO messages VALUES ('m', 'x');",
            id="foreign-messages",
        ),
    ],
)
def test_foreign_table_raises_schema_version_error_and_is_untouched(tmp_path, ddl):
    """A file whose conversations/messages tables have another shape is not a seed database:
    SchemaVersionError, and the file stays byte-for-byte the same."""
    path = tmp_path / "foreign.db"
    db = sqlite3.connect(path)
    db.executescript(ddl)
    db.commit()
    db.close()
    _assert_refused_untouched(path, SchemaVersionError)
    assert _raw(path, "PRAGMA user_version") == [(0,)]


def test_newer_schema_version_raises_and_is_untouched(tmp_path):
    """A database with a user_version above LATEST was written by a newer library:
    SchemaVersionError, file untouched."""
    path = tmp_path / "newer.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE conversations (pk INTEGER PRIMARY KEY, id TEXT)")
    db.execute(f"PRAGMA user_version = {LATEST + 1}")
    db.commit()
    db.close()
    _assert_refused_untouched(path, SchemaVersionError)


def test_zero_length_file_opens_as_a_new_store(tmp_path):
    """A zero-length file is an empty database, as sqlite3 (and so 0.3.0) treats it: it
    becomes a new, empty store at the latest schema, nothing left beside it once closed."""
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with SessionManager(db_path=str(path)) as mgr:
        assert mgr.list_conversations() == []
    assert _raw(path, "PRAGMA user_version") == [(LATEST,)]
    assert sorted(os.listdir(tmp_path)) == ["empty.db"]


@pytest.mark.parametrize("size", [1, 100, 4096, 65536])
def test_garbage_file_raises_corrupt_storage_error(tmp_path, size):
    """A file of random bytes is not a database: CorruptStorageError, bytes unchanged."""
    path = tmp_path / "garbage.db"
    data = random.Random(size).randbytes(size)
    assert not data.startswith(b"SQLite format 3\x00")
    path.write_bytes(data)
    _assert_refused_untouched(path, CorruptStorageError)


def test_seed_metadata_that_is_not_an_object_becomes_empty(tmp_path: Path) -> None:
    """0.3.0 stored metadata=None as 'null'; the upgrade keeps the row and gives it {}."""
    path = tmp_path / "null-metadata.db"
    db = sqlite3.connect(path)
    db.executescript(SEED_DDL)
    rows = [
        ("11111111-1111-4111-8111-111111111111", "null"),
        ("22222222-2222-4222-8222-222222222222", "[1, 2]"),
        ("33333333-3333-4333-8333-333333333333", '{"kept": true}'),
    ]
    for conversation_id, metadata in rows:
        db.execute(
            "INSERT INTO conversations VALUES (?, 'title', 'llama3', '2025-01-20T10:00:00', '2025-01-20T10:00:00', ?)",
            (conversation_id, metadata),
        )
        db.execute(
            "INSERT INTO messages VALUES (?, ?, 'user', 'hello there', '2025-01-20T10:00:00', 'null')",
            (conversation_id[::-1], conversation_id),
        )
    db.commit()
    db.close()
    with SessionManager(db_path=path) as manager:
        listed = {row["id"]: row["metadata"] for row in manager.list_conversations()}
        assert listed == {rows[0][0]: {}, rows[1][0]: {}, rows[2][0]: {"kept": True}}
        assert len(manager.search_conversations("hello")) == 3
        assert manager.load_conversation(rows[0][0]).messages[0].metadata == {}
