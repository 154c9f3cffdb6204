"""Reading commands: list and show (search lives in :mod:`.searching`).

Both accept an id prefix wherever they take an id (:mod:`.ids`), print data in the
formats of :mod:`.formats` and page long output on a terminal (:mod:`.paging`).
"""

from __future__ import annotations

import io
import sys
from typing import Any

import click

from ..convert import conversation_to_record, message_to_record
from ..exchange.markdown import write_markdown
from ..manager import SessionManager
from ..records import StoredConversation
from ..safe_text import terminal_safe
from .common import echo_json, fail, open_manager, parse_meta, say
from .formats import (
    cell_text,
    columns_option,
    format_option,
    json_lines,
    json_text,
    pick_format,
    render_rows,
    split_columns,
)
from .ids import all_ids, resolve_id, short_ids
from .paging import emit, emit_text, pager_option, terminal_console
from .render import conversation_dict, list_table, short_time, transcript

#: How many conversations ``list`` shows unless told otherwise.
DEFAULT_LIMIT = 20
#: Characters of the first user message kept as a preview.
PREVIEW_LENGTH = 200
LIST_COLUMNS = ("id", "title", "preview", "messages", "model", "created", "updated", "metadata")
LIST_DEFAULT = ("id", "title", "messages", "model", "updated")

meta_option = click.option(
    "--meta",
    "--metadata",
    "meta",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only conversations whose metadata KEY equals VALUE (JSON when it parses, else a string). Repeatable.",
)


def first_message(manager: SessionManager, conversation_id: str) -> tuple[str, int]:
    """The first user message as one line (cut to PREVIEW_LENGTH) and the number of messages: one ``load``."""
    stored = manager.store.load(conversation_id)
    if stored is None:  # deleted or expired since it was listed
        return "", 0
    first = next((message.content for message in stored.messages if message.role == "user"), "")
    line = " ".join(first.split())
    return (line[:PREVIEW_LENGTH] + "…" if len(line) > PREVIEW_LENGTH else line), len(stored.messages)


def list_rows(manager: SessionManager, rows: list[dict[str, Any]], columns: list[str]) -> list[dict[str, Any]]:
    """The listed conversation dicts as rows of ``columns``; a preview or count costs one ``load`` a row.

    ``title`` is the title, else the preview of the first user message (then the row
    has ``_preview`` set); times are ISO strings.
    """
    loads = bool({"preview", "messages"} & set(columns)) or ("title" in columns and any(not r["title"] for r in rows))
    result = []
    for row in rows:
        preview, count = first_message(manager, row["id"]) if loads else ("", 0)
        result.append(
            {
                "id": row["id"],
                "title": row["title"] or preview,
                "_preview": not row["title"],
                "preview": preview,
                "messages": count,
                "model": row["model_name"] or "",
                "created": row["created_at"],
                "updated": row["updated_at"],
                "metadata": row["metadata"],
            }
        )
    return result


