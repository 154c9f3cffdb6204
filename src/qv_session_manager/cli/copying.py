"""copy: a whole store from one backend to another, verified afterwards."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from typing import cast

import click

from ..conflicts import ON_CONFLICT_CHOICES, OnConflict
from ..protocol import ConversationFilter, ConversationStore
from ..registry import open_store
from ..transfer import CopyReport, copy_store, iter_stored
from .access import readable_url
from .common import note_url, require_existing, say
from .progress import progress_bar, stderr_is_terminal
from .urls import as_url


@dataclass
class Verification:
    """Source conversations the destination lacks or holds with another number of messages."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    #: (id, messages in the source, messages in the destination)
    different: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.different


def verify(source: ConversationStore, destination: ConversationStore, report: CopyReport | None = None) -> Verification:
    """Check that every conversation of ``source`` the copy wrote is in ``destination`` with as many messages.

    A conversation written under a new id is looked up under that id; one skipped
    (the destination's kept) only has to be there.
    """
    report = report or CopyReport()
    result = Verification()
    skipped = set(report.skipped)
    for stored in iter_stored(source):
        result.checked += 1
        key = stored.conversation.id
        copy = destination.load(report.renamed.get(key, key))
        if copy is None:
            result.missing.append(key)
        elif key not in skipped and len(copy.messages) != len(stored.messages):
            result.different.append((key, len(stored.messages), len(copy.messages)))
    return result


@click.command("copy")
@click.argument("source_url", metavar="SRC_URL")
@click.argument("destination_url", metavar="DST_URL")
@click.option(
    "--on-conflict",
    type=click.Choice(list(ON_CONFLICT_CHOICES)),
    default="replace",
    show_default=True,
    help="A conversation whose id DST_URL already holds: replace it, keep it (skip), "
    "keep both (rename: a new id), or fail.",
)
@click.pass_context
def copy_command(ctx: click.Context, source_url: str, destination_url: str, on_conflict: str) -> None:
    """Copy every conversation from SRC_URL to DST_URL, then verify the copy.

    Conversations whose id DST_URL already holds are replaced by the source's
    version by default (--on-conflict); others there are kept; nothing is merged.
    With the default, run it again to resume an interrupted copy or to catch up:
    nothing is duplicated. Exits with 1, listing them, when a conversation is
    missing in the destination afterwards or has a different number of messages.
    The global --url is not used; a bare path is an SQLite file, and a source this
    process cannot write is read read-only.
    """
    source_url, destination_url = as_url(source_url), as_url(destination_url)
    require_existing(note_url(ctx, source_url))
    source = ctx.with_resource(closing(open_store(note_url(ctx, readable_url(source_url)))))
    destination = ctx.with_resource(closing(open_store(note_url(ctx, destination_url))))
    total = len(source.list(ConversationFilter())) if stderr_is_terminal() else None
    with progress_bar("copying", total) as progress:
        report = copy_store(source, destination, on_conflict=cast(OnConflict, on_conflict), progress=progress)
    click.echo(copy_summary(report), err=True)
    result = verify(source, destination, report)
    for key in result.missing:
        say(f"mismatch: {key} is missing in the destination")
    for key, expected, found in result.different:
        say(f"mismatch: {key} has {expected} messages in the source, {found} in the destination")
    if not result.ok:
        click.echo(
            f"error: {len(result.missing) + len(result.different)} of {result.checked} conversations differ", err=True
        )
        ctx.exit(1)
    click.echo(f"verified {result.checked} conversation{'' if result.checked == 1 else 's'}", err=True)


def copy_summary(report: CopyReport) -> str:
    """``copied N conversations``, then each other count that is not zero."""
    parts = [f"copied {report.copied} conversation{'' if report.copied == 1 else 's'}"]
    for name, count in (
        ("replaced", report.replaced),
        ("skipped", len(report.skipped)),
        ("renamed", len(report.renamed)),
    ):
        if count:
            parts.append(f"{name} {count}")
    return ", ".join(parts)
