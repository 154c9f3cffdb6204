"""A chat with Ollama that saves itself, then goes on in a "later run".

Needs a running Ollama (``OLLAMA_HOST``, default ``http://127.0.0.1:11434``) and a
pulled model::

    OLLAMA_MODEL=llama3.2 python examples/ollama_chat.py [--url sqlite:///chats.db]

Without ``--url`` (or ``QV_SESSION_MANAGER_URL``) the chat is stored in a new
temporary directory, so the working directory stays clean. Every turn, streamed or
not, with or without a tool call, is in the store as soon as it ends; a second
SessionManager then resumes the conversation by its id.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from qv_ollama_sdk.client import OllamaChatClient

from qv_session_manager import SessionManager
from qv_session_manager.ollama import autosave, resume


def get_weather(city: str) -> str:
    """Get the current weather of a city.

    Args:
      city: The name of the city
    """
    return f"Sunny and 22 degrees in {city}"


def stored_count(manager: SessionManager, conversation_id: str) -> int:
    conversation = manager.load_conversation(conversation_id)
    return 0 if conversation is None else len(conversation.messages)


def first_session(url: str, model: str) -> str:
    """Three turns with autosave attached; returns the conversation id."""
    with SessionManager(url=url) as manager:
        client = OllamaChatClient(model_name=model, system_message="You answer in one short sentence.")
        saver = autosave(client, manager)  # from now on, client.chat/stream_chat save each turn

        reply = client.chat("What is the capital of France?")
        print(f"assistant: {reply.content}")
        print(f"stored after a chat: {stored_count(manager, saver.conversation_id)} messages")

        print("assistant (streamed): ", end="", flush=True)
        for chunk in client.stream_chat("And the capital of Italy?"):
            print(chunk.content, end="", flush=True)
        print()
        print(f"stored after a stream: {stored_count(manager, saver.conversation_id)} messages")

        # qv-ollama-sdk 1.0.0 runs tools from the client's registry only.
        client.tool_registry.register(get_weather)
        reply = client.chat("What is the weather in Paris?", tools=[get_weather])
        print(f"assistant: {reply.content}")
        print(f"stored after a tool call: {stored_count(manager, saver.conversation_id)} messages")
        return saver.conversation_id


def later_session(url: str, conversation_id: str) -> None:
    """A new manager, as a later run would open it, continues the same conversation."""
    with SessionManager(url=url) as manager:
        client = resume(manager, conversation_id)
        reply = client.chat("Thanks! Which cities did we talk about?")
        print(f"assistant (resumed): {reply.content}")
        conversation = manager.load_conversation(conversation_id)
        assert conversation is not None
        print("stored roles: " + " ".join(message.role.value for message in conversation.messages))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("OLLAMA_MODEL", "llama3.2"))
    parser.add_argument("--url", default=os.environ.get("QV_SESSION_MANAGER_URL"))
    args = parser.parse_args(argv)
    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'chats.db'}"
    try:
        conversation_id = first_session(url, args.model)
        later_session(url, conversation_id)
    except ConnectionError as error:
        print(f"cannot reach Ollama ({os.environ.get('OLLAMA_HOST', 'default host')}): {error}", file=sys.stderr)
        return 1
    print(f"conversation {conversation_id} is stored at {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
