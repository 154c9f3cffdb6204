"""copy: a whole store from one backend to another, verified afterwards."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field

import click

from ..protocol import ConversationFilter, ConversationStore
from ..registry import open_store
from ..transfer import iter_stored
from .common import note_url, progress_bar, require_existing, say, stderr_is_terminal


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


def copy_all(
    source: ConversationStore, destination: ConversationStore, progress: Callable[[int], None] | None = None
) -> int:
    """Copy every conversation, each in one ``replace=True`` save; return how many.

    Idempotent and resumable: a rerun rewrites nothing already equal and duplicates
    nothing, so an interrupted copy is finished by running it again.
    """
    copied = 0
    for stored in iter_stored(source):
        destination.save(stored.conversation, stored.messages, replace=True)
        copied += 1
        if progress is not None:
            progress(copied)
    return copied


def verify(source: ConversationStore, destination: ConversationStore) -> Verification:
    """Check that every conversation of ``source`` is in ``destination`` with as many messages."""
    result = Verification()
    for stored in iter_stored(source):
        result.checked += 1
        key = stored.conversation.id
        copy = destination.load(key)
        if copy is None:
            result.missing.append(key)
        elif len(copy.messages) != len(stored.messages):
            result.different.append((key, len(stored.messages), len(copy.messages)))
    return result


@click.command("copy")
@click.argument("source_url", metavar="SRC_URL")
@click.argument("destination_url", metavar="DST_URL")
@click.pass_context
def copy_command(ctx: click.Context, source_url: str, destination_url: str) -> None:
    """Copy every conversation from SRC_URL to DST_URL, then verify the copy.

    Conversations in DST_URL are replaced by the source's version; others there are
    kept. Run it again to resume an interrupted copy or to catch up: nothing is
    duplicated. Exits with 1, listing them, when a conversation is missing in the
    destination afterwards or has a different number of messages. The global --url
    is not used.
    """
    require_existing(note_url(ctx, source_url))
    source = ctx.with_resource(closing(open_store(source_url)))
    destination = ctx.with_resource(closing(open_store(note_url(ctx, destination_url))))
    total = len(source.list(ConversationFilter())) if stderr_is_terminal() else None
    with progress_bar("copying", total) as progress:
        copied = copy_all(source, destination, progress)
    click.echo(f"copied {copied} conversation{'' if copied == 1 else 's'}", err=True)
    result = verify(source, destination)
    for key in result.missing:
        say(f"mismatch: {key} is missing in the destination")
    for key, expected, found in result.different:
        say(f"mismatch: {key} has {expected} messages in the source, {found} in the destination")
    if not result.ok:
        click.echo(f"error: {len(result.missing) + len(result.different)} of {result.checked} conversations differ", err=True)
        ctx.exit(1)
    click.echo(f"verified {result.checked} conversation{'' if result.checked == 1 else 's'}", err=True)

