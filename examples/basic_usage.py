"""A tour of qv-session-manager on the default SQLite backend.

Run it with ``python examples/basic_usage.py``; it works in a temporary directory,
so running it twice starts afresh.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

from qv_ollama_sdk.domain.models import (
    Conversation,
    Function,
    Message,
    MessageRole,
    ToolCall,
)

from qv_session_manager import SessionManager


def main() -> None:
    database = Path(tempfile.mkdtemp()) / "session_manager.db"
    with SessionManager(db_path=database) as mgr:
        # Save a conversation, then only what is new: saving appends.
        conv = Conversation(title="Python Help", model_name="llama3", metadata={"topic": "python"})
        conv.add_user_message("Explain Python lists to me!")
        conv.add_assistant_message("Lists are ordered, mutable collections...")
        mgr.save_conversation(conv, conv.messages)
        reply = conv.add_user_message("And what is a tuple?")
        mgr.save_conversation(conv, [reply])

        # Tool calls, tool results and images are stored too.
        weather = Conversation(title="Weather in Paris", metadata={"topic": "travel"})
        weather.add_user_message("How warm is it in Paris?")
        weather.messages.append(
            Message(
                role=MessageRole.ASSISTANT,
                content="",
                tool_calls=[ToolCall(function=Function(name="get_weather", arguments={"city": "Paris"}), id="call_1")],
            )
        )
        weather.add_tool_message("18 °C, sunny", tool_call_id="call_1", function_name="get_weather")
        weather.add_assistant_message("It is 18 °C and sunny in Paris. Résumé: a nice day!")
        mgr.save_conversation(weather)

        loaded = mgr.load_conversation(str(conv.id))
        print(f"Loaded: {loaded.title} with {len(loaded.messages)} messages")
        tool_call = mgr.load_conversation(str(weather.id)).messages[1].tool_calls[0]
        print(f"Tool call kept: {tool_call.function.name}({tool_call.function.arguments})")

        # Search: words, "phrases", prefix*, -exclusion, OR; case and accents do not matter.
        print("lists ->", [c["title"] for c in mgr.search_conversations("lists")])
        print("resume ->", [c["title"] for c in mgr.search_conversations("resume")])
        print("pyth* OR paris ->", [c["title"] for c in mgr.search_conversations("pyth* OR paris")])
        for hit in mgr.search_conversations("sunny", limit=5, order="relevance", snippets=True):
            print(f"  {hit['title']}: {hit['snippet']}")

        # Listing with a metadata filter, and time search (a date-only end includes that day).
        print("topic=travel ->", [c["title"] for c in mgr.list_conversations(metadata={"topic": "travel"})])
        today = datetime.now().strftime("%Y-%m-%d")
        print(f"updated today: {len(mgr.search_by_time(start=today, end=today))} conversations")

        resumed = mgr.resume_conversation(str(conv.id))
        print(f"Last message: {resumed['last_message']['content']}")

        print("deleted:", mgr.delete_conversation(str(weather.id)))
        print("remaining:", [c["title"] for c in mgr.list_conversations()])


if __name__ == "__main__":
    main()
