"""Retention and expiry through SessionManager, the SQLite schema, EncryptedStore and the rules.

The storage contract of expiry (every backend) is in qv_session_manager.testing.contract;
here: set_expiry, delete_older_than, keep_newest and purge_expired of the manager
(properties over random stores), the refusal of expiries by stores that would ignore
them, SQLite's index use and schema upgrade, and the clear expiry of EncryptedStore.
"""

from __future__ import annotations

import io
import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import (
    EXPIRES_AT,
    Capability,
    ConversationFilter,
    ConversationRecord,
    EncryptionKeyError,
    ImportFormatError,
    InvalidInputError,
    SessionManager,
    UnsupportedOperationError,
    retention,
)
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.backends.sqlite import schema as sqlite_schema
from qv_session_manager.encryption import EncryptedStore
from qv_session_manager.protocol import offers
from qv_session_manager.query import parse
from qv_session_manager.records import expiry_of, stored_expiry_key
from qv_session_manager.testing import strategies
from qv_session_manager.testing.contract import conversation, message
from qv_session_manager.timeutil import time_key

PAST = datetime(2000, 1, 1)
FUTURE = datetime(2999, 1, 1)
KEY = {"k1": bytes(range(32))}


def saved(
    manager: SessionManager, title: str, updated: datetime, created: datetime | None = None, **metadata: Any
) -> str:
    chat = Conversation(title=title, model_name="llama3", metadata=dict(metadata))
    chat.add_user_message(f"about {title}")
    chat.updated_at = updated
    chat.created_at = created or updated
    manager.save_conversation(chat)
    return str(chat.id)


def titles(manager: SessionManager, **kw: Any) -> list[str]:
    return [row["title"] for row in manager.list_conversations(**kw)]


class WithoutExpiry:
    """A store that does not declare Capability.EXPIRY (a third-party backend, say)."""

    def __init__(self) -> None:
        self._inner = MemoryStore()
        self.capabilities = frozenset({Capability.RELEVANCE})

    def __getattr__(self, name: str) -> Any:
        if name in ("purge_expired", "save_many"):  # neither Expiring nor BulkSaving
            raise AttributeError(name)
        return getattr(self._inner, name)


@pytest.fixture(params=["memory", "sqlite"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionManager]:
    store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "retention.db")
    with SessionManager(store=store) as opened:
        yield opened


# -- records: the one parser -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2030-05-01T10:00:00", datetime(2030, 5, 1, 10)),
        ("2030-05-01T12:00:00+02:00", datetime(2030, 5, 1, 12, tzinfo=timezone(timedelta(hours=2)))),
        ("2030-05-01T10:00:00Z", datetime(2030, 5, 1, 10, tzinfo=timezone.utc)),
        ("2030-05-01", datetime(2030, 5, 1)),
    ],
)
def test_expiry_of_parses_iso_timestamps(text: str, instant: datetime) -> None:
    assert expiry_of({EXPIRES_AT: text}) == instant
    assert expiry_of({"other": 1}) is None


def test_a_bad_stored_expiry_never_expires_and_stays_readable() -> None:
    assert stored_expiry_key({EXPIRES_AT: "soon"}) is None
    record = ConversationRecord.from_storage(id="c", created_at=PAST, updated_at=PAST, metadata={EXPIRES_AT: "soon"})
    assert record.metadata == {EXPIRES_AT: "soon"}
    with pytest.raises(InvalidInputError, match="title"):
        ConversationRecord.from_storage(id="c", created_at=PAST, updated_at=PAST, title=5, metadata={EXPIRES_AT: "x"})


# -- set_expiry ----------------------------------------------------------------------------


def test_set_expiry_stores_iso_text_that_survives_the_sdk_round_trip(manager: SessionManager) -> None:
    conversation_id = saved(manager, "chat", datetime(2025, 1, 20), topic="x")
    when = datetime(2999, 5, 1, 8, 30, tzinfo=timezone(timedelta(hours=2)))
    assert manager.set_expiry(conversation_id.upper(), when) is True  # any UUID spelling
    loaded = manager.load_conversation(conversation_id)
    assert loaded is not None and loaded.metadata == {"topic": "x", EXPIRES_AT: when.isoformat()}
    assert len(loaded.messages) == 1 and loaded.updated_at == datetime(2025, 1, 20), "nothing else changes"
    loaded.add_assistant_message("an answer")
    manager.save_conversation(loaded)
    again = manager.load_conversation(conversation_id)
    assert again is not None and again.metadata[EXPIRES_AT] == when.isoformat() and len(again.messages) == 2
    assert manager.set_expiry(conversation_id, None) is True
    cleared = manager.load_conversation(conversation_id)
    assert cleared is not None and cleared.metadata == {"topic": "x"}
    assert manager.set_expiry(str(uuid.uuid4()), FUTURE) is False
    assert manager.set_expiry("not-stored", None) is False


