"""Chats that save themselves: qv_session_manager.ollama, end to end.

The real ``OllamaChatClient`` talks HTTP to the stand-in server of
``ollama_standin.py``; what reaches the store is read back through a second
SessionManager (or the store itself) to see what another process would see.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ollama import ResponseError
from qv_ollama_sdk.client import OllamaChatClient
from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

from qv_session_manager import SessionManager
from qv_session_manager.errors import ConversationNotFoundError, InvalidInputError, StorageError
from qv_session_manager.ollama import AutoSave, attached, autosave, resume

from ollama_standin import FAIL, FAIL_MIDWAY, StandIn, route_ollama


def get_weather(city: str) -> str:
    """Tell the weather of a city.

    Args:
      city: The city's name
    """
    return f"sunny in {city}"


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    with StandIn() as server:
        route_ollama(monkeypatch, server.url)
        yield server


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "chats.db"


@pytest.fixture
def manager(db: Path) -> Iterator[SessionManager]:
    with SessionManager(db_path=db) as mgr:
        yield mgr


def stored(db: Path, conversation_id: str) -> Conversation | None:
    """The conversation as a second SessionManager on the same file sees it."""
    with SessionManager(db_path=db) as other:
        return other.load_conversation(conversation_id)


def rows(conversation: Conversation | None) -> list[tuple[str, str]]:
    assert conversation is not None, "the conversation is not stored"
    return [(m.role.value, m.content) for m in conversation.messages]


def ids(messages: list[Message]) -> list[str]:
    return [str(m.id) for m in messages]


def new_client(system: str | None = "Be brief.") -> OllamaChatClient:
    return OllamaChatClient(model_name="standin-model", system_message=system)


def test_chat_saves_each_turn(standin: StandIn, manager: SessionManager, db: Path) -> None:
    client = new_client()
    saver = autosave(client, manager)

    assert client.chat("hello").content == "echo: hello (2 messages)"
    assert rows(stored(db, saver.conversation_id)) == [
        ("system", "Be brief."),
        ("user", "hello"),
        ("assistant", "echo: hello (2 messages)"),
    ]
    client.chat("again")
    after_two = stored(db, saver.conversation_id)
    assert rows(after_two)[3:] == [("user", "again"), ("assistant", "echo: again (4 messages)")]
    assert after_two is not None and ids(after_two.messages) == ids(client.conversation.messages)
    assert after_two.model_name == "standin-model"
    assert saver.pending() == []


def test_nothing_is_written_before_the_first_turn(standin: StandIn, manager: SessionManager, db: Path) -> None:
    client = new_client()
    client.conversation.add_user_message("written before attaching")
    saver = autosave(client, manager)
    assert stored(db, saver.conversation_id) is None
    assert ids(saver.pending()) == ids(client.conversation.messages)

    client.chat("first turn")
    assert rows(stored(db, saver.conversation_id))[:3] == [
        ("system", "Be brief."),
        ("user", "written before attaching"),
        ("user", "first turn"),
    ]


def test_stream_chat_is_saved_when_exhausted(standin: StandIn, manager: SessionManager, db: Path) -> None:
    client = new_client()
    saver = autosave(client, manager)
    client.chat("hello")
    before = rows(stored(db, saver.conversation_id))

    stream = client.stream_chat("tell me more")
    pieces = [next(stream).content]
    assert rows(stored(db, saver.conversation_id)) == before, "saved before the stream ended"
    pieces += [chunk.content for chunk in stream]

    assert "".join(pieces) == "echo: tell me more (4 messages)"
    assert rows(stored(db, saver.conversation_id)) == before + [
        ("user", "tell me more"),
        ("assistant", "echo: tell me more (4 messages)"),
    ]


def test_stream_never_iterated_saves_nothing(standin: StandIn, manager: SessionManager, db: Path) -> None:
    client = new_client()
    saver = autosave(client, manager)
    client.stream_chat("never read")
    assert standin.requests == []
    assert stored(db, saver.conversation_id) is None


def test_stream_stopped_early_saves_the_user_message(standin: StandIn, manager: SessionManager, db: Path) -> None:
    client = new_client()
    saver = autosave(client, manager)
    client.chat("hello")

    with contextlib.closing(client.stream_chat("a long answer please")) as stream:
        next(stream)
    # The SDK drops a partial reply and keeps the user message; the store mirrors it.
    assert rows(stored(db, saver.conversation_id))[3:] == [("user", "a long answer please")]
    assert rows(stored(db, saver.conversation_id)) == rows(client.conversation)

    for _ in client.stream_chat("and now in full"):
        pass
    assert rows(stored(db, saver.conversation_id))[4:] == [
        ("user", "and now in full"),
        ("assistant", "echo: and now in full (5 messages)"),
    ]


def test_break_in_a_for_loop_saves_when_the_stream_goes(standin: StandIn, manager: SessionManager, db: Path) -> None:
    client = new_client()
    saver = autosave(client, manager)
    for _ in client.stream_chat("stop me"):
        break
    assert rows(stored(db, saver.conversation_id)) == [("system", "Be brief."), ("user", "stop me")]


def test_tool_call_turn_saves_tool_calls_and_results(standin: StandIn, manager: SessionManager, db: Path) -> None:
    client = new_client()
    # qv-ollama-sdk 1.0.0 executes tools from the client's registry, which chat()
    # does not fill from `tools`: the function must be registered there too.
    client.tool_registry.register(get_weather)
    saver = autosave(client, manager)

    response = client.chat("Paris", tools=[get_weather])

    assert response.content == "The tool said: sunny in Paris"
    conversation = stored(db, saver.conversation_id)
    assert conversation is not None
    user, assistant, tool = conversation.messages[1:]
    assert (user.role, user.content) == (MessageRole.USER, "Paris")
    assert assistant.role == MessageRole.ASSISTANT and assistant.tool_calls is not None
    assert [(c.function.name, c.function.arguments) for c in assistant.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert (tool.role, tool.content, tool.metadata) == (
        MessageRole.TOOL,
        "sunny in Paris",
        {"function_name": "get_weather"},
    )
    assert tool.tool_call_id == ""  # Ollama sends no call id; the SDK stores ""
    assert ids(conversation.messages) == ids(client.conversation.messages)
    # The model got the tool result before answering.
    assert standin.requests[-1]["messages"][-1] == {"role": "tool", "content": "sunny in Paris"}


def test_streamed_tool_call_turn_is_saved(standin: StandIn, manager: SessionManager, db: Path) -> None:
    client = new_client()
    client.tool_registry.register(get_weather)
    saver = autosave(client, manager)

    text = "".join(chunk.content for chunk in client.stream_chat("Rome", tools=[get_weather]))

    assert text == "The tool said: sunny in Rome"
    conversation = stored(db, saver.conversation_id)
    assert conversation is not None
    assert [m.role.value for m in conversation.messages] == ["system", "user", "assistant", "tool"]
    assistant, tool = conversation.messages[2:]
    assert assistant.tool_calls is not None and assistant.tool_calls[0].function.arguments == {"city": "Rome"}
    assert tool.content == "sunny in Rome"


def test_resume_continues_the_same_conversation(standin: StandIn, db: Path) -> None:
    with SessionManager(db_path=db) as first:
        client = new_client()
        autosave(client, first)
        client.chat("hello")
        conversation_id = str(client.conversation.id)
        earlier = ids(client.conversation.messages)

    with SessionManager(db_path=db) as second:
        resumed = resume(second, conversation_id)
        assert str(resumed.conversation.id) == conversation_id
        assert attached(resumed) is not None
        assert resumed.chat("where were we?").content == "echo: where were we? (4 messages)"
        # The model received the stored history.
        assert [m["content"] for m in standin.requests[-1]["messages"][:3]] == [
            "Be brief.",
            "hello",
            "echo: hello (2 messages)",
        ]

    conversation = stored(db, conversation_id)
    assert conversation is not None
    assert ids(conversation.messages)[:3] == earlier
    assert rows(conversation)[3:] == [("user", "where were we?"), ("assistant", "echo: where were we? (4 messages)")]


def test_resume_with_another_model_records_it(standin: StandIn, manager: SessionManager, db: Path) -> None:
    client = new_client()
    autosave(client, manager)
    client.chat("hello")

    resumed = resume(manager, str(client.conversation.id), model_name="other-model")
    resumed.chat("hi")

    assert standin.requests[-1]["model"] == "other-model"
    conversation = stored(db, str(client.conversation.id))
    assert conversation is not None and conversation.model_name == "other-model"
    assert len(conversation.messages) == 5


@pytest.mark.parametrize("missing", ["8b4b2f7e-1111-4222-8333-944445555666", "invalid-id"])
def test_resume_of_a_missing_conversation_raises(manager: SessionManager, missing: str) -> None:
    with pytest.raises(ConversationNotFoundError):
        resume(manager, missing)


def test_resume_refuses_a_system_message(standin: StandIn, manager: SessionManager) -> None:
    client = new_client()
    autosave(client, manager)
    client.chat("hello")
    with pytest.raises(InvalidInputError):
        resume(manager, str(client.conversation.id), system_message="new rules")


class Spy:
    """Records the manager's save and append calls, then does them."""

    def __init__(self, manager: SessionManager, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        save, add = manager.save_conversation, manager.add_messages

        def save_conversation(conversation: Conversation, messages: Any = None, **kwargs: Any) -> None:
            chosen = conversation.messages if messages is None else list(messages)
            self.calls.append(("save_conversation", [m.content for m in chosen]))
            save(conversation, chosen, **kwargs)

        def add_messages(conversation_id: str, messages: Any, **kwargs: Any) -> None:
            messages = list(messages)
            self.calls.append(("add_messages", [m.content for m in messages]))
            add(conversation_id, messages, **kwargs)

        monkeypatch.setattr(manager, "save_conversation", save_conversation)
        monkeypatch.setattr(manager, "add_messages", add_messages)


def test_turns_append_and_never_rewrite_the_history(
    standin: StandIn, manager: SessionManager, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(manager, monkeypatch)
    client = new_client()
    saver = autosave(client, manager)

    client.chat("one")
    first = stored(db, saver.conversation_id)
    for _ in client.stream_chat("two"):
        pass
    client.chat("three")

    assert spy.calls == [
        ("save_conversation", ["Be brief.", "one", "echo: one (2 messages)"]),
        ("add_messages", ["two", "echo: two (4 messages)"]),
        ("add_messages", ["three", "echo: three (6 messages)"]),
    ]
    last = stored(db, saver.conversation_id)
    assert first is not None and last is not None
    assert ids(last.messages)[:3] == ids(first.messages)
    assert [m.created_at for m in last.messages[:3]] == [m.created_at for m in first.messages]


def test_a_failing_server_saves_only_the_unanswered_user_message(
    standin: StandIn, manager: SessionManager, db: Path
) -> None:
    client = new_client()
    saver = autosave(client, manager)
    client.chat("hello")
    before = rows(stored(db, saver.conversation_id))

    with pytest.raises(ResponseError) as failure:
        client.chat(FAIL)
    assert failure.value.status_code == 500
    assert rows(stored(db, saver.conversation_id)) == before + [("user", FAIL)]
    assert rows(stored(db, saver.conversation_id)) == rows(client.conversation)

    client.chat("retry")
    assert rows(stored(db, saver.conversation_id))[-2:] == [
        ("user", "retry"),
        ("assistant", "echo: retry (5 messages)"),
    ]


def test_a_stream_failing_midway_saves_only_the_user_message(
    standin: StandIn, manager: SessionManager, db: Path
) -> None:
    client = new_client()
    saver = autosave(client, manager)
    received = []
    with pytest.raises(ResponseError):
        for chunk in client.stream_chat(FAIL_MIDWAY):
            received.append(chunk.content)
    assert received, "the stream failed before its first chunk"
    assert rows(stored(db, saver.conversation_id)) == [("system", "Be brief."), ("user", FAIL_MIDWAY)]


def test_a_failed_save_raises_after_the_turn_and_catches_up(standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = SessionManager(url="memory://")
    client = new_client()
    saver = autosave(client, manager)
    client.chat("hello")

    def broken_append(*args: Any, **kwargs: Any) -> bool:
        raise StorageError("disk on fire")

    with monkeypatch.context() as patch:
        patch.setattr(manager.store, "append", broken_append)
        with pytest.raises(StorageError):
            client.chat("lost?")
        # The turn completed: the reply is in the client, waiting to be saved.
        assert [m.content for m in saver.pending()] == ["lost?", "echo: lost? (4 messages)"]
        with pytest.raises(ResponseError):  # the turn's error wins over the save's
            client.chat(FAIL)

    client.chat("back")
    loaded = manager.load_conversation(saver.conversation_id)
    assert loaded is not None and ids(loaded.messages) == ids(client.conversation.messages)
    assert saver.pending() == []


def test_a_conversation_deleted_meanwhile_is_not_recreated(standin: StandIn, manager: SessionManager) -> None:
    client = new_client()
    saver = autosave(client, manager)
    client.chat("hello")
    assert manager.delete_conversation(saver.conversation_id)

    with pytest.raises(ConversationNotFoundError):
        client.chat("anyone?")
    assert client.conversation.messages[-1].content == "echo: anyone? (4 messages)"
    assert manager.load_conversation(saver.conversation_id) is None


def test_another_conversation_assigned_to_the_client_is_saved_as_new(standin: StandIn, manager: SessionManager) -> None:
    client = new_client()
    saver = autosave(client, manager)
    client.chat("first conversation")
    first_id = saver.conversation_id

    client.conversation = Conversation(model_name="standin-model", title="second")
    client.chat("second conversation")

    assert saver.conversation_id != first_id
    assert rows(manager.load_conversation(saver.conversation_id)) == [
        ("user", "second conversation"),
        ("assistant", "echo: second conversation (1 messages)"),
    ]
    assert len(rows(manager.load_conversation(first_id))) == 3


def test_attaching_and_detaching(standin: StandIn, manager: SessionManager) -> None:
    client = new_client()
    saver = autosave(client, manager)
    assert isinstance(saver, AutoSave) and saver.is_attached
    assert attached(client) is saver
    assert autosave(client, manager) is saver
    with SessionManager(url="memory://") as other, pytest.raises(InvalidInputError):
        autosave(client, other)

    saver.detach()
    saver.detach()
    assert not saver.is_attached and attached(client) is None
    assert "chat" not in vars(client) and "stream_chat" not in vars(client)
    client.chat("unsaved")
    assert manager.load_conversation(saver.conversation_id) is None

    again = autosave(client, manager)
    assert again is not saver
    client.chat("saved")
    assert len(rows(manager.load_conversation(again.conversation_id))) == 5


def test_autosave_refuses_what_is_not_a_client(manager: SessionManager) -> None:
    with pytest.raises(InvalidInputError):
        autosave(object(), manager)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        autosave(new_client(), object())  # type: ignore[arg-type]


TURNS = ["chat", "stream", "stream_stopped", "fail", "fail_midway", "tool", "tool_stream", "sync"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=st.lists(st.sampled_from(TURNS), min_size=1, max_size=6))
def test_the_store_mirrors_the_client_after_every_turn(standin: StandIn, turns: list[str]) -> None:
    """Property: however each turn ends, the store then holds exactly the client's
    messages in its order, and what was stored before keeps its place."""
    with SessionManager(url="memory://") as manager:
        client = new_client()
        client.tool_registry.register(get_weather)
        saver = autosave(client, manager)
        before: list[str] = []
        for number, turn in enumerate(turns):
            with contextlib.suppress(ResponseError):
                run_turn(client, saver, turn, f"turn {number}")
            conversation = manager.load_conversation(saver.conversation_id)
            if turn == "sync" and not before:
                assert conversation is not None and conversation.messages[0].content == "Be brief."
            assert conversation is not None
            now = ids(conversation.messages)
            assert now == ids(client.conversation.messages)
            assert now[: len(before)] == before
            before = now


def run_turn(client: OllamaChatClient, saver: AutoSave, turn: str, text: str) -> None:
    if turn == "chat":
        client.chat(text)
    elif turn == "stream":
        for _ in client.stream_chat(text):
            pass
    elif turn == "stream_stopped":
        with contextlib.closing(client.stream_chat(text)) as stream:
            next(stream)
    elif turn == "fail":
        client.chat(FAIL)
    elif turn == "fail_midway":
        for _ in client.stream_chat(FAIL_MIDWAY):
            pass
    elif turn == "tool":
        client.chat(text, tools=[get_weather])
    elif turn == "tool_stream":
        for _ in client.stream_chat(text, tools=[get_weather]):
            pass
    else:
        saver.sync()


def test_the_readme_example_runs(standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Chats with Ollama that save themselves", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    namespace["mgr"].close()
    with SessionManager(db_path=tmp_path / "my_sessions.db") as mgr:
        conversation = mgr.load_conversation(namespace["saver"].conversation_id)
    assert [role for role, _ in rows(conversation)] == ["system"] + ["user", "assistant"] * 3
