"""doctor: check a store and repair its search index.

A store this process cannot write is opened read-only (:mod:`.access`) and checked
without changing anything: doctor says so on its ``access`` line, leaves out what
needs a write (removing messages of deleted conversations, FTS5's own index check,
the purge) and refuses ``--repair``/``--rebuild-index`` with a line saying why, so a
read-only file is never reported as damaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click

from ..backends.sqlite import SQLiteStore, maintenance
from ..backends.sqlite.schema import LATEST
from ..protocol import ConversationStore
from .access import is_read_only
from .common import echo_json, fail, open_manager, say, shown_url
from .progress import spinner


@dataclass
class Report:
    """The checks' results, printed as they come (text) or all at the end (``--json``).

    Each result is a check's name, its status (``ok``, ``problem``, ``fixed``, ``skipped``,
    ``not applicable``), the one-line result and detail lines.
    """

    as_json: bool
    checks: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, name: str, status: str, result: str, details: list[str] | None = None) -> None:
        self.checks.append({"check": name, "status": status, "result": result, "details": details or []})
        if not self.as_json:
            say(f"{name}: {result}", err=False)
            for line in details or []:
                say(f"  {line}", err=False)


@click.command("doctor")
@click.option("--rebuild-index", is_flag=True, help="Rebuild the SQLite search indexes from the stored messages.")
@click.option(
    "--repair",
    is_flag=True,
    help="Remove messages of deleted conversations that an older program left in the file, and rewrite the "
    "file so deleted text leaves its free pages.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@click.pass_context
def doctor_command(ctx: click.Context, rebuild_index: bool, repair: bool, as_json: bool) -> None:
    """Check the store: schema version, file integrity, search index consistency; purge deleted text.

    The checks are SQLite's; other backends get a purge where they have one and a
    note of what does not apply. A store this process cannot write is checked
    read-only. Exits with 1 when a check finds a problem.
    """
    store = open_manager(ctx).store
    read_only = is_read_only(store)
    if read_only and (rebuild_index or repair):
        option = "--repair" if repair else "--rebuild-index"
        fail(
            f"{option} needs write access and {shown_url(ctx)} is read-only here: run it as a user who can write "
            "the file and its directory"
        )
    report = Report(as_json)
    if not as_json:
        say(f"store: {shown_url(ctx)}", err=False)
    if read_only:
        report.add("access", "ok", "read-only (the file or its directory is not writable): nothing is changed")
    if isinstance(store, SQLiteStore):
        _check_sqlite(report, store, rebuild_index, repair)
    else:
        _check_other(report, store, rebuild_index or repair)
    problems = report.problems
    if as_json:
        echo_json(
            {
                "store": shown_url(ctx),
                "read_only": read_only,
                "ok": not problems,
                "problems": problems,
                "checks": report.checks,
            }
        )
    if problems:
        click.echo(f"error: {len(problems)} problem{'' if len(problems) == 1 else 's'} found", err=True)
        ctx.exit(1)
    if not as_json:
        click.echo("no problems found")


def _check_leftovers(report: Report, store: SQLiteStore, repair: bool) -> None:
    """Messages of deleted conversations: ones that belong to none are always removed (nothing can
    show them); ones a later conversation took over are reported, and removed with ``repair``."""
    name = "messages of deleted conversations"
    with spinner("looking for messages of deleted conversations"):
        orphans = maintenance.orphaned_messages(store)
        leftovers = maintenance.adopted_leftovers(store)
    if orphans and store.read_only:
        report.add(name, "skipped", f"{orphans} found, removed when the store is opened with write access")
    elif orphans:
        report.add(name, "fixed", f"{maintenance.remove_orphaned_messages(store)} removed")
    if not leftovers:
        if not orphans:
            report.add(name, "ok", "none")
        return
    later = f"{name} shown in later ones"
    count = sum(len(item.message_keys) for item in leftovers)
    if repair:
        maintenance.remove_adopted_leftovers(store, leftovers)
        report.add(later, "fixed", f"{count} removed")
        return
    details = [f"conversation {item.conversation_id}: {len(item.message_keys)} messages" for item in leftovers]
    report.add(later, "problem", f"{count} FOUND (run --repair)", details)
    report.problems.append(f"{count} messages of deleted conversations")


def _check_sqlite(report: Report, store: SQLiteStore, rebuild_index: bool, repair: bool) -> None:
    version = maintenance.schema_version(store)
    current = version == LATEST
    report.add(
        "schema version",
        "ok" if current else "problem",
        f"{version} ({'current' if current else f'this library writes {LATEST}'})",
    )
    if not current:
        report.problems.append(f"schema version {version}")
    with spinner("checking the file's integrity"):
        integrity = maintenance.integrity_problems(store)
    report.add("integrity check", "problem" if integrity else "ok", "FAILED" if integrity else "ok", integrity)
    report.problems.extend(integrity)
    _check_leftovers(report, store, repair)
    if rebuild_index:
        with spinner("rebuilding the search indexes"):
            maintenance.rebuild_indexes(store)
        report.add("search indexes", "fixed", "rebuilt")
    with spinner("comparing the search indexes with the stored text"):
        index = maintenance.index_problems(store)
    compared = " (compared with the stored text; FTS5's own check needs write access)" if store.read_only else ""
    report.add(
        "search indexes", "problem" if index else "ok", f"{'INCONSISTENT' if index else 'consistent'}{compared}", index
    )
    report.problems.extend(index)
    if store.read_only:
        report.add("purge", "skipped", "skipped (read-only)")
    else:
        with spinner("purging deleted text"):
            purged = store.purge()
        report.add("purge", "fixed" if purged else "ok", "purged deleted text" if purged else "nothing to purge")
    if repair:
        with spinner("rewriting the file"):
            maintenance.rewrite_file(store)
        report.add("file rewritten", "fixed", "no free page keeps deleted text")


def _check_other(report: Report, store: ConversationStore, rebuild_index: bool) -> None:
    kind = type(store).__name__
    for check in ("schema version", "integrity check", "search index check"):
        report.add(check, "not applicable", f"not applicable to {kind}")
    if rebuild_index:
        report.add("--rebuild-index/--repair", "not applicable", f"not applicable to {kind}; nothing changed")
    purge = getattr(store, "purge", None)
    if callable(purge):
        purged = purge()
        report.add("purge", "fixed" if purged else "ok", "purged deleted text" if purged else "nothing to purge")
    else:
        report.add("purge", "not applicable", f"not applicable to {kind}")