def test_set_expiry_in_the_past_hides_the_conversation_until_purged(manager: SessionManager) -> None:
    kept = saved(manager, "kept", datetime(2025, 1, 20))
    gone = saved(manager, "gone", datetime(2025, 1, 21))
    assert manager.set_expiry(gone, datetime.now(timezone.utc) - timedelta(seconds=1)) is True
    assert manager.load_conversation(gone) is None and manager.resume_conversation(gone) is None
    assert titles(manager) == ["kept"] and [r["title"] for r in manager.search_conversations("about")] == ["kept"]
    assert manager.set_expiry(gone, FUTURE) is False, "an expired conversation cannot be revived"
    assert manager.delete_conversation(gone) is False
    saved_again = saved(manager, "other", datetime(2025, 1, 22))
    assert manager.set_expiry(saved_again, PAST) is True
    assert manager.purge_expired() == 1 and manager.purge_expired() == 0
    assert manager.load_conversation(kept) is not None


@pytest.mark.parametrize(
    "bad", ["2999-01-01", 1700000000, True, datetime.max.replace(tzinfo=timezone(-timedelta(hours=1)))]
)
def test_set_expiry_refuses_what_is_not_a_datetime(manager: SessionManager, bad: Any) -> None:
    conversation_id = saved(manager, "chat", datetime(2025, 1, 20))
    before = manager.load_conversation(conversation_id)
    for target in (conversation_id, "missing"):
        with pytest.raises(InvalidInputError):
            manager.set_expiry(target, bad)
    after = manager.load_conversation(conversation_id)
    assert before is not None and after is not None and after.metadata == before.metadata == {}


# -- stores that would ignore an expiry ----------------------------------------------------------


def test_a_store_without_the_capability_refuses_expiries_and_stays_unchanged() -> None:
    store = WithoutExpiry()
    manager = SessionManager(store=store)  # type: ignore[arg-type]
    plain = saved(manager, "plain", datetime(2025, 1, 20))
    expiring = Conversation(title="expiring", metadata={EXPIRES_AT: FUTURE.isoformat()})
    with pytest.raises(InvalidInputError, match=r"Capability\.EXPIRY"):
        manager.save_conversation(expiring)
    with pytest.raises(InvalidInputError, match="conversation 1 of the input"):
        manager.save_many([Conversation(title="fine"), expiring])
    with pytest.raises(InvalidInputError, match=r"Capability\.EXPIRY"):
        manager.set_expiry(plain, FUTURE)
    assert manager.set_expiry(plain, None) is True, "removing an expiry is always possible"
    document = io.StringIO()
    with SessionManager(url="memory://") as source:
        source.save_conversation(expiring)
        source.export_conversations(document)
    with pytest.raises(ImportFormatError, match=r"Capability\.EXPIRY"):
        manager.import_conversations(io.StringIO(document.getvalue()))
    report = manager.import_conversations(io.StringIO(document.getvalue()), on_error="skip")
    assert report.imported == 0 and len(report.skipped) == 1
    assert titles(manager) == ["plain"], "a refused expiry wrote nothing"
    assert not offers(store, Capability.PURGING) and manager.purge_expired() == 0


def test_the_import_guard_keeps_bulk_saves_whole() -> None:
    assert isinstance(retention.guarded(MemoryStore()), MemoryStore), "a store with the capability is used as it is"
    guard = retention.guarded(WithoutExpiry())  # type: ignore[arg-type]
    assert not offers(guard, Capability.BULK_SAVING), "no bulk save is offered that the store lacks"
    with pytest.raises(UnsupportedOperationError):
        guard.save_many([])  # type: ignore[attr-defined]
    bulk = MemoryStore()
    bulk.capabilities = MemoryStore.capabilities - {Capability.EXPIRY, Capability.PURGING}  # type: ignore[misc]
    assert offers(retention.guarded(bulk), Capability.BULK_SAVING)
    guarded_bulk = retention.guarded(bulk)
    with pytest.raises(InvalidInputError):
        guarded_bulk.save_many([(conversation("a"), []), (conversation("b", metadata={EXPIRES_AT: "2999-01-01"}), [])])  # type: ignore[attr-defined]
    assert bulk.get("a") is None, "the batch is refused whole"
    assert guarded_bulk.save_many([(conversation("a"), [])]) == 1  # type: ignore[attr-defined]


# -- delete_older_than and keep_newest: properties over random stores ---------------------------------

stamps = st.lists(st.tuples(strategies.timestamps(), strategies.timestamps()), min_size=0, max_size=9)


