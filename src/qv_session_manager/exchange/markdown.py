"""A readable Markdown transcript of conversations. Not importable."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TextIO

from ..records import MessageRecord, StoredConversation
from ..safe_text import terminal_safe
from .schema import dumps_line


def write_markdown(conversations: Iterable[StoredConversation], stream: TextIO) -> int:
    """Write one section per conversation, in the order given; return how many.

    Each section has the title (or "Untitled conversation") as a level-2 heading, the
    id, model, creation and update times, then every message in stored order as a
    level-3 heading with its role and time, and its content. Tool calls are listed as
    the tool's name with its arguments as JSON; a tool result names the call it
    answers. Content is written as it is (it is usually Markdown already), except that
    control characters other than newline and tab, and bidi controls, are written as
    visible escapes (:func:`~qv_session_manager.safe_text.terminal_safe`): the file is
    read in editors and terminals, where they could hide or fake text. Images are only
    counted.
    """
    count = 0
    for stored in conversations:
        stream.write(terminal_safe(_conversation(stored)))
        count += 1
    return count


def _conversation(stored: StoredConversation) -> str:
    record = stored.conversation
    parts = [
        f"## {_one_line(record.title) if record.title else 'Untitled conversation'}\n\n",
        f"- id: `{record.id}`\n",
        f"- model: {record.model_name}\n" if record.model_name else "",
        f"- created: {record.created_at.isoformat()}\n",
        f"- updated: {record.updated_at.isoformat()}\n",
        f"- messages: {len(stored.messages)}\n\n",
    ]
    parts.extend(_message(message) for message in stored.messages)
    parts.append("---\n\n")
    return "".join(parts)


def _message(message: MessageRecord) -> str:
    parts = [f"### {message.role} · {message.created_at.isoformat()}\n\n"]
    if message.tool_call_id is not None:
        parts.append(f"Result of tool call `{message.tool_call_id}`:\n\n")
    if message.content:
        parts.append(message.content.rstrip("\n") + "\n\n")
    for call in message.tool_calls or ():
        ident = f" (`{call.id}`)" if call.id else ""
        arguments = dumps_line(call.arguments)
        fence = _fence(arguments)
        parts.append(f"Tool call **{_one_line(call.name)}**{ident}:\n\n{fence}json\n{arguments}\n{fence}\n\n")
    if message.images:
        parts.append(f"*{len(message.images)} image(s) attached*\n\n")
    return "".join(parts)


def _fence(text: str) -> str:
    """A backtick fence longer than any backtick run in ``text``, so the block cannot end early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _one_line(text: str) -> str:
    return " ".join(text.split())
