"""Everything a record carries comes back exactly, on every backend."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from qv_ollama_sdk.domain.models import Conversation, Function, Message, MessageRole, ToolCall

from factories import conversation, message
from qv_session_manager import InvalidInputError, SessionManager
from qv_session_manager.records import StoredConversation, ToolCallRecord
from strategies import conversations, message_lists


def _same_instant_and_offset(a: datetime, b: datetime) -> bool:
    return a == b and a.utcoffset() == b.utcoffset() and (a.tzinfo is None) == (b.tzinfo is None)


def assert_round_trip(stored: StoredConversation | None, expected: StoredConversation) -> None:
    assert stored is not None, "a saved conversation must load"
    assert stored == expected, "loaded records differ from the saved ones"
    pairs = [(stored.conversation.created_at, expected.conversation.created_at),
             (stored.conversation.updated_at, expected.conversation.updated_at)]
    pairs += [(a.created_at, b.created_at) for a, b in zip(stored.messages, expected.messages)]
    for got, want in pairs:
        assert _same_instant_and_offset(got, want), f"timestamp {want!r} came back as {got!r}"
    for got, want in zip(stored.messages, expected.messages):
        for image_got, image_want in zip(got.images or (), want.images or ()):
            assert type(image_got) is type(image_want), "str and bytes images must stay apart"


@given(conversations(), message_lists())
@settings(max_examples=40)
def test_any_records_round_trip(make_store, record, messages) -> None:
    store = make_store()
    store.save(record, messages)
    assert_round_trip(store.load(record.id), StoredConversation(record, tuple(messages)))


@pytest.mark.parametrize(
    "content",
    ["", "a\x00b", "\x01\x02\x1f\x7f", "line\r\nbreak\ttab", "🙂 emoji and RTL עברית", "x" * 10_000_000],
    ids=["empty", "nul", "controls", "newlines", "emoji-rtl", "10MB"],
)
def test_hostile_content_round_trips(store, content: str) -> None:
    record = conversation(title=content[:100])
    sent = message(content)
    store.save(record, [sent])
    assert_round_trip(store.load(record.id), StoredConversation(record, (sent,)))


def test_timestamps_keep_naive_aware_offsets_and_microseconds(store) -> None:
    naive = datetime(2025, 1, 20, 10, 0, 0, 123456)
    plus_two = datetime(2025, 1, 20, 10, 0, 0, 1, tzinfo=timezone(timedelta(hours=2)))
    record = conversation(created=naive, updated=plus_two)
    sent = [message("a", at=plus_two.astimezone(timezone.utc)), message("b", at=naive.replace(microsecond=0))]
    store.save(record, sent)
    assert_round_trip(store.load(record.id), StoredConversation(record, tuple(sent)))


def test_sdk_objects_round_trip_with_tool_calls_images_and_metadata(manager: SessionManager) -> None:
    conv = Conversation(title="Weather", model_name="llama3", metadata={"nested": {"a": [1, 2.5, None, True]}})
    conv.add_system_message("You are helpful.")
    conv.add_user_message("What is on this picture?", images=["aGVsbG8=", b"\x89PNG\x00raw"])
    assistant = Message(
        role=MessageRole.ASSISTANT,
        content="",
        tool_calls=[ToolCall(function=Function(name="get_weather", arguments={"city": "Paris"}), id="call_1")],
    )
    conv.messages.append(assistant)
    conv.add_tool_message("18°C", tool_call_id="call_1", function_name="get_weather")
    manager.save_conversation(conv, conv.messages)
    loaded = manager.load_conversation(str(conv.id))
    assert loaded == conv, "the SDK Conversation must come back equal, field for field"
    assert loaded.messages[2].tool_calls[0].id == "call_1"
    assert loaded.messages[3].tool_call_id == "call_1"
    assert loaded.messages[1].images == ["aGVsbG8=", b"\x89PNG\x00raw"]


def test_ten_thousand_messages_round_trip_in_order(store) -> None:
    record = conversation()
    sent = [message(f"message {i}", id=f"m{i:05d}") for i in range(10_000)]
    store.save(record, sent)
    loaded = store.load(record.id)
    assert loaded is not None and [m.id for m in loaded.messages] == [m.id for m in sent]


@pytest.mark.parametrize(
    "build",
    [
        lambda: message("bad \ud800 surrogate"),
        lambda: message("ok", metadata={"x": float("nan")}),
        lambda: message("ok", metadata={1: "int key"}),
        lambda: message("ok", metadata={"t": (1, 2)}),
        lambda: message("ok", metadata={"when": datetime(2025, 1, 1)}),
        lambda: message("ok", role="robot"),
        lambda: message("ok", id=""),
        lambda: message("ok", tool_calls=(ToolCallRecord("f", {"a": {1, 2}}),)),
        lambda: conversation(title="\udfff"),
        lambda: conversation(metadata={"inf": float("inf")}),
    ],
    ids=["surrogate", "nan", "int-key", "tuple", "datetime", "role", "empty-id", "set-arg", "title-surrogate", "inf"],
)
def test_unstorable_records_are_refused_with_a_value_error(build) -> None:
    with pytest.raises(InvalidInputError) as caught:
        build()
    assert isinstance(caught.value, ValueError)


def test_unstorable_sdk_message_leaves_stored_conversation_unchanged(manager: SessionManager) -> None:
    conv = Conversation(title="keep me")
    conv.add_user_message("first")
    manager.save_conversation(conv)
    before = manager.load_conversation(str(conv.id))
    conv.title = "changed"
    conv.add_user_message("fine")
    conv.add_user_message("broken \ud800")
    with pytest.raises(InvalidInputError):
        manager.save_conversation(conv)
    assert manager.load_conversation(str(conv.id)) == before