@pytest.mark.parametrize("field", ["updated_at", "created_at"])
def test_delete_older_than_deletes_exactly_what_is_strictly_before(field: str) -> None:
    @given(stamps, strategies.timestamps())
    @settings(max_examples=80, deadline=None)
    def check(times: list[tuple[datetime, datetime]], cutoff: datetime) -> None:
        with SessionManager(url="memory://") as manager:
            for index, (updated, created) in enumerate(times):
                saved(manager, f"c{index}", updated, created)
            before = manager.list_conversations()
            doomed = {row["id"] for row in before if time_key(datetime.fromisoformat(row[field])) < time_key(cutoff)}
            assert manager.delete_older_than(cutoff, field=field) == len(doomed)  # type: ignore[arg-type]
            assert [row["id"] for row in manager.list_conversations()] == [
                row["id"] for row in before if row["id"] not in doomed
            ]

    check()


def test_keep_newest_keeps_the_head_of_the_listing() -> None:
    @given(stamps, st.integers(0, 11), st.sampled_from(["updated_at", "created_at"]))
    @settings(max_examples=80, deadline=None)
    def check(times: list[tuple[datetime, datetime]], count: int, field: str) -> None:
        with SessionManager(url="memory://") as manager:
            for index, (updated, created) in enumerate(times):
                saved(manager, f"c{index}", updated, created)
            order = [r.id for r in manager.store.list(ConversationFilter(field=field))]  # type: ignore[arg-type]
            assert manager.keep_newest(count, field=field) == max(len(order) - count, 0)  # type: ignore[arg-type]
            assert sorted(r["id"] for r in manager.list_conversations()) == sorted(order[:count])

    check()


def test_retention_reads_page_by_page(manager: SessionManager, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "PAGE_SIZE", 4)
    for day in range(23):
        saved(manager, f"day {day:02d}", datetime(2025, 1, 1) + timedelta(days=day))
    limits: list[int | None] = []
    real_list = manager.store.list

    def spy(filter: ConversationFilter, **kw: Any) -> Any:
        limits.append(kw.get("limit"))
        return real_list(filter, **kw)

    monkeypatch.setattr(manager.store, "list", spy)
    assert manager.keep_newest(9) == 14
    assert manager.delete_older_than(datetime(2025, 1, 15)) == 0, "the nine kept are from the 15th on"
    assert manager.delete_older_than(datetime(2025, 1, 18)) == 3
    assert limits and None not in limits and max(limits) == 4, "every read is one bounded page"
    assert titles(manager) == [f"day {day:02d}" for day in range(22, 16, -1)]


@pytest.mark.parametrize(
    ("call", "arguments"),
    [
        ("delete_older_than", ("2025-01-01",)),
        ("delete_older_than", (None,)),
        ("delete_older_than", (datetime(2025, 1, 1), "title")),
        ("keep_newest", (-1,)),
        ("keep_newest", (True,)),
        ("keep_newest", (1.5,)),
        ("keep_newest", ("3",)),
        ("keep_newest", (2**63,)),
        ("keep_newest", (1, "title")),
    ],
)
def test_bad_retention_arguments_change_nothing(manager: SessionManager, call: str, arguments: tuple[Any, ...]) -> None:
    saved(manager, "old", datetime(2000, 1, 1))
    positional, *field = arguments
    with pytest.raises(InvalidInputError):
        getattr(manager, call)(positional, **({"field": field[0]} if field else {}))
    assert titles(manager) == ["old"]


def test_a_conversation_updated_exactly_at_the_cutoff_stays(manager: SessionManager) -> None:
    saved(manager, "naive noon", datetime(2025, 1, 20, 12))
    saved(manager, "aware earlier", datetime(2025, 1, 20, 12, tzinfo=timezone(timedelta(hours=2))))
    assert manager.delete_older_than(datetime(2025, 1, 20, 12, tzinfo=timezone.utc)) == 1
    assert titles(manager) == ["naive noon"]
    assert manager.keep_newest(0) == 1 and titles(manager) == []


# -- SQLite: the expiry column, its index, the schema upgrade --------------------------------------


def _plan(store: SQLiteStore, statement: str) -> str:
    return " | ".join(row[-1] for row in store._db.execute("EXPLAIN QUERY PLAN " + statement))


def test_sqlite_reads_with_the_expiry_filter_stay_on_indexes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "plan.db")
    executed: list[str] = []
    store._db.set_trace_callback(executed.append)
    try:
        store.list(ConversationFilter(), limit=20)
        store.get("some-id")
        listing = next(s for s in executed if "ORDER BY c.updated_key DESC" in s)
        lookup = next(s for s in executed if "WHERE id = 'some-id'" in s)
        assert "expires_key" in listing and "expires_key" in lookup
        assert "USING INDEX conversations_by_updated" in _plan(store, listing), _plan(store, listing)
        assert "USING INDEX sqlite_autoindex_conversations_1" in _plan(store, lookup), _plan(store, lookup)
        purge = _plan(store, "SELECT pk, title FROM conversations WHERE expires_key <= '2025'")
        assert "conversations_by_expiry" in purge, purge
    finally:
        store._db.set_trace_callback(None)
        store.close()


