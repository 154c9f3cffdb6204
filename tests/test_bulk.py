"""SessionManager.save_many (bulk import) and iter_conversations (streaming export)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import InvalidInputError, SessionManager
from qv_session_manager import manager as manager_module
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.convert import record_to_conversation
from qv_session_manager.protocol import ConversationStore, SaveItem
from qv_session_manager.records import StoredConversation
from qv_session_manager.testing import strategies

#: Whole SDK conversations, from the records strategies (ids unique per conversation).
sdk_conversations = st.builds(
    lambda record, messages: record_to_conversation(StoredConversation(record, tuple(messages))),
    strategies.conversations(),
    strategies.message_lists(),
)


def snapshot(manager: SessionManager) -> list[tuple[Any, ...]]:
    """Everything stored, comparable: each conversation with its messages as dicts."""
    return [
        (
            c.id,
            c.title,
            c.model_name,
            c.created_at,
            c.updated_at,
            c.metadata,
            [(m.to_db_dict(), m.images, m.tool_calls) for m in c.messages],
        )
        for c in manager.iter_conversations()
    ]


def chat(index: int, turns: int = 3) -> Conversation:
    conversation = Conversation(title=f"chat {index}", metadata={"n": index})
    for turn in range(turns):
        conversation.add_user_message(f"question {index}.{turn}")
        conversation.add_assistant_message(f"answer {index}.{turn}")
    return conversation


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(sdk_conversations, max_size=6), batch_size=st.integers(1, 4))
def test_save_many_stores_what_save_conversation_stores(
    make_store: Callable[[], ConversationStore], batch: list[Conversation], batch_size: int
) -> None:
    bulk, single = SessionManager(store=make_store()), SessionManager(store=make_store())
    assert bulk.save_many(iter(batch), batch_size=batch_size) == len(batch)
    for conversation in batch:
        single.save_conversation(conversation)
    assert snapshot(bulk) == snapshot(single)


class RecordingStore(MemoryStore):
    """A memory store that remembers the size of each bulk save."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def save_many(self, items: Iterable[SaveItem]) -> int:
        saved = super().save_many(items)
        self.batches.append(saved)
        return saved


def test_save_many_batches_by_conversations_and_by_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    store = RecordingStore()
    manager = SessionManager(store=store)
    assert manager.save_many((chat(i) for i in range(7)), batch_size=3) == 7
    assert store.batches == [3, 3, 1]
    monkeypatch.setattr(manager_module, "BATCH_MESSAGE_LIMIT", 10)  # chat() has 6 messages
    store.batches.clear()
    manager.save_many((chat(i) for i in range(5)), batch_size=100)
    assert store.batches == [2, 2, 1]


def test_save_many_reads_the_input_lazily() -> None:
    store = RecordingStore()
    pulled = 0

    def source() -> Iterator[Conversation]:
        nonlocal pulled
        for index in range(10):
            pulled += 1
            # Never more than one batch ahead of what was written.
            assert pulled - sum(store.batches) <= 4
            yield chat(index)

    assert SessionManager(store=store).save_many(source(), batch_size=4) == 10


def test_save_many_refuses_a_bad_conversation_and_names_it(store: ConversationStore) -> None:
    manager = SessionManager(store=store)
    bad = chat(3)
    bad.messages[1].content = "lone \ud800 surrogate"
    batch = [chat(0), chat(1), chat(2), bad, chat(4)]
    with pytest.raises(InvalidInputError, match="conversation 3 of the input"):
        manager.save_many(batch, batch_size=2)
    # The first batch (0, 1) was written; the batch holding the bad one (2, 3) was not.
    assert sorted(c["title"] for c in manager.list_conversations()) == ["chat 0", "chat 1"]
    assert manager.search_conversations("question") and not manager.search_conversations("2.0")


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "2"])
def test_sizes_must_be_positive_ints(size: Any) -> None:
    manager = SessionManager(store=MemoryStore())
    with pytest.raises(InvalidInputError):
        manager.save_many([], batch_size=size)
    with pytest.raises(InvalidInputError):
        manager.iter_conversations(page_size=size)  # refused when called, not when first iterated


def test_save_many_falls_back_to_one_save_each(tmp_path: Path) -> None:
    """A store without save_many (jsonl) gets the same result through save()."""
    pytest.importorskip("qv_session_manager_jsonl")
    manager = SessionManager(url=f"jsonl:///{tmp_path / 'chats'}")
    reference = SessionManager(store=MemoryStore())
    batch = [chat(i, turns=i % 3) for i in range(5)]
    assert manager.save_many(batch, batch_size=2) == 5
    reference.save_many(batch)
    assert snapshot(manager) == snapshot(reference)


def test_iter_conversations_streams_everything_newest_first(manager: SessionManager) -> None:
    batch = [chat(i) for i in range(11)]
    manager.save_many(batch)
    listed = [c["id"] for c in manager.list_conversations()]
    streamed = list(manager.iter_conversations(page_size=4))
    assert [str(c.id) for c in streamed] == listed
    loaded = {str(c.id): c for c in streamed}
    for original in batch:
        assert [m.content for m in loaded[str(original.id)].messages] == [m.content for m in original.messages]
    assert [c.metadata["n"] for c in manager.iter_conversations(metadata={"n": 4})] == [4]


def test_iter_conversations_skips_conversations_deleted_meanwhile(manager: SessionManager) -> None:
    batch = [chat(i) for i in range(6)]
    manager.save_many(batch)
    listed = [c["id"] for c in manager.list_conversations()]
    stream = manager.iter_conversations(page_size=2)
    first = next(stream)
    manager.delete_conversation(listed[1])  # on the first page, not yet yielded
    manager.delete_conversation(listed[4])  # on a later page
    rest = [str(c.id) for c in stream]
    assert [str(first.id), *rest] == [i for i in listed if i not in (listed[1], listed[4])]
