"""Store housekeeping: delete, prune, stats, backends."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from importlib.metadata import entry_points
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from ..backends.sqlite import SQLiteStore, maintenance
from ..errors import InvalidInputError
from ..manager import SessionManager
from ..plugins import BUILTIN_PLUGINS
from ..protocol import ConversationFilter, ConversationStore
from ..registry import Backend, available_backends
from ..safe_text import terminal_safe
from ..timeutil import time_key, time_range
from ..transfer import iter_stored
from .access import is_read_only
from .common import echo_json, fail, open_manager, say, shown_url, stdout_console
from .formats import format_option, json_lines, json_text, pick_format, render_rows
from .ids import resolve_id
from .progress import spinner
from .render import conversation_table
from .sizes import human_size

#: How many of the conversations that go the prune table shows (--all: every one).
PRUNE_SHOWN = 20


@click.command("delete")
@click.argument("conversation_ids", metavar="ID...", nargs=-1, required=True)
@click.pass_context
def delete_command(ctx: click.Context, conversation_ids: tuple[str, ...]) -> None:
    """Delete conversations with their messages and search entries.

    An ID may be a unique prefix; an ambiguous one stops the command before anything
    is deleted. Every id that exists is deleted; if any is missing, they are named
    and the exit code is 1.
    """
    manager = open_manager(ctx)
    resolved = [(given, resolve_id(manager, given, missing_ok=True)) for given in conversation_ids]
    missing = [given for given, key in resolved if key is None or not manager.delete_conversation(key)]
    deleted = len(conversation_ids) - len(missing)
    click.echo(f"deleted {deleted} conversation{'' if deleted == 1 else 's'}", err=True)
    if missing:
        fail(f"no conversation {', '.join(map(repr, missing))}")


@click.command("prune")
@click.option("--before", "before", metavar="DATE", help="Delete conversations last updated before DATE.")
@click.option(
    "--older-than",
    "older_than",
    metavar="DAYS",
    type=click.IntRange(min=0),
    help="Delete conversations last updated more than DAYS days ago.",
)
@click.option(
    "--keep-newest",
    "keep_newest",
    metavar="N",
    type=click.IntRange(min=0),
    help="Delete all but the N most recently updated conversations.",
)
@click.option("--expired", is_flag=True, help="Remove expired conversations (metadata expires_at) for good.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help=f"List every conversation that goes (the table shows the first {PRUNE_SHOWN}).",
)
@format_option
@click.pass_context
def prune_command(
    ctx: click.Context,
    before: str | None,
    older_than: int | None,
    keep_newest: int | None,
    expired: bool,
    yes: bool,
    dry_run: bool,
    show_all: bool,
    output_format: str | None,
    as_json: bool,
) -> None:
    """Delete old conversations: before DATE, older than DAYS, beyond the newest N, expired.

    DATE is an ISO date or datetime; a date means its midnight, so --before 2025-02-01
    keeps everything from that day on. Naive timestamps count as UTC. Options
    combine: a conversation goes when any of them says so. Lists the conversations
    and asks first, unless --yes. Expired conversations are already hidden from
    every read, so --expired cannot list them and removes them without asking.
    The table shows the first 20 conversations that go, then how many more;
    --all lists them all, --format (or --json) prints them all in that format.
    """
    if before is not None and older_than is not None:
        raise click.UsageError("give --before or --older-than, not both")
    if before is None and older_than is None and keep_newest is None and not expired:
        raise click.UsageError("give --before, --older-than, --keep-newest or --expired")
    chosen_format = pick_format(output_format, as_json) if output_format is not None or as_json else "table"
    cutoff = _cutoff(before, older_than)
    manager = open_manager(ctx)
    doomed = _doomed(manager, cutoff, keep_newest)
    what = f"{len(doomed)} conversation{'' if len(doomed) == 1 else 's'}"
    if doomed:
        _show_doomed(doomed, chosen_format, show_all)
    elif not expired:
        click.echo("nothing to prune", err=True)
        return
    if dry_run:
        click.echo(f"would delete {what} (dry run)", err=True)
        if expired:
            click.echo("expired conversations would be removed too (reads never show them)", err=True)
        return
    if doomed and not yes:
        click.confirm(f"delete {what}?", abort=True, err=True)
    # The manager's methods decide what goes: the list above is what they would find now.
    deleted = 0
    with spinner(f"deleting {what}"):
        if cutoff is not None:
            deleted += manager.delete_older_than(cutoff)
        if keep_newest is not None:
            deleted += manager.keep_newest(keep_newest)
    if doomed or cutoff is not None or keep_newest is not None:
        click.echo(f"deleted {deleted} conversation{'' if deleted == 1 else 's'}", err=True)
    if expired:
        with spinner("removing expired conversations"):
            purged = manager.purge_expired()
        click.echo(f"removed {purged} expired conversation{'' if purged == 1 else 's'}", err=True)
    with spinner("purging deleted text from the search index"):
        manager.close()  # closing purges: the time it takes is shown too


def _show_doomed(doomed: list[dict[str, Any]], chosen_format: str, show_all: bool) -> None:
    """The conversations that go: in ``chosen_format`` all of them, as a table the first PRUNE_SHOWN unless ``show_all``."""
    if chosen_format in ("json", "jsonl"):
        click.echo(json_lines(doomed) if chosen_format == "jsonl" else json_text(doomed), nl=False)
        return
    if chosen_format != "table":
        rows = [
            {"id": r["id"], "title": r["title"], "model": r["model_name"], "updated": r["updated_at"]} for r in doomed
        ]
        click.echo(render_rows(rows, ["id", "title", "model", "updated"], chosen_format), nl=False)
        return
    shown = doomed if show_all else doomed[:PRUNE_SHOWN]
    stdout_console().print(conversation_table(shown))
    if len(shown) < len(doomed):
        say(f"… and {len(doomed) - len(shown)} more (--all lists them)")


def _cutoff(before: str | None, older_than: int | None) -> datetime | None:
    """The instant --before or --older-than names (conversations updated before it go), or None."""
    if older_than is not None:
        try:
            return datetime.now(timezone.utc) - timedelta(days=older_than)
        except OverflowError:
            fail(f"--older-than {older_than} reaches before the year 1")
    if before is None:
        return None
    if not before.strip():
        fail("--before needs a date")
    try:
        bound = time_range(before, None)[0]
    except InvalidInputError:
        fail(f"--before {before!r} is not an ISO 8601 date or datetime")
    assert bound is not None  # time_range gives None only for an empty bound, refused above
    return bound


def _doomed(manager: SessionManager, cutoff: datetime | None, keep_newest: int | None) -> list[dict[str, Any]]:
    """The conversations prune would delete now (newest first, each once), to show before asking."""
    rows: dict[str, dict[str, Any]] = {}
    if keep_newest is not None:
        rows.update((row["id"], row) for row in manager.list_conversations(offset=keep_newest))
    if cutoff is not None:
        # search_by_time's end is inclusive; one microsecond earlier makes it "before".
        rows.update((row["id"], row) for row in manager.search_by_time(None, cutoff - timedelta(microseconds=1)))
    return sorted(
        rows.values(), key=lambda row: (time_key(datetime.fromisoformat(row["updated_at"])), row["id"]), reverse=True
    )


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as one JSON object (sizes in bytes).")
@click.pass_context
def stats_command(ctx: click.Context, as_json: bool) -> None:
    """Numbers of conversations and messages, oldest and newest update, store URL and file sizes.

    For an SQLite file, also the messages with a vector ('qv-sessions embed') in each
    vector space (embedder/model/dimension).
    """
    manager = open_manager(ctx)
    store = manager.store
    counts = maintenance.counts(store) if isinstance(store, SQLiteStore) else _count_by_reading(manager.store)
    files = _files(store)
    # Vectors by space: SQLite files only (one grouped count); other backends leave the key out.
    vectors = maintenance.vector_counts(store) if isinstance(store, SQLiteStore) else None
    if as_json:
        echo_json(
            {
                "store": shown_url(ctx),
                "read_only": is_read_only(store),
                "conversations": counts.conversations,
                "messages": counts.messages,
                "oldest_updated": counts.oldest,
                "newest_updated": counts.newest,
                "files": [{"file": label, "path": path, "bytes": size} for label, path, size in files],
                **({"vectors": vectors} if vectors is not None else {}),
            }
        )
        return
    lines = [
        ("store", shown_url(ctx) + ("  (read-only)" if is_read_only(store) else "")),
        ("conversations", str(counts.conversations)),
        ("messages", str(counts.messages)),
        ("oldest updated", counts.oldest or "-"),
        ("newest updated", counts.newest or "-"),
        *((label, f"{human_size(size)}  {path}") for label, path, size in files),
    ]
    if vectors is not None:
        lines.append(("vectors", ", ".join(f"{count} in {space}" for space, count in vectors.items()) or "-"))
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        say(f"{name:<{width}}  {value}", err=False)


def _files(store: ConversationStore) -> list[tuple[str, str, int]]:
    """(label, path, bytes) of an SQLite store's files: the database, then its write-ahead log."""
    if not isinstance(store, SQLiteStore):
        return []
    return [
        ("WAL file" if path.endswith("-wal") else "database file", path, size)
        for path, size in maintenance.file_sizes(store).items()
    ]


