"""The OpenAI Agents SDK's ``SQLiteSession`` (openai-agents 0.24.0) behind the seed API's names.

Runs only in ``benchmarks/.cache/openai-venv`` (created by run.py). One SQLite file
holds every conversation; each conversation is one session (``session_id`` = the
conversation id). ``SQLiteSession`` uses WAL and Python's default
``synchronous=FULL``, one transaction per ``add_items`` call, no full-text index,
and has no search, list or time search: only the writes, the load and the delete
are measured. Its methods are coroutines that hop to a worker thread; they run on
one event loop kept for the whole worker, so no loop is created per call.

Session objects are created outside the timings (one per conversation, as an app
keeps one per chat) except in ``load_conversation``, where a fresh session's first
call also opens its connection, as when an app loads a chat it does not hold.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents import SQLiteSession


def message_item(message: Any) -> dict:
    """An SDK Message as the Responses-API input item the Agents SDK stores."""
    return {"role": message.role.value, "content": message.content}


class OpenAIStore:
    """One SQLite file of ``SQLiteSession`` sessions, driven synchronously."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self.loop = asyncio.new_event_loop()
        self.sessions: dict[str, SQLiteSession] = {}

    def session(self, conversation_id: str) -> SQLiteSession:
        """The session of a conversation, created (and its schema checked) on first use."""
        found = self.sessions.get(conversation_id)
        if found is None:
            found = self.sessions[conversation_id] = SQLiteSession(conversation_id, self.db_path)
        return found

    def add_items(self, conversation_id: str, messages: list[Any]) -> None:
        """``add_items`` of these messages: one transaction."""
        items = [message_item(m) for m in messages]
        self.loop.run_until_complete(self.session(conversation_id).add_items(items))  # type: ignore[arg-type]

    def load_conversation(self, conversation_id: str) -> list[Any]:
        """A fresh session's ``get_items()`` (every item, decoded from JSON)."""
        session = SQLiteSession(conversation_id, self.db_path)
        try:
            return self.loop.run_until_complete(session.get_items())
        finally:
            session.close()

    def delete_conversation(self, conversation_id: str) -> None:
        """``clear_session()``: the session's messages and its row, in one transaction."""
        self.loop.run_until_complete(self.session(conversation_id).clear_session())

    def release(self, conversation_id: str) -> None:
        """Close and forget a conversation's session (untimed housekeeping)."""
        session = self.sessions.pop(conversation_id, None)
        if session is not None:
            session.close()

    def close(self) -> None:
        """Close every session and the event loop."""
        for conversation_id in list(self.sessions):
            self.release(conversation_id)
        self.loop.close()
