"""export and import: conversations to and from files (the formats live in qv_session_manager.exchange)."""

from __future__ import annotations

import sys
from typing import Literal, TextIO, cast

import click

from ..conflicts import ON_CONFLICT_CHOICES, OnConflict
from ..exchange import ImportReport
from ..safe_text import TerminalWriter
from .browse import meta_option
from .common import open_manager, parse_meta, progress_bar, say, stderr_is_terminal

STDIO = "-"
# The choices below, spelled as the manager's signatures type them.
ExportFormat = Literal["jsonl", "json", "csv", "markdown"]
ImportFormat = Literal["jsonl", "json", "sharegpt"]


@click.command("export")
@click.argument("destination", metavar="[FILE|-]", default=STDIO)
@click.option(
    "--format", "format_", type=click.Choice(["jsonl", "json", "csv", "markdown"]), default="jsonl", show_default=True
)
@click.option(
    "--csv-raw", "csv_raw", is_flag=True,
    help="With --format csv: write cells as stored, without the ' put before = + - @ tab or CR (spreadsheet formulas).",
)
@meta_option
@click.pass_context
def export_command(ctx: click.Context, destination: str, format_: str, csv_raw: bool, meta: tuple[str, ...]) -> None:
    """Write every conversation to FILE, or to standard output with - (the default).

    Conversations come newest first. The count goes to standard error. CSV cells
    that a spreadsheet would run as a formula get a leading ' unless --csv-raw. On a
    terminal, standard output shows control characters escaped.
    """
    if csv_raw and format_ != "csv":
        raise click.UsageError("--csv-raw applies to --format csv only")
    metadata = parse_meta(meta)
    manager = open_manager(ctx)
    total = len(manager.list_conversations(metadata=metadata)) if stderr_is_terminal() else None
    target: TextIO | str = destination
    if destination == STDIO:
        # On a terminal the export is for reading: its text must not drive the terminal.
        target = cast(TextIO, TerminalWriter(sys.stdout)) if sys.stdout.isatty() else sys.stdout
    with progress_bar("exporting", total) as progress:
        count = manager.export_conversations(
            target, format=cast(ExportFormat, format_), metadata=metadata, progress=progress,
            csv_formulas="raw" if csv_raw else "escape",
        )
    where = "standard output" if destination == STDIO else destination
    say(f"exported {count} conversation{'' if count == 1 else 's'} to {where}")


@click.command("import")
@click.argument("source", metavar="FILE|-")
@click.option("--format", "format_", type=click.Choice(["jsonl", "json", "sharegpt"]), default="jsonl", show_default=True)
@click.option("--skip-bad-lines", is_flag=True, help="Skip records that cannot be read instead of stopping.")
@click.option(
    "--on-conflict",
    type=click.Choice(list(ON_CONFLICT_CHOICES)),
    default="skip",
    show_default=True,
    help="A conversation whose id is already stored (or repeats in the file): keep the stored one, "
    "replace it, keep both (rename: a new id), or fail.",
)
@click.option(
    "--keep-empty",
    is_flag=True,
    help="Store conversations without messages from ShareGPT files too (JSON Lines and JSON keep them anyway).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@click.pass_context
def import_command(
    ctx: click.Context,
    source: str,
    format_: str,
    skip_bad_lines: bool,
    on_conflict: str,
    keep_empty: bool,
    batch_size: int,
) -> None:
    """Read conversations from FILE, or from standard input with -, and save them.

    A conversation whose id is already stored, or repeats an earlier one of the
    file, is skipped by default (--on-conflict); conversations are never merged. A
    bad record stops the import with exit code 1 (batches before it stay saved)
    unless --skip-bad-lines; every record not stored is listed on standard error,
    then the counts: imported, skipped, replaced, renamed, without messages.
    """
    manager = open_manager(ctx, create=True)
    origin = sys.stdin if source == STDIO else source
    with progress_bar("importing", None) as progress:
        report = manager.import_conversations(
            origin,
            format=cast(ImportFormat, format_),
            batch_size=batch_size,
            on_error="skip" if skip_bad_lines else "raise",
            on_conflict=cast(OnConflict, on_conflict),
            keep_empty=True if keep_empty else None,
            progress=progress,
        )
    for line, reason in report.skipped:
        say(f"skipped line {line}: {reason}")
    click.echo(import_summary(report), err=True)


def import_summary(report: ImportReport) -> str:
    """``imported N conversations``, then each other count that is not zero."""
    parts = [f"imported {report.imported} conversation{'' if report.imported == 1 else 's'}"]
    for name, count in (("skipped", len(report.skipped)), ("replaced", report.replaced), ("renamed", report.renamed)):
        if count:
            parts.append(f"{name} {count}")
    if report.empty:
        parts.append(f"{report.empty} without messages")
    return ", ".join(parts)
