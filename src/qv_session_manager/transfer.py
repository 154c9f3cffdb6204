"""Reading a whole store page by page, and copying one store into another."""

from __future__ import annotations

from collections.abc import Iterator

from .protocol import ConversationFilter, ConversationStore
from .records import StoredConversation
from .retention import guarded


def iter_stored(
    store: ConversationStore, filter: ConversationFilter | None = None, *, page_size: int = 200
) -> Iterator[StoredConversation]:
    """Every conversation passing ``filter`` with its messages, newest first.

    Conversations are listed a page at a time with keyset paging and loaded one at a
    time, so memory stays bounded by one page of records plus the largest
    conversation, however big the store. A conversation saved while the iteration
    runs may or may not be included; one deleted meanwhile is skipped.
    """
    filter = filter or ConversationFilter()
    after = None
    while True:
        page = store.list(filter, limit=page_size, after=after)
        for record in page:
            stored = store.load(record.id)
            if stored is not None:
                yield stored
        if len(page) < page_size:
            return
        after = page[-1]


def copy_store(source: ConversationStore, destination: ConversationStore, *, page_size: int = 200) -> int:
    """Copy every conversation of ``source`` into ``destination``; return how many.

    Each conversation is written with ``replace=True`` in one save, so the copy is
    idempotent: running it again (or after an interruption) rewrites nothing that is
    already equal and leaves no duplicates. Memory stays bounded as in
    :func:`iter_stored`. Conversations saved in ``source`` while the copy runs may or
    may not be included; copy again afterwards to catch up. A conversation with an
    expiry raises InvalidInputError, before it is written, when ``destination`` does
    not declare ``Capability.EXPIRY`` (it would keep the conversation forever); the
    ones copied before it stay copied.
    """
    destination = guarded(destination)
    copied = 0
    for stored in iter_stored(source, page_size=page_size):
        destination.save(stored.conversation, stored.messages, replace=True)
        copied += 1
    return copied
