"""SDK objects round-trip through SessionManager; unstorable data is refused up front.

Store-level fidelity is part of the conformance suite (qv_session_manager.testing).
"""

from __future__ import annotations

import pickle
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qv_ollama_sdk.domain.models import Conversation, Function, Message, MessageRole, ToolCall

from qv_session_manager import InvalidInputError, SessionManager
from qv_session_manager.convert import _sdk_id
from qv_session_manager.records import ToolCallRecord
from qv_session_manager.testing.contract import conversation, message


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


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"k": value}
    return value


def _cyclic() -> dict:
    value: dict = {}
    value["self"] = value
    return value


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
        lambda: conversation(metadata={"big": 2**63}),
        lambda: conversation(metadata=_nested(150)),
        lambda: conversation(metadata=_cyclic()),
        lambda: conversation(updated=datetime.min.replace(tzinfo=timezone(timedelta(hours=1)))),
        lambda: message(at=datetime.max.replace(tzinfo=timezone(timedelta(hours=-1)))),
    ],
    ids=[
        "surrogate",
        "nan",
        "int-key",
        "tuple",
        "datetime",
        "role",
        "empty-id",
        "set-arg",
        "title-surrogate",
        "inf",
        "int-beyond-64-bits",
        "too-deep",
        "cyclic",
        "before-utc-year-1",
        "after-utc-year-9999",
    ],
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


@given(st.uuids())
def test_loaded_uuid_ids_are_the_uuids_that_were_saved(value: uuid.UUID) -> None:
    """Loads rebuild stored canonical UUID text without uuid.UUID's parser: the result is the same UUID."""
    rebuilt = _sdk_id(str(value))
    assert type(rebuilt) is uuid.UUID
    assert (rebuilt, hash(rebuilt), str(rebuilt), rebuilt.version, rebuilt.is_safe) == (
        value,
        hash(value),
        str(value),
        value.version,
        value.is_safe,
    )
    assert pickle.loads(pickle.dumps(rebuilt)) == value


@pytest.mark.parametrize(
    "stored", ["plain-id", "6F1D8A52-3C1B-4F0E-9D54-1B0B6A6C2F11", "{6f1d8a52-3c1b-4f0e-9d54-1b0b6a6c2f11}"]
)
def test_ids_stored_in_other_spellings_load_as_uuid_would_read_them(stored: str) -> None:
    try:
        expected: object = uuid.UUID(stored)
    except ValueError:
        expected = stored
    assert _sdk_id(stored) == expected
