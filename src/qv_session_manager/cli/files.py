"""export and import: conversations to and from files (the formats live in qv_session_manager.exchange).

Formats are told from the file: by its extension on export (``.csv`` is CSV, and a
``--format`` that contradicts the extension is refused), by its content on import;
an error that cannot tell names the ``--format`` to give. A command that fails
leaves no file behind: an export is written atomically, and an import that created
the store and saved nothing removes it again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Literal, TextIO, cast

import click

from ..backends.sqlite.maintenance import file_of_url
from ..conflicts import ON_CONFLICT_CHOICES, OnConflict
from ..errors import ImportFormatError, SessionStoreError
from ..exchange import ImportReport
from ..exchange.detect import EXPORT_FORMATS, IMPORT_FORMATS, export_format, hint, import_format
from ..exchange.importing import EMPTY_REASON
from ..manager import SessionManager
from ..safe_text import TerminalWriter
from .browse import meta_option
from .common import fail, note_url, open_manager, parse_meta, say, store_url
from .progress import byte_bar, progress_bar, stderr_is_terminal
from .sources import Source, open_source

STDIO = "-"
#: Exit code of a command interrupted with Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130
# The choices below, spelled as the manager's signatures type them.
ExportFormat = Literal["jsonl", "json", "csv", "markdown"]
ImportFormat = Literal["jsonl", "json", "sharegpt"]

#: EMPTY_REASON as the command line says it (the library names its keep_empty argument).
EMPTY_CLI_REASON = EMPTY_REASON.replace("keep_empty=True", "--keep-empty")


@click.command("export")
@click.argument("destination", metavar="[FILE|-]", default=STDIO)
@click.option(
    "--format",
    "format_",
    type=click.Choice(list(EXPORT_FORMATS)),
    default=None,
    help="jsonl, json, csv or markdown (default: from FILE's extension, else jsonl).",
)
@click.option(
    "--csv-raw",
    "csv_raw",
    is_flag=True,
    help="With --format csv: write cells as stored, without the ' put before = + - @ tab or CR (spreadsheet formulas).",
)
@meta_option
@click.pass_context
def export_command(
    ctx: click.Context, destination: str, format_: str | None, csv_raw: bool, meta: tuple[str, ...]
) -> None:
    """Write every conversation to FILE, or to standard output with - (the default).

    The format follows FILE's extension (.jsonl, .json, .csv, .md) unless --format
    says otherwise; a --format that contradicts the extension is refused. Conversations
    come newest first. The count goes to standard error. CSV cells that a spreadsheet
    would run as a formula get a leading ' unless --csv-raw. On a terminal, standard
    output shows control characters escaped.
    """
    chosen = export_format(None if destination == STDIO else destination, format_ or ("csv" if csv_raw else None))
    if csv_raw and chosen != "csv":
        raise click.UsageError("--csv-raw applies to --format csv only")
    if destination != STDIO:
        folder = os.path.dirname(os.path.abspath(destination))
        if not os.path.isdir(folder):
            fail(f"cannot write {destination}: there is no directory {folder}; create it first or name another file")
    metadata = parse_meta(meta)
    manager = open_manager(ctx)
    # An export shown on the terminal is its own progress: a bar would be drawn over it.
    show_progress = stderr_is_terminal() and not (destination == STDIO and sys.stdout.isatty())
    total = len(manager.list_conversations(metadata=metadata)) if show_progress else None
    target: TextIO | str = destination
    if destination == STDIO:
        # On a terminal the export is for reading: its text must not drive the terminal.
        target = cast(TextIO, TerminalWriter(sys.stdout)) if sys.stdout.isatty() else sys.stdout
    with progress_bar("exporting", total) if show_progress else contextlib.nullcontext() as progress:
        count = manager.export_conversations(
            target,
            format=cast(ExportFormat, chosen),
            metadata=metadata,
            progress=progress,
            csv_formulas="raw" if csv_raw else "escape",
        )
    where = "standard output" if destination == STDIO else destination
    say(f"exported {count} conversation{'' if count == 1 else 's'} to {where} ({chosen})")


@click.command("import")
@click.argument("source", metavar="FILE|-")
@click.option(
    "--format",
    "format_",
    type=click.Choice(list(IMPORT_FORMATS)),
    default=None,
    help="jsonl, json or sharegpt (default: told from the content).",
)
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
    format_: str | None,
    skip_bad_lines: bool,
    on_conflict: str,
    keep_empty: bool,
    batch_size: int,
) -> None:
    """Read conversations from FILE, or from standard input with -, and save them.

    The format (JSON Lines or JSON export, ShareGPT) is told from the content unless
    --format is given. A conversation whose id is already stored, or repeats an
    earlier one of the file, is skipped by default (--on-conflict); conversations
    are never merged. A bad record stops the import with exit code 1 (batches before
    it stay saved) unless --skip-bad-lines; every record not stored is listed on
    standard error, then the counts: imported, skipped, replaced, renamed, without
    messages. Ctrl-C stops it with exit code 130, keeping the batches saved before
    (run the same import again to finish: those are skipped). A store the import
    created is removed again when the import fails before saving anything.
    """
    opened = ctx.with_resource(_closing(open_source(source)))
    ctx.with_resource(_warnings_said())  # e.g. a ShareGPT file cut short: the line of the item left out
    chosen = import_format(opened.where, opened.head, format_)  # before the store is opened or created
    saved = [0]
    with _store_for_import(ctx) as manager, byte_bar("importing", opened.size) as progress:
        if progress is not None:
            opened.counter.on_read = progress[0]

        def count(done: int) -> None:
            saved[0] = done
            if progress is not None:
                progress[1](done)

        try:
            report = manager.import_conversations(
                opened.text(),
                format=cast(ImportFormat, chosen),
                batch_size=batch_size,
                on_error="skip" if skip_bad_lines else "raise",
                on_conflict=cast(OnConflict, on_conflict),
                keep_empty=True if keep_empty else None,
                progress=count,
            )
        except ImportFormatError as error:
            fail(f"{opened.where}: {error}{hint(opened.head, chosen) if format_ else ''}")
        except KeyboardInterrupt:
            say(f"interrupted: {saved[0]} conversations saved before; run the same import again to finish it")
            ctx.exit(INTERRUPTED)
    for line, reason in report.skipped:
        say(f"skipped line {line}: {EMPTY_CLI_REASON if reason == EMPTY_REASON else reason}")
    click.echo(import_summary(report), err=True)


class _SayWarnings(logging.Handler):
    """Each warning the library logs, as one line on standard error (control characters escaped)."""

    def emit(self, record: logging.LogRecord) -> None:
        say(record.getMessage())


@contextlib.contextmanager
def _warnings_said() -> Iterator[None]:
    """While the import runs, the library's warnings are lines of its output, whatever logging is set up."""
    logger = logging.getLogger("qv_session_manager")
    handler = _SayWarnings(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@contextlib.contextmanager
def _closing(source: Source) -> Iterator[Source]:
    try:
        yield source
    finally:
        source.close()


@contextlib.contextmanager
def _store_for_import(ctx: click.Context) -> Iterator[SessionManager]:
    """The store to import into, created if need be; one this created is removed if the import fails empty."""
    url = store_url(ctx)
    path = file_of_url(url)
    created = path is not None and not os.path.exists(path)
    manager = SessionManager(url=note_url(ctx, url))
    try:
        yield manager
    except BaseException:
        try:
            empty = created and not manager.list_conversations(limit=1)
        except SessionStoreError:
            empty = False
        manager.close()
        if empty and path is not None:
            for leftover in (path, path + "-wal", path + "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)
        raise
    manager.close()


def import_summary(report: ImportReport) -> str:
    """``imported N conversations``, then each other count that is not zero."""
    parts = [f"imported {report.imported} conversation{'' if report.imported == 1 else 's'}"]
    for name, count in (("skipped", len(report.skipped)), ("replaced", report.replaced), ("renamed", report.renamed)):
        if count:
            parts.append(f"{name} {count}")
    if report.empty:
        parts.append(f"{report.empty} without messages")
    return ", ".join(parts)
