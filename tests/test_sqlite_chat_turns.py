"""Chat turns saved against a revision token: no lookup first, and a stale token writes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.records import EXPIRES_AT
from qv_session_manager.testing.contract import conversation, message


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[SQLiteStore, SQLiteStore]]:
    """Two store objects on one file: the second plays another process."""
    first, second = SQLiteStore(tmp_path / "chats.db"), SQLiteStore(tmp_path / "chats.db")
    yield first, second
    first.close()
    second.close()


def _statements(store: SQLiteStore) -> list[str]:
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    return seen


def test_a_turn_against_the_latest_token_runs_the_floors_four_statements(
    stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    store, _ = stores
    token = store.save_revisioned(conversation("c"), [message("one", id="a")])
    seen = _statements(store)
    newer = store.save_revisioned(
        conversation("c", updated=datetime(2030, 1, 1)), [message("two", id="b")], expected=token
    )
    store._db.set_trace_callback(None)
    assert newer is not None and newer != token
    assert [statement.split()[0] for statement in seen] == ["BEGIN", "INSERT", "UPDATE", "COMMIT"]
    stored = store.load("c")
    assert stored is not None and [m.content for m in stored.messages] == ["one", "two"]
    assert stored.conversation.updated_at == datetime(2030, 1, 1)


def _delete(other: SQLiteStore) -> None:
    other.delete("c")


def _other_save(other: SQLiteStore) -> None:
    other.save(conversation("c", title="changed elsewhere"), [message("theirs", id="t")])


def _other_append(other: SQLiteStore) -> None:
    other.append("c", [message("appended", id="x")])


def _other_message_delete(other: SQLiteStore) -> None:
    other.delete_message("c", "a")


@pytest.mark.parametrize("change", [_delete, _other_save, _other_append, _other_message_delete])
def test_a_turn_after_another_write_is_refused_and_writes_nothing(
    stores: tuple[SQLiteStore, SQLiteStore], change: Callable[[SQLiteStore], None]
) -> None:
    store, other = stores
    token = store.save_revisioned(conversation("c"), [message("one", id="a")])
    change(other)
    before = other.load("c")
    assert store.save_revisioned(conversation("c"), [message("mine", id="m")], expected=token) is None
    assert other.load("c") == before


def test_a_turn_into_a_conversation_that_expired_is_refused(stores: tuple[SQLiteStore, SQLiteStore]) -> None:
    store, other = stores
    soon = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
    token = store.save_revisioned(conversation("c", metadata={EXPIRES_AT: soon}), [message("one", id="a")])
    assert store.load("c") is not None
    rows_before = other._db.execute("SELECT count(*) FROM messages").fetchone()
    later = datetime.now(timezone.utc) + timedelta(seconds=2)
    from qv_session_manager.backends.sqlite import store as store_module

    original = store_module.now_key

    def after_expiry() -> str:
        return store_module.time_key(later)

    store_module.now_key = after_expiry  # type: ignore[assignment]
    try:
        refused = store.save_revisioned(
            conversation("c", metadata={EXPIRES_AT: soon}), [message("two", id="b")], expected=token
        )
    finally:
        store_module.now_key = original  # type: ignore[assignment]
    assert refused is None
    assert other._db.execute("SELECT count(*) FROM messages").fetchone() == rows_before


@pytest.mark.parametrize("token", [(1, 1), "token", (10**6, 1, 0, ("t", None, "", "", "{}", None)), None])
def test_tokens_the_store_did_not_give_never_write(stores: tuple[SQLiteStore, SQLiteStore], token: Any) -> None:
    store, _ = stores
    store.save(conversation("c"), [message("one", id="a")])
    before = store.load("c")
    if token is None:  # a real token of another conversation
        token = store.save_revisioned(conversation("d"), [message("other", id="a")])
    assert store.save_revisioned(conversation("c"), [message("two", id="b")], expected=token) is None
    assert store.load("c") == before


def test_a_turn_that_resends_a_stored_message_rewrites_it_in_place(stores: tuple[SQLiteStore, SQLiteStore]) -> None:
    store, _ = stores
    token = store.save_revisioned(conversation("c"), [message("one", id="a"), message("two", id="b")])
    newer = store.save_revisioned(
        conversation("c"), [message("one, edited", id="a"), message("three", id="c")], expected=token
    )
    assert newer is not None
    stored = store.load("c")
    assert stored is not None and [(m.id, m.content) for m in stored.messages] == [
        ("a", "one, edited"),
        ("b", "two"),
        ("c", "three"),
    ]
