"""Reading commands: list, show, search."""

from __future__ import annotations

import click
from rich.text import Text

from ..protocol import SearchOrder
from .common import echo_json, fail, open_manager, parse_meta, stdout_console
from .render import conversation_dict, conversation_table, highlighted, plain, transcript

#: Marks the CLI asks search for; private-use characters, so they do not occur in chats.
SEARCH_MARK = ("\ue000", "\ue001")
meta_option = click.option(
    "--meta", "meta", multiple=True, metavar="KEY=VALUE",
    help="Only conversations whose metadata KEY equals VALUE (JSON when it parses, else a string). Repeatable.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.command("list")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many conversations.")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True, help="Skip this many first.")
@click.option("--after", metavar="ID", default=None, help="Start after this conversation (keyset paging).")
@click.option("--since", metavar="DATE", default=None, help="Updated at or after DATE (ISO date or datetime).")
@click.option("--until", metavar="DATE", default=None, help="Updated at or before DATE (a date includes the whole day).")
@meta_option
@json_option
@click.pass_context
def list_command(
    ctx: click.Context, limit: int | None, offset: int, after: str | None,
    since: str | None, until: str | None, meta: tuple[str, ...], as_json: bool,
) -> None:
    """List conversations, most recently updated first."""
    metadata = parse_meta(meta)
    manager = open_manager(ctx)
    if since is not None or until is not None:
        rows = manager.search_by_time(since, until, limit=limit, offset=offset, after=after, metadata=metadata)
    else:
        rows = manager.list_conversations(limit=limit, offset=offset, after=after, metadata=metadata)
    if as_json:
        echo_json(rows)
    else:
        stdout_console().print(conversation_table(rows))


@click.command("show")
@click.argument("conversation_id", metavar="ID")
@json_option
@click.pass_context
def show_command(ctx: click.Context, conversation_id: str, as_json: bool) -> None:
    """Print one conversation: every message with its role, time, tool calls and results."""
    conversation = open_manager(ctx).load_conversation(conversation_id)
    if conversation is None:
        fail(f"no conversation {conversation_id!r}")
    if as_json:
        echo_json(conversation_dict(conversation))
    else:
        stdout_console().print(transcript(conversation))


@click.command("search")
@click.argument("query")
@click.option("--recent", is_flag=True, help="Newest first instead of best match first.")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@meta_option
@json_option
@click.pass_context
def search_command(
    ctx: click.Context, query: str, recent: bool, limit: int, offset: int, meta: tuple[str, ...], as_json: bool
) -> None:
    """Find conversations matching QUERY (words, "phrases", prefix*, -exclusions, OR)."""
    metadata = parse_meta(meta)
    manager = open_manager(ctx)
    order: SearchOrder = "recent" if recent else "relevance"
    mark = ("**", "**") if as_json else SEARCH_MARK
    hits = manager.search_conversations(
        query, limit=limit, offset=offset, order=order, metadata=metadata, snippets=True, mark=mark
    )
    if as_json:
        echo_json(hits)
        return
    console = stdout_console()
    if not hits:
        console.print("no matches", style="dim")
    for hit in hits:
        console.print(
            Text.assemble(plain(hit["title"] or "(untitled)", "bold"), plain(f"  {hit['id']}  "), plain(hit["updated_at"], "dim"))
        )
        console.print(Text("  ").append_text(highlighted(hit["snippet"], SEARCH_MARK)))
