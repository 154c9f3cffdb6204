"""SessionManager sends only what changed since its last save: exact under mutation, bounded in memory."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any

import pytest
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import SessionManager, save_tracking
from qv_session_manager.backends import memory
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.testing.sdk_saves import check_mutated_saves


class CountingStore(MemoryStore):
    """A memory store that records how many messages each save was given."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[int] = []

    def save_revisioned(
        self, conversation: Any, messages: Any, *, replace: bool = False, expected: Hashable | None = None
    ) -> Hashable | None:
        self.sent.append(len(messages))
        return super().save_revisioned(conversation, messages, replace=replace, expected=expected)


def test_a_growing_conversation_sends_only_its_new_message() -> None:
    store = CountingStore()
    manager = SessionManager(store=store)
    conversation = Conversation(title="long")
    for turn in range(200):
        conversation.add_user_message(f"message {turn}")
        manager.save_conversation(conversation, conversation.messages)
    assert store.sent == [1] * 200
    loaded = manager.load_conversation(str(conversation.id))
    assert loaded is not None and [m.content for m in loaded.messages] == [f"message {t}" for t in range(200)]


def test_an_edit_in_place_is_sent_and_stored() -> None:
    store = CountingStore()
    manager = SessionManager(store=store)
    conversation = Conversation()
    first = conversation.add_user_message("first")
    conversation.add_assistant_message("second")
    manager.save_conversation(conversation)
    first.metadata["rating"] = 1
    manager.save_conversation(conversation)
    first.metadata["rating"] = True  # == 1, stored differently
    manager.save_conversation(conversation)
    assert store.sent == [2, 1, 1]
    loaded = manager.load_conversation(str(conversation.id))
    assert loaded is not None and loaded.messages[0].metadata["rating"] is True


def test_another_writer_makes_the_next_save_a_full_one(tmp_path: Any) -> None:
    path = tmp_path / "two.db"
    mine, theirs = SessionManager(db_path=path), SessionManager(db_path=path)
    try:
        conversation = Conversation()
        kept = conversation.add_user_message("keep me")
        mine.save_conversation(conversation)
        assert theirs.delete_message(str(conversation.id), str(kept.id))
        conversation.add_assistant_message("reply")
        mine.save_conversation(conversation)  # the snapshot is stale: everything is sent again
        loaded = theirs.load_conversation(str(conversation.id))
        assert loaded is not None and [m.content for m in loaded.messages] == ["keep me", "reply"]
    finally:
        mine.close()
        theirs.close()


def test_a_subclass_overriding_save_gets_every_save(tmp_path: Any) -> None:
    calls: list[int] = []

    class Hooked(SQLiteStore):
        def save(self, conversation: Any, messages: Any, *, replace: bool = False) -> None:
            calls.append(len(messages))
            super().save(conversation, messages, replace=replace)

    manager = SessionManager(store=Hooked(tmp_path / "hooked.db"))
    conversation = Conversation()
    conversation.add_user_message("one")
    manager.save_conversation(conversation)
    conversation.add_user_message("two")
    manager.save_conversation(conversation)
    manager.close()
    assert calls == [1, 2], "an overridden save is never bypassed"


def test_snapshots_are_bounded_by_conversations_and_messages() -> None:
    states = save_tracking.SavedStates(max_conversations=3, max_messages=10)
    manager = SessionManager(store=MemoryStore())
    manager._saved = states
    conversations = [Conversation() for _ in range(5)]
    for conversation in conversations:
        conversation.add_user_message("one")
        conversation.add_user_message("two")
        manager.save_conversation(conversation)
    assert states.sizes == (3, 6)
    assert states.get(str(conversations[0].id)) is None and states.get(str(conversations[4].id)) is not None
    big = Conversation()
    for number in range(11):
        big.add_user_message(f"m{number}")
    manager.save_conversation(big)
    assert states.get(str(big.id)) is None, "a conversation over the message bound is not kept"
    assert states.sizes[1] <= 10
    manager.close()
    assert states.sizes == (0, 0)


