"""doctor: check a store and repair its search index."""

from __future__ import annotations

import click

from ..backends.sqlite import SQLiteStore
from ..backends.sqlite import maintenance
from ..backends.sqlite.schema import LATEST
from ..protocol import ConversationStore
from .common import open_manager, say, shown_url


@click.command("doctor")
@click.option("--rebuild-index", is_flag=True, help="Rebuild the SQLite search indexes from the stored messages.")
@click.pass_context
def doctor_command(ctx: click.Context, rebuild_index: bool) -> None:
    """Check the store: schema version, file integrity, search index consistency; purge deleted text.

    The checks are SQLite's; other backends get a purge where they have one and a
    note of what does not apply. Exits with 1 when a check finds a problem.
    """
    store = open_manager(ctx).store
    say(f"store: {shown_url(ctx)}", err=False)
    if isinstance(store, SQLiteStore):
        problems = _check_sqlite(store, rebuild_index)
    else:
        problems = _check_other(store, rebuild_index)
    if problems:
        click.echo(f"error: {len(problems)} problem{'' if len(problems) == 1 else 's'} found", err=True)
        ctx.exit(1)
    click.echo("no problems found")


def _check_sqlite(store: SQLiteStore, rebuild_index: bool) -> list[str]:
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
    if rebuild_index:
        maintenance.rebuild_indexes(store)
        click.echo("search indexes: rebuilt")
    index = maintenance.index_problems(store)
    click.echo(f"search indexes: {'consistent' if not index else 'INCONSISTENT'}")
    for line in index:
        say(f"  {line}", err=False)
    problems += index
    click.echo(f"purge: {'purged deleted text' if store.purge() else 'nothing to purge'}")
    return problems


def _check_other(store: ConversationStore, rebuild_index: bool) -> list[str]:
    kind = type(store).__name__
    for check in ("schema version", "integrity check", "search index check"):
        click.echo(f"{check}: not applicable to {kind}")
    if rebuild_index:
        click.echo(f"--rebuild-index: not applicable to {kind}; nothing rebuilt")
    purge = getattr(store, "purge", None)
    if callable(purge):
        click.echo(f"purge: {'purged deleted text' if purge() else 'nothing to purge'}")
    else:
        click.echo(f"purge: not applicable to {kind}")
    return []
