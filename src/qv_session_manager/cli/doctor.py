"""doctor: check a store and repair its search index."""

from __future__ import annotations

import click

from ..backends.sqlite import SQLiteStore, maintenance
from ..backends.sqlite.schema import LATEST
from ..protocol import ConversationStore
from .common import open_manager, say, shown_url


@click.command("doctor")
@click.option("--rebuild-index", is_flag=True, help="Rebuild the SQLite search indexes from the stored messages.")
@click.option(
    "--repair", is_flag=True,
    help="Remove messages of deleted conversations that an older program left in the file, and rewrite the "
    "file so deleted text leaves its free pages.",
)
@click.pass_context
def doctor_command(ctx: click.Context, rebuild_index: bool, repair: bool) -> None:
    """Check the store: schema version, file integrity, search index consistency; purge deleted text.

    The checks are SQLite's; other backends get a purge where they have one and a
    note of what does not apply. Exits with 1 when a check finds a problem.
    """
    store = open_manager(ctx).store
    say(f"store: {shown_url(ctx)}", err=False)
    if isinstance(store, SQLiteStore):
        problems = _check_sqlite(store, rebuild_index, repair)
    else:
        problems = _check_other(store, rebuild_index or repair)
    if problems:
        click.echo(f"error: {len(problems)} problem{'' if len(problems) == 1 else 's'} found", err=True)
        ctx.exit(1)
    click.echo("no problems found")


def _check_leftovers(store: SQLiteStore, repair: bool) -> list[str]:
    """Messages of deleted conversations: ones that belong to none are always removed (nothing can
    show them); ones a later conversation took over are reported, and removed with ``repair``."""
    orphans = maintenance.orphaned_messages(store)
    if orphans:
        click.echo(f"messages of deleted conversations: {maintenance.remove_orphaned_messages(store)} removed")
    leftovers = maintenance.adopted_leftovers(store)
    if not leftovers:
        if not orphans:
            click.echo("messages of deleted conversations: none")
        return []
    count = sum(len(item.message_keys) for item in leftovers)
    if repair:
        maintenance.remove_adopted_leftovers(store, leftovers)
        click.echo(f"messages of deleted conversations shown in later ones: {count} removed")
        return []
    click.echo(f"messages of deleted conversations shown in later ones: {count} FOUND (run --repair)")
    for item in leftovers:
        say(f"  conversation {item.conversation_id}: {len(item.message_keys)} messages", err=False)
    return [f"{count} messages of deleted conversations"]


def _check_sqlite(store: SQLiteStore, rebuild_index: bool, repair: bool) -> list[str]:
    problems: list[str] = []
    version = maintenance.schema_version(store)
    current = "current" if version == LATEST else f"this library writes {LATEST}"
    click.echo(f"schema version: {version} ({current})")
    if version != LATEST:
        problems.append(f"schema version {version}")
    integrity = maintenance.integrity_problems(store)
    click.echo(f"integrity check: {'ok' if not integrity else 'FAILED'}")
    for line in integrity:
        say(f"  {line}", err=False)
    problems += integrity
    problems += _check_leftovers(store, repair)
    if rebuild_index:
        maintenance.rebuild_indexes(store)
        click.echo("search indexes: rebuilt")
    index = maintenance.index_problems(store)
    click.echo(f"search indexes: {'consistent' if not index else 'INCONSISTENT'}")
    for line in index:
        say(f"  {line}", err=False)
    problems += index
    click.echo(f"purge: {'purged deleted text' if store.purge() else 'nothing to purge'}")
    if repair:
        maintenance.rewrite_file(store)
        click.echo("file rewritten: no free page keeps deleted text")
    return problems


def _check_other(store: ConversationStore, rebuild_index: bool) -> list[str]:
    kind = type(store).__name__
    for check in ("schema version", "integrity check", "search index check"):
        click.echo(f"{check}: not applicable to {kind}")
    if rebuild_index:
        click.echo(f"--rebuild-index/--repair: not applicable to {kind}; nothing changed")
    purge = getattr(store, "purge", None)
    if callable(purge):
        click.echo(f"purge: {'purged deleted text' if purge() else 'nothing to purge'}")
    else:
        click.echo(f"purge: not applicable to {kind}")
    return []