def _count_by_reading(store: ConversationStore) -> maintenance.Counts:
    """Counts for any backend, by reading the whole store once (bounded memory)."""
    conversations = messages = 0
    newest = oldest = None
    for stored in iter_stored(store, ConversationFilter()):
        conversations += 1
        messages += len(stored.messages)
        oldest = stored.conversation.updated_at.isoformat()
        newest = newest or oldest
    return maintenance.Counts(conversations, messages, oldest, newest)


def distribution_of(backend: Backend) -> str:
    """The installed distribution providing a backend's plugin ('' when unknown)."""
    if backend.plugin in BUILTIN_PLUGINS:
        return "qv-session-manager"
    for entry_point in entry_points(group="qv_session_manager"):
        if entry_point.name == backend.plugin and entry_point.dist is not None:
            return str(entry_point.dist.name)
    return ""


@click.command("backends")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def backends_command(as_json: bool) -> None:
    """The installed backends: URL schemes, description, providing plugin and distribution."""
    unique = {backend.name: backend for backend in available_backends().values()}
    rows: list[dict[str, Any]] = [
        {
            "name": name,
            "schemes": [f"{key}://" for key in unique[name].keys],
            "description": unique[name].description,
            "plugin": unique[name].plugin,
            "distribution": distribution_of(unique[name]),
        }
        for name in sorted(unique)
    ]
    if as_json:
        echo_json(rows)
        return
    table = Table("schemes", "description", "plugin", "distribution")
    for row in rows:
        cells = (", ".join(row["schemes"]), row["description"], row["plugin"], row["distribution"])
        table.add_row(*(Text(terminal_safe(cell)) for cell in cells))
    stdout_console().print(table)