@click.command("list")
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help=f"At most this many conversations (default {DEFAULT_LIMIT}).",
)
@click.option("--all", "show_all", is_flag=True, help="Every conversation (no limit).")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True, help="Skip this many first.")
@click.option("--after", metavar="ID", default=None, help="Start after this conversation (keyset paging).")
@click.option("--since", metavar="DATE", default=None, help="Updated at or after DATE (ISO date or datetime).")
@click.option(
    "--until", metavar="DATE", default=None, help="Updated at or before DATE (a date includes the whole day)."
)
@meta_option
@columns_option(LIST_COLUMNS, LIST_DEFAULT)
@format_option
@pager_option
@click.pass_context
def list_command(
    ctx: click.Context,
    limit: int | None,
    show_all: bool,
    offset: int,
    after: str | None,
    since: str | None,
    until: str | None,
    meta: tuple[str, ...],
    columns: tuple[str, ...],
    output_format: str | None,
    as_json: bool,
    no_pager: bool,
) -> None:
    """List conversations, most recently updated first (the newest 20 unless -n N or --all).

    The table shows the shortest unique id prefixes (at least 8 characters; any
    command takes them as ids), the title or else the first user message, the number
    of messages, the model and the update time. --json and --format json|jsonl
    without -c print the library's conversation dicts; with -c the named columns.
    """
    if show_all and limit is not None:
        raise click.UsageError("give either --limit or --all")
    chosen_format = pick_format(output_format, as_json)
    chosen = split_columns(columns, LIST_COLUMNS, LIST_DEFAULT)
    metadata = parse_meta(meta)
    manager = open_manager(ctx)
    count = None if show_all else (DEFAULT_LIMIT if limit is None else limit)
    boundary = None if after is None else resolve_id(manager, after)
    if since is not None or until is not None:
        rows = manager.search_by_time(since, until, limit=count, offset=offset, after=boundary, metadata=metadata)
    else:
        rows = manager.list_conversations(limit=count, offset=offset, after=boundary, metadata=metadata)
    if chosen_format in ("json", "jsonl") and not columns:
        emit_text(json_lines(rows) if chosen_format == "jsonl" else json_text(rows), page=False)
        return
    data = list_rows(manager, rows, chosen)
    if chosen_format != "table":
        emit_text(render_rows(data, chosen, chosen_format), page=not no_pager)
        return
    if not data:
        say("no conversations", err=False)
        return
    if "id" in chosen:
        shorter = short_ids(all_ids(manager), [row["id"] for row in data])
        for row in data:
            row["id"] = shorter[row["id"]]
    cells = [
        {**{column: _table_cell(column, row[column]) for column in chosen}, "_preview": row["_preview"]} for row in data
    ]
    width = terminal_console().width
    emit(list_table(cells, chosen, styled=sys.stdout.isatty(), width=width), page=not no_pager)


def _table_cell(column: str, value: object) -> str:
    if column in ("created", "updated"):
        return short_time(str(value))
    return cell_text(value)


def _window(last: int | None, turns: int | None) -> str:
    if last is not None:
        return f"the last {last} message{'s' if last != 1 else ''}"
    if turns is not None:
        return f"the last {turns} turn{'s' if turns != 1 else ''}"
    return ""


@click.command("show")
@click.argument("conversation_id", metavar="ID")
@click.option(
    "--last",
    "last",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Only the last N messages (and the leading system messages).",
)
@click.option(
    "--turns",
    "turns",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Only the last N turns, from the N-th last user message on.",
)
@click.option("--raw", is_flag=True, help="Plain text: no Markdown rendering, no colours.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["transcript", "json", "markdown"]),
    default=None,
    help="transcript (the default), json (the whole conversation) or markdown (as export writes it).",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@pager_option
@click.pass_context
def show_command(
    ctx: click.Context,
    conversation_id: str,
    last: int | None,
    turns: int | None,
    raw: bool,
    output_format: str | None,
    as_json: bool,
    no_pager: bool,
) -> None:
    """Print one conversation: every message with its role, time, tool calls and results.

    ID may be a unique prefix. On a terminal contents are rendered as Markdown
    (--raw prints them as written) and a long transcript goes through the pager.
    """
    if last is not None and turns is not None:
        raise click.UsageError("give either --last or --turns")
    if as_json and output_format not in (None, "json"):
        raise click.UsageError(f"--json and --format {output_format} contradict each other")
    manager = open_manager(ctx)
    key = resolve_id(manager, conversation_id)
    assert key is not None
    conversation = manager.load_conversation(key, last_messages=last, last_turns=turns)
    if conversation is None:  # deleted or expired between the two reads
        fail(f"no conversation {conversation_id!r}")
    chosen = "json" if as_json else (output_format or "transcript")
    if chosen == "json":
        echo_json(conversation_dict(conversation))
    elif chosen == "markdown":
        stored = StoredConversation(
            conversation_to_record(conversation), tuple(message_to_record(m) for m in conversation.messages)
        )
        text = io.StringIO()
        write_markdown([stored], text)
        emit_text(terminal_safe(text.getvalue()), page=not no_pager)
    else:
        markdown = sys.stdout.isatty() and not raw
        emit(
            transcript(conversation, markdown=markdown, window=_window(last, turns)), page=not no_pager, styled=not raw
        )