# -- the property catches broken shortcuts ---------------------------------------------


def _types_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(save_tracking, "_same_types", lambda value, saved: True)


def _metadata_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    holds = save_tracking._Slot.holds

    def ignoring_metadata(self: Any, message: Any) -> bool:
        kept = message.metadata
        message.__dict__["metadata"] = {} if self.metadata is None else self.metadata
        try:
            return holds(self, message)
        finally:
            message.__dict__["metadata"] = kept

    monkeypatch.setattr(save_tracking._Slot, "holds", ignoring_metadata)


def _equal_instants_taken_as_same(monkeypatch: pytest.MonkeyPatch) -> None:
    holds = save_tracking._Slot.holds

    def by_equality(self: Any, message: Any) -> bool:
        kept = message.created_at
        if kept == self.created_at:
            message.__dict__["created_at"] = self.created_at
        try:
            return holds(self, message)
        finally:
            message.__dict__["created_at"] = kept

    monkeypatch.setattr(save_tracking._Slot, "holds", by_equality)


def _revision_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    save = memory.MemoryStore.save_revisioned

    def unconditional(
        self: Any, conversation: Any, messages: Any, *, replace: bool = False, expected: Hashable | None = None
    ) -> Hashable | None:
        return save(self, conversation, messages, replace=replace, expected=None)

    monkeypatch.setattr(memory.MemoryStore, "save_revisioned", unconditional)


def _moves_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(save_tracking.SavedState, "moved", lambda self, sent, records: False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "break_it",
    [_metadata_ignored, _equal_instants_taken_as_same, _revision_not_checked, _moves_not_checked],
    ids=lambda f: f.__name__.strip("_"),
)
def test_the_mutation_property_catches(monkeypatch: pytest.MonkeyPatch, break_it: Callable[..., None]) -> None:
    break_it(monkeypatch)
    with pytest.raises(AssertionError, match="mutated saves"):
        check_mutated_saves(lambda name: MemoryStore(), max_examples=400, derandomize=True)


@pytest.mark.parametrize("url", ["memory://", "sqlite://"])
@pytest.mark.parametrize("broken", [False, True], ids=["as_built", "types_ignored"])
def test_a_metadata_value_that_only_changes_type_is_saved_again(
    monkeypatch: pytest.MonkeyPatch, url: str, broken: bool
) -> None:
    """1 -> True and 1.0 -> 1 are equal in Python but not in JSON: the shortcut must not skip them.

    A direct case rather than a property run: the generated runs meet such a change
    only now and then, so they cannot prove this check on a fresh example database.
    """
    if broken:
        _types_ignored(monkeypatch)
    with SessionManager(url=url) as manager:
        conversation = Conversation()
        message = conversation.add_user_message("hi")
        message.metadata = {"n": 1, "inner": [1.0]}
        manager.save_conversation(conversation)
        message.metadata["n"] = True
        message.metadata["inner"][0] = 1
        manager.save_conversation(conversation)
        loaded = manager.load_conversation(str(conversation.id))
    assert loaded is not None
    stored = loaded.messages[0].metadata
    kept = type(stored["n"]) is bool and type(stored["inner"][0]) is int
    assert kept is not broken, f"stored metadata {stored!r} (shortcut broken: {broken})"


@pytest.mark.slow
def test_the_mutation_property_holds_on_sqlite_with_small_batches(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With index batches of 2 the rows cross the waiting/indexed line during the run."""
    from qv_session_manager.backends.sqlite import store as store_module

    monkeypatch.setattr(store_module, "FLUSH_AT", 2)
    check_mutated_saves(lambda name: SQLiteStore(tmp_path / f"{name}.db"), max_examples=30)


@pytest.fixture(autouse=True)
def _no_leftover_patches() -> Iterator[None]:
    yield
