"""Copying conversations from one store to another (e.g. SQLite to PostgreSQL)."""

from __future__ import annotations

from .protocol import ConversationFilter, ConversationStore


def copy_store(source: ConversationStore, destination: ConversationStore, *, page_size: int = 200) -> int:
    """Copy every conversation of ``source`` into ``destination``; return how many.

    Each conversation is written with ``replace=True`` in one save, so the copy is
    idempotent: running it again (or after an interruption) rewrites nothing that is
    already equal and leaves no duplicates. Conversations are read one at a time,
    newest first, with keyset paging, so memory stays bounded by the largest
    conversation. Conversations saved in ``source`` while the copy runs may or may not
    be included; copy again afterwards to catch up.
    """
    copied = 0
    after = None
    while True:
        page = source.list(ConversationFilter(), limit=page_size, after=after)
        if not page:
            return copied
        for record in page:
            stored = source.load(record.id)
            if stored is not None:  # deleted meanwhile
                destination.save(stored.conversation, stored.messages, replace=True)
                copied += 1
        after = page[-1]
