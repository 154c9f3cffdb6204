"""Saving the conversations of an import into a store, in batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from ..errors import ImportFormatError, InvalidInputError
from ..protocol import BulkSaving, ConversationStore, SaveItem
from ..records import StoredConversation
from ..rules import check_positive_int
from .jsonl import Entry

OnError = Literal["raise", "skip"]


@dataclass(frozen=True)
class ImportReport:
    """What an import did: ``imported`` conversations saved, ``skipped`` as (line, reason) in file order."""

    imported: int
    skipped: list[tuple[int, str]] = field(default_factory=list)


def import_entries(
    store: ConversationStore,
    entries: Iterable[Entry],
    *,
    batch_size: int = 500,
    message_limit: int = 20_000,
    on_error: OnError = "raise",
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Save every conversation of ``entries`` into ``store``; return the report.

    Conversations are saved in file order, in batches of ``batch_size`` conversations
    (fewer when a batch reaches ``message_limit`` messages), each batch through the
    store's ``save_many`` (one transaction) when it has one, else one ``save`` per
    conversation. A conversation is always saved whole, as ``save`` without
    ``replace`` does (messages already stored and absent from the file are kept).
    Memory holds one batch.

    A bad entry (or a conversation the store refuses) with ``on_error="raise"``: the
    conversations before it are saved, then its ImportFormatError is raised. With
    ``"skip"`` it is listed in ``skipped`` and the rest is imported. Errors that make
    the rest of the file unreadable (bad header, JSON syntax in a document) are
    raised in both modes, after saving what came before. ``progress`` is called with
    the running number of saved conversations after each batch.
    """
    check_positive_int(batch_size, "batch_size")
    if on_error not in ("raise", "skip"):
        raise InvalidInputError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    saver = _BatchSaver(store, on_error, progress)
    batch: list[tuple[int, StoredConversation]] = []
    messages = 0
    try:
        for line, item in entries:
            if isinstance(item, ImportFormatError):
                if on_error == "raise":
                    raise item
                saver.skipped.append((line, item.reason))
                continue
            batch.append((line, item))
            messages += len(item.messages)
            if len(batch) >= batch_size or messages >= message_limit:
                pending, batch, messages = batch, [], 0
                saver.save(pending)
    except ImportFormatError:
        saver.save(batch)  # everything before the bad line is saved, as documented
        raise
    saver.save(batch)
    return ImportReport(saver.imported, sorted(saver.skipped))


class _BatchSaver:
    def __init__(self, store: ConversationStore, on_error: OnError, progress: Callable[[int], None] | None) -> None:
        self.store = store
        self.on_error = on_error
        self.progress = progress
        self.imported = 0
        self.skipped: list[tuple[int, str]] = []

    def save(self, batch: list[tuple[int, StoredConversation]]) -> None:
        if not batch:
            return
        if isinstance(self.store, BulkSaving):
            items: list[SaveItem] = [(stored.conversation, stored.messages) for _, stored in batch]
            try:
                self.imported += self.store.save_many(items)
            except InvalidInputError:
                # The bulk save wrote nothing; save one by one to find the conversation refused.
                self._one_by_one(batch)
        else:
            self._one_by_one(batch)
        if self.progress is not None:
            self.progress(self.imported)

    def _one_by_one(self, batch: list[tuple[int, StoredConversation]]) -> None:
        for line, stored in batch:
            try:
                self.store.save(stored.conversation, stored.messages)
            except InvalidInputError as exc:
                if self.on_error == "raise":
                    raise ImportFormatError(line, f"the store refused the conversation: {exc}") from exc
                self.skipped.append((line, f"the store refused the conversation: {exc}"))
                continue
            self.imported += 1
