"""How conversations look on the terminal and as JSON (no store access in here)."""

from __future__ import annotations

import json
from typing import Any

from qv_ollama_sdk.domain.models import Conversation, Message
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

ROLE_STYLES = {"system": "magenta", "user": "cyan", "assistant": "green", "tool": "yellow"}


def conversation_table(rows: list[dict[str, Any]]) -> Table:
    """A table of conversation dicts: id, title, model, updated (in the order given)."""
    table = Table("id", "title", "model", "updated", show_lines=False)
    for row in rows:
        # Text, not markup: titles are user data and may contain [brackets].
        table.add_row(Text(row["id"]), Text(row["title"] or ""), Text(row["model_name"] or ""), Text(row["updated_at"]))
    return table


def message_dict(message: Message) -> dict[str, Any]:
    """``Message.to_db_dict()`` plus what it leaves out: images (bytes as base64 on output)."""
    item = message.to_db_dict()
    if message.images is not None:
        item["images"] = list(message.images)
    return item


def conversation_dict(conversation: Conversation) -> dict[str, Any]:
    """The whole conversation as plain data: its fields and ``messages`` in stored order."""
    return {
        "id": str(conversation.id),
        "title": conversation.title,
        "model_name": conversation.model_name,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "metadata": conversation.metadata,
        "messages": [message_dict(m) for m in conversation.messages],
    }


def _role(message: Message) -> str:
    return getattr(message.role, "value", str(message.role))


def transcript(conversation: Conversation) -> RenderableType:
    """A readable transcript: header, then each message with its role and time,
    tool calls with their arguments, tool results with their call id, image counts."""
    parts: list[RenderableType] = [
        Text.assemble((conversation.title or "(untitled)", "bold"), f"  {conversation.id}"),
        Text(
            f"model {conversation.model_name or '-'} · created {conversation.created_at.isoformat()}"
            f" · updated {conversation.updated_at.isoformat()} · {len(conversation.messages)} messages",
            style="dim",
        ),
    ]
    if conversation.metadata:
        parts.append(Text(f"metadata {json.dumps(conversation.metadata, ensure_ascii=False)}", style="dim"))
    for message in conversation.messages:
        role = _role(message)
        heading = Text.assemble("\n", (role, f"bold {ROLE_STYLES.get(role, '')}".strip()), f"  {message.created_at.isoformat()}")
        if message.tool_call_id:
            heading.append(f"  result of tool call {message.tool_call_id}", style="yellow")
        if message.images:
            heading.append(f"  [{len(message.images)} image{'s' if len(message.images) != 1 else ''}]", style="blue")
        parts.append(heading)
        if message.content:
            parts.append(Text(message.content))
        for call in message.tool_calls or []:
            arguments = json.dumps(call.function.arguments, ensure_ascii=False)
            call_id = f" (id {call.id})" if call.id else ""
            parts.append(Text(f"→ tool call {call.function.name}({arguments}){call_id}", style="yellow"))
    return Group(*parts)


def highlighted(snippet: str, mark: tuple[str, str]) -> Text:
    """``snippet`` with the spans between ``mark`` pairs styled as matches."""
    text = Text()
    rest = snippet
    opening, closing = mark
    while True:
        start = rest.find(opening)
        end = rest.find(closing, start + len(opening)) if start >= 0 else -1
        if start < 0 or end < 0:
            text.append(rest)
            return text
        text.append(rest[:start])
        text.append(rest[start + len(opening):end], style="bold reverse")
        rest = rest[end + len(closing):]