def _version_1_file(path: Path, metadata: dict[str, str]) -> None:
    """A database as the previous release wrote it (schema 1), one conversation per metadata value."""
    db = sqlite3.connect(path, isolation_level=None)
    sqlite_schema._create_v1(db)
    for name, value in metadata.items():
        document = json.dumps({EXPIRES_AT: value, "name": name}) if value is not None else json.dumps({"name": name})
        db.execute(
            """INSERT INTO conversations (id, title, model_name, created_at, updated_at, created_key, updated_key,
                   metadata) VALUES (?, ?, 'llama3', '2025-01-20T12:00:00', '2025-01-20T12:00:00',
                   '2025-01-20T12:00:00.000000', '2025-01-20T12:00:00.000000', ?)""",
            (name, name, document),
        )
    sqlite_schema._fill_v1(db)
    db.execute("PRAGMA user_version = 1")
    db.close()


def test_sqlite_upgrade_fills_the_expiry_column_from_metadata(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    _version_1_file(
        path,
        {
            "expired": "2000-01-01T00:00:00+01:00",
            "future": "2999-01-01T00:00:00",
            "zulu": "2999-01-01T00:00:00Z",
            "garbage": "soon",
            "number": 5,
            "none": None,
        },
    )  # type: ignore[dict-item]
    with SessionManager(db_path=path) as manager:
        assert sorted(row["id"] for row in manager.list_conversations()) == [
            "future",
            "garbage",
            "none",
            "number",
            "zulu",
        ]
        assert manager.load_conversation("expired") is None
        garbage = manager.load_conversation("garbage")
        assert garbage is not None and garbage.metadata[EXPIRES_AT] == "soon", "a value that does not parse is kept"
        assert manager.purge_expired() == 1
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == sqlite_schema.LATEST == 6
        keys = dict(db.execute("SELECT id, expires_key FROM conversations").fetchall())
    finally:
        db.close()
    assert keys == {
        "future": "2999-01-01T00:00:00.000000",
        "zulu": "2999-01-01T00:00:00.000000",
        "garbage": None,
        "number": None,
        "none": None,
    }


def test_sqlite_stats_leave_expired_conversations_out(tmp_path: Path) -> None:
    from qv_session_manager.backends.sqlite import maintenance

    store = SQLiteStore(tmp_path / "stats.db")
    try:
        store.save(conversation("live", updated=datetime(2025, 1, 2)), [message("a")])
        store.save(
            conversation("gone", updated=datetime(2025, 1, 3), metadata={EXPIRES_AT: "2000-01-01"}),
            [message("b"), message("c")],
        )
        assert maintenance.counts(store) == maintenance.Counts(1, 1, "2025-01-02T00:00:00", "2025-01-02T00:00:00")
    finally:
        store.close()


# -- EncryptedStore: the expiry in the clear -----------------------------------------------------------


def test_encrypted_store_keeps_the_expiry_in_the_clear_and_checks_it() -> None:
    inner = MemoryStore()
    store = EncryptedStore(inner, KEY, current="k1")
    assert Capability.EXPIRY in store.capabilities and offers(store, Capability.PURGING)
    record = conversation("c", metadata={EXPIRES_AT: "2999-01-01T00:00:00", "secret": "s"})
    store.save(record, [message("hello")])
    sealed = inner.get("c")
    assert sealed is not None and set(sealed.metadata) == {"qvenc1", EXPIRES_AT}
    assert sealed.metadata[EXPIRES_AT] == "2999-01-01T00:00:00" and "secret" not in json.dumps(sealed.metadata)
    assert store.get("c") == record, "callers get exactly the metadata they saved"
    for tampered in (
        {**sealed.metadata, EXPIRES_AT: "2999-12-31T00:00:00"},
        {key: value for key, value in sealed.metadata.items() if key != EXPIRES_AT},
    ):
        inner.save(ConversationRecord(**{**sealed.__dict__, "metadata": tampered}), [])
        with pytest.raises(EncryptionKeyError, match="expiry"):
            store.get("c")
    inner.delete("c")
    store.save(conversation("gone", metadata={EXPIRES_AT: "2000-01-01T00:00:00"}), [message("bye")])
    assert store.get("gone") is None and inner.get("gone") is None, "the inner store honours the clear expiry"
    assert [hit.conversation.id for hit in store.search(parse("bye"), ConversationFilter())] == []
    assert store.purge_expired() == 1
    without = EncryptedStore(WithoutExpiry(), KEY, current="k1")  # type: ignore[arg-type]
    assert not offers(without, Capability.PURGING) and SessionManager(store=without).purge_expired() == 0
    with pytest.raises(UnsupportedOperationError):
        without.purge_expired()
