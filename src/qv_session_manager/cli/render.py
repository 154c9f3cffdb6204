"""How conversations look on the terminal and as JSON (no store access in here).

Every piece of stored data reaches rich as a ``Text`` made by :func:`plain`, never
as markup: ``[bold]`` or ``[link=...]`` in a title prints as written, and control
characters are shown escaped (:func:`qv_session_manager.safe_text.terminal_safe`).
"""

from __future__ import annotations

import json
from typing import Any

from markdown_it import MarkdownIt
from qv_ollama_sdk.domain.models import Conversation, Message
from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from ..safe_text import terminal_safe

ROLE_STYLES = {"system": "magenta", "user": "cyan", "assistant": "green", "tool": "yellow"}


def plain(text: str, style: str = "") -> Text:
    """Untrusted ``text`` as a rich Text: no markup parsed, control characters escaped."""
    return Text(terminal_safe(text), style=style)


def conversation_table(rows: list[dict[str, Any]]) -> Table:
    """A table of conversation dicts: id, title, model, updated (in the order given)."""
    table = Table("id", "title", "model", "updated", show_lines=False)
    for row in rows:
        table.add_row(
            plain(row["id"]), plain(row["title"] or ""), plain(row["model_name"] or ""), plain(row["updated_at"])
        )
    return table


#: How the list table shows each column: header, and whether it takes the width left over.
LIST_HEADERS = {
    "id": "id",
    "title": "title",
    "preview": "first message",
    "messages": "msgs",
    "model": "model",
    "created": "created",
    "updated": "updated",
    "metadata": "metadata",
}
#: Columns the list table never lets shrink below their content (short ids, counts, times).
FIXED_COLUMNS = frozenset({"id", "messages", "created", "updated", "score"})
#: Columns that share the width left over.
FLEXIBLE_COLUMNS = frozenset({"title", "preview", "snippet"})


def short_time(iso: str) -> str:
    """``2025-01-30T12:00:00+00:00`` as ``2025-01-30 12:00`` (for tables; other formats keep the ISO string)."""
    return iso[:16].replace("T", " ")


def list_table(rows: list[dict[str, str]], columns: list[str], *, styled: bool, width: int) -> Table:
    """The rows (cells already one-line text) as a table at most ``width`` characters wide.

    Columns are aligned with spaces, never box-drawn (so that the title keeps the
    width); ``styled`` (for a terminal) sets the header in bold. Ids, counts,
    scores and times keep their width; title, preview and snippet share what is
    left (at least 8 each); other columns are cut at 18 characters, with an ellipsis.
    """
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold" if styled else "")
    widths = {
        column: max([len(LIST_HEADERS.get(column, column)), *(len(row[column]) for row in rows)]) for column in columns
    }
    flexible = [column for column in columns if column in FLEXIBLE_COLUMNS]
    for column in columns:
        if column not in FIXED_COLUMNS and column not in flexible:
            widths[column] = min(widths[column], 18)
    separators = 2 * (len(columns) - 1)
    left = width - separators - sum(widths[column] for column in columns if column not in flexible)
    for column in flexible:
        widths[column] = max(8, min(widths[column], left // len(flexible)))
    for column in columns:
        table.add_column(
            LIST_HEADERS.get(column, column),
            no_wrap=True,
            overflow="ellipsis",
            width=widths[column],
            justify="right" if column == "messages" else "left",
        )
    for row in rows:
        table.add_row(
            *(plain(row[column], "dim" if row.get("_preview") and column == "title" else "") for column in columns)
        )
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


class TextMarkdown(Markdown):
    """rich's Markdown with raw HTML shown as text: rich would drop tags and whole HTML
    blocks (``<div>...</div>``, comments), hiding stored text from the reader. Links
    are never made clickable (the URL is written after the text)."""

    def __init__(self, markup: str) -> None:
        super().__init__("", hyperlinks=False)
        self.markup = markup
        self.parsed = MarkdownIt("commonmark", {"html": False}).enable("strikethrough").enable("table").parse(markup)


def body(content: str, *, markdown: bool) -> RenderableType:
    """A message's content: rendered as Markdown (:class:`TextMarkdown`, control
    characters escaped first, so nothing of it drives the terminal), else plain text."""
    if markdown:
        return TextMarkdown(terminal_safe(content))
    return plain(content)


def transcript(conversation: Conversation, *, markdown: bool = False, window: str = "") -> RenderableType:
    """A readable transcript: header, then each message with its role and time,
    tool calls with their arguments, tool results with their call id, image counts.

    ``markdown`` renders contents as Markdown (for a terminal); ``window`` names the
    window shown (e.g. "the last 2 turns"): the message count is then the window's."""
    parts: list[RenderableType] = [
        Text.assemble(plain(conversation.title or "(untitled)", "bold"), plain(f"  {conversation.id}")),
        plain(
            f"model {conversation.model_name or '-'} · created {conversation.created_at.isoformat()}"
            f" · updated {conversation.updated_at.isoformat()} · {len(conversation.messages)} message{'' if len(conversation.messages) == 1 else 's'}",
            style="dim",
        ),
    ]
    if conversation.metadata:
        parts.append(plain(f"metadata {json.dumps(conversation.metadata, ensure_ascii=False)}", style="dim"))
    if window:
        parts.append(plain(f"showing {window}; earlier messages are not shown", style="dim"))
    for message in conversation.messages:
        role = _role(message)
        heading = Text.assemble(
            "\n", plain(role, f"bold {ROLE_STYLES.get(role, '')}".strip()), plain(f"  {message.created_at.isoformat()}")
        )
        if message.tool_call_id:
            heading.append_text(plain(f"  result of tool call {message.tool_call_id}", style="yellow"))
        if message.images:
            heading.append(f"  [{len(message.images)} image{'s' if len(message.images) != 1 else ''}]", style="blue")
        parts.append(heading)
        if message.content:
            parts.append(body(message.content, markdown=markdown and role != "tool"))
        for call in message.tool_calls or []:
            arguments = json.dumps(call.function.arguments, ensure_ascii=False)
            call_id = f" (id {call.id})" if call.id else ""
            parts.append(plain(f"→ tool call {call.function.name}({arguments}){call_id}", style="yellow"))
    return Group(*parts)


def highlighted(snippet: str, mark: tuple[str, str]) -> Text:
    """``snippet`` with the spans between ``mark`` pairs styled as matches (the text shown terminal-safe)."""
    text = Text()
    rest = snippet
    opening, closing = mark
    while True:
        start = rest.find(opening)
        end = rest.find(closing, start + len(opening)) if start >= 0 else -1
        if start < 0 or end < 0:
            text.append(terminal_safe(rest))
            return text
        text.append(terminal_safe(rest[:start]))
        text.append(terminal_safe(rest[start + len(opening) : end]), style="bold reverse")
        rest = rest[end + len(closing) :]
