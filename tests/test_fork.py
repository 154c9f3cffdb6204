"""SessionManager.fork_conversation: branching a conversation at a message, on every local backend."""

from __future__ import annotations

import uuid

import pytest
from qv_ollama_sdk.domain.models import Conversation, Function, ToolCall

from qv_session_manager import SessionManager
from qv_session_manager.errors import ConversationNotFoundError, InvalidInputError


@pytest.fixture(params=["sqlite", "memory", "jsonl"])
def manager(request, tmp_path):  # type: ignore[no-untyped-def]
    urls = {"sqlite": f"sqlite:///{tmp_path / 'f.db'}", "memory": "memory://", "jsonl": f"jsonl:///{tmp_path / 'j'}"}
    mgr = SessionManager(url=urls[request.param])
    yield mgr
    mgr.close()


def _chat() -> Conversation:
    conversation = Conversation(title="Trip", model_name="llama3", metadata={"topic": "travel"})
    conversation.add_system_message("Plan trips.")
    conversation.add_user_message("Weather in Paris and Rome?")
    calling = conversation.add_assistant_message("")
    calling.tool_calls = [
        ToolCall(function=Function(name="get_weather", arguments={"city": "Paris"}), id="c1"),
        ToolCall(function=Function(name="get_weather", arguments={"city": "Rome"}), id="c2"),
    ]
    conversation.add_tool_message("18 degrees", "c1", "get_weather")
    conversation.add_tool_message("25 degrees", "c2", "get_weather")
    conversation.add_assistant_message("Rome is warmer.")
    conversation.add_user_message("Then Rome it is.")
    return conversation


def _fields(conversation: Conversation) -> list[tuple[object, ...]]:
    """What a fork copies of each message: everything but the id."""
    return [
        (m.role, m.content, m.images, m.created_at, m.metadata, m.tool_calls, m.tool_call_id)
        for m in conversation.messages
    ]


def test_fork_copies_history_up_to_the_message_with_new_ids(manager: SessionManager) -> None:
    chat = _chat()
    manager.save_conversation(chat)
    at = chat.messages[5]  # "Rome is warmer."
    fork = manager.fork_conversation(str(chat.id).upper(), str(at.id))
    assert fork.id != chat.id
    assert _fields(fork) == _fields(chat)[:6]
    assert not {m.id for m in fork.messages} & {m.id for m in chat.messages}, "message ids must be new"
    assert fork.title == "Trip" and fork.model_name == "llama3"
    assert fork.metadata == {
        "topic": "travel",
        "forked_from": {"conversation_id": str(chat.id), "message_id": str(at.id)},
    }
    assert manager.load_conversation(str(fork.id)) == fork, "the fork is saved as returned"
    assert manager.load_conversation(str(chat.id)) == chat, "the original is unchanged"


def test_the_link_shows_in_listings_and_filters(manager: SessionManager) -> None:
    chat = _chat()
    manager.save_conversation(chat)
    fork = manager.fork_conversation(str(chat.id), str(chat.messages[1].id), title="Paris only")
    listed = {item["id"]: item for item in manager.list_conversations()}
    assert listed[str(fork.id)]["title"] == "Paris only"
    assert listed[str(fork.id)]["metadata"]["forked_from"] == {
        "conversation_id": str(chat.id),
        "message_id": str(chat.messages[1].id),
    }
    assert "forked_from" not in listed[str(chat.id)]["metadata"]
    assert next(item["id"] for item in manager.list_conversations()) == str(fork.id), "a fork is newest"
    assert _fields(fork) == _fields(chat)[:2]


@pytest.mark.parametrize("at", [2, 3, 4])
def test_a_fork_inside_a_tool_call_group_keeps_all_its_results(manager: SessionManager, at: int) -> None:
    chat = _chat()
    manager.save_conversation(chat)
    fork = manager.fork_conversation(str(chat.id), str(chat.messages[at].id))
    assert _fields(fork) == _fields(chat)[:5], "the assistant's tool calls must keep all their results"
    assert fork.metadata["forked_from"]["message_id"] == str(chat.messages[at].id)


def test_forking_a_fork_points_at_its_parent(manager: SessionManager) -> None:
    chat = _chat()
    manager.save_conversation(chat)
    first = manager.fork_conversation(str(chat.id), str(chat.messages[-1].id))
    second = manager.fork_conversation(str(first.id), str(first.messages[0].id))
    assert second.metadata["forked_from"] == {"conversation_id": str(first.id), "message_id": str(first.messages[0].id)}
    assert _fields(second) == _fields(chat)[:1]


def test_missing_conversation_or_message(manager: SessionManager) -> None:
    chat = _chat()
    manager.save_conversation(chat)
    other = _chat()
    manager.save_conversation(other)
    before = manager.list_conversations()
    with pytest.raises(ConversationNotFoundError):
        manager.fork_conversation(str(uuid.uuid4()), str(chat.messages[0].id))
    with pytest.raises(ConversationNotFoundError):
        manager.fork_conversation(str(chat.id), str(uuid.uuid4()))
    with pytest.raises(ConversationNotFoundError):  # a message of another conversation
        manager.fork_conversation(str(chat.id), str(other.messages[0].id))
    with pytest.raises(LookupError):
        manager.fork_conversation("", "")
    with pytest.raises(InvalidInputError):
        manager.fork_conversation(str(chat.id), str(chat.messages[0].id), title=3)  # type: ignore[arg-type]
    assert manager.list_conversations() == before, "a refused fork writes nothing"
