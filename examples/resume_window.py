"""Resume a long chat from its last turns, then branch it at an earlier message."""

from __future__ import annotations

from qv_ollama_sdk.domain.models import Conversation, Function, ToolCall

from qv_session_manager import SessionManager

with SessionManager(url="memory://") as mgr:
    chat = Conversation(title="Travel", model_name="llama3")
    chat.add_system_message("You plan trips.")
    for day in range(1, 51):
        chat.add_user_message(f"Idea for day {day}?")
        chat.add_assistant_message(f"Visit museum {day}.")
    chat.add_user_message("Weather in Rome?")
    calling = chat.add_assistant_message("")
    calling.tool_calls = [ToolCall(function=Function(name="get_weather", arguments={"city": "Rome"}), id="w1")]
    chat.add_tool_message("25 degrees", "w1", "get_weather")
    chat.add_assistant_message("25 degrees: pack light.")
    mgr.save_conversation(chat)

    window = mgr.load_conversation(str(chat.id), last_messages=2)
    assert window is not None
    print(f"stored: {len(chat.messages)} messages")
    print("last 2, widened to keep the tool call:", " ".join(m.role.value for m in window.messages))
    resumed = mgr.resume_conversation(str(chat.id), last_turns=1)
    assert resumed is not None
    print("last turn:", [m.content for m in resumed["conversation"].messages])

    fork = mgr.fork_conversation(str(chat.id), str(chat.messages[2].id), title="Travel, plan B")
    print(f"fork: {fork.title!r} with {len(fork.messages)} messages")
    print("forked from the original:", fork.metadata["forked_from"]["conversation_id"] == str(chat.id))
