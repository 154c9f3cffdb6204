"""Saving the conversations of an import into a store, in batches, with one rule for taken ids."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from ..conflicts import (
    OnConflict,
    Outcome,
    check_on_conflict,
    conflict_reason,
    decide,
    with_new_id,
)
from ..errors import ImportFormatError, InvalidInputError
from ..protocol import Capability, ConversationStore, SaveItem, offers
from ..records import StoredConversation
from ..rules import check_positive_int
from .jsonl import Entry

OnError = Literal["raise", "skip"]

#: The reason given for an entry without messages left out (``keep_empty=False``).
EMPTY_REASON = "the conversation has no messages: not stored (keep_empty=True stores it)"


@dataclass(frozen=True)
class ImportReport:
    """What an import did; every entry of the file is counted exactly once.

    - ``imported``: conversations saved under their own id, which was free;
    - ``skipped``: entries not saved, as ``(line, reason)`` in file order: bad
      entries (``on_error="skip"``), taken ids under ``on_conflict="skip"`` (or
      ``"fail"`` with ``on_error="skip"``), and entries without messages left out;
    - ``replaced``: conversations saved over a stored one with the same id;
    - ``renamed``: conversations saved under a new id because theirs was taken;
    - ``empty``: entries without messages met, whether stored or skipped.

    The store gained ``imported + renamed`` conversations.
    """

    imported: int
    skipped: list[tuple[int, str]] = field(default_factory=list)
    replaced: int = 0
    renamed: int = 0
    empty: int = 0

    @property
    def saved(self) -> int:
        """How many conversations were written: ``imported + replaced + renamed``."""
        return self.imported + self.replaced + self.renamed


def import_entries(
    store: ConversationStore,
    entries: Iterable[Entry],
    *,
    batch_size: int = 500,
    message_limit: int = 20_000,
    on_error: OnError = "raise",
    on_conflict: OnConflict = "skip",
    keep_empty: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Save every conversation of ``entries`` into ``store``; return the report.

    Conversations are taken in file order, in batches of ``batch_size``
    conversations (fewer when a batch reaches ``message_limit`` messages). A
    conversation whose id is free is saved through the store's ``save_many`` (one
    transaction per batch) when it has one, else by ``save``. Memory holds one
    batch.

    A conversation whose id is taken (stored already, or given to an earlier entry
    of the file) follows ``on_conflict`` (see :mod:`qv_session_manager.conflicts`):
    ``"skip"`` (default) keeps the stored one and lists the entry in ``skipped``;
    ``"replace"`` saves it with ``replace=True`` (its own transaction); ``"rename"``
    saves it under a new random id; ``"fail"`` makes it a bad entry. Two
    conversations are never merged. ``"skip"`` is the default because it never
    changes or loses what the store holds and never duplicates: importing the same
    file twice adds nothing the second time, and every entry left out is named in
    the report, so nothing disappears silently.

    An entry without messages is counted in ``empty``; with ``keep_empty=False`` it
    is listed in ``skipped`` and not stored.

    A bad entry (or a conversation the store refuses, or a taken id under
    ``"fail"``) with ``on_error="raise"``: the conversations before it are saved,
    then its ImportFormatError is raised. With ``"skip"`` it is listed in
    ``skipped`` and the rest is imported. Errors that make the rest of the file
    unreadable (bad header, JSON syntax in a document) are raised in both modes,
    after saving what came before. ``progress`` is called with the running number
    of saved conversations (``ImportReport.saved``) after each batch.
    """
    check_positive_int(batch_size, "batch_size")
    if on_error not in ("raise", "skip"):
        raise InvalidInputError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    check_on_conflict(on_conflict)
    saver = _BatchSaver(store, on_error, on_conflict, progress)
    batch: list[tuple[int, StoredConversation]] = []
    messages = 0
    try:
        for line, item in entries:
            if isinstance(item, ImportFormatError):
                if on_error == "raise":
                    raise item
                saver.skipped.append((line, item.reason))
                continue
            if not item.messages:
                saver.empty += 1
                if not keep_empty:
                    saver.skipped.append((line, EMPTY_REASON))
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
    return saver.report()


#: One write of a batch: the outcome it counts as, the entry's line, what to save.
_Write = tuple[Outcome, int, StoredConversation]


class _BatchSaver:
    def __init__(
        self,
        store: ConversationStore,
        on_error: OnError,
        on_conflict: OnConflict,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.store = store
        self.on_error = on_error
        self.on_conflict = on_conflict
        self.progress = progress
        self.counts = dict.fromkeys((Outcome.NEW, Outcome.REPLACED, Outcome.RENAMED), 0)
        self.skipped: list[tuple[int, str]] = []
        self.empty = 0

    def report(self) -> ImportReport:
        return ImportReport(
            imported=self.counts[Outcome.NEW],
            skipped=sorted(self.skipped),
            replaced=self.counts[Outcome.REPLACED],
            renamed=self.counts[Outcome.RENAMED],
            empty=self.empty,
        )

    def save(self, batch: list[tuple[int, StoredConversation]]) -> None:
        """Resolve the ids of ``batch`` in order and write it; a refusal raises after what came before."""
        if not batch:
            return
        writes: list[_Write] = []
        given: set[str] = set()  # ids taken by earlier entries of this batch (not yet written)
        try:
            for line, stored in batch:
                key = stored.conversation.id
                outcome = decide(key in given or self.store.get(key) is not None, self.on_conflict)
                if outcome is Outcome.SKIPPED:
                    self.skipped.append((line, conflict_reason(key, outcome)))
                    continue
                if outcome is Outcome.FAILED:
                    if self.on_error == "raise":
                        raise ImportFormatError(line, conflict_reason(key, outcome))
                    self.skipped.append((line, conflict_reason(key, outcome)))
                    continue
                if outcome is Outcome.RENAMED:
                    stored = with_new_id(stored)
                given.add(stored.conversation.id)
                writes.append((outcome, line, stored))
        finally:
            self._write(writes)  # on a refusal: what came before it
        if self.progress is not None:
            self.progress(sum(self.counts.values()))

    def _write(self, writes: list[_Write]) -> None:
        """Runs of new or renamed conversations in one bulk save each; each replacement on its own."""
        run: list[_Write] = []
        for write in writes:
            if write[0] is Outcome.REPLACED:
                self._bulk(run)
                run = []
                self._one(write)
            else:
                run.append(write)
        self._bulk(run)

    def _bulk(self, run: list[_Write]) -> None:
        if not run:
            return
        if offers(self.store, Capability.BULK_SAVING):
            items: list[SaveItem] = [(stored.conversation, stored.messages) for _, _, stored in run]
            try:
                self.store.save_many(items)
            except InvalidInputError:
                pass  # the bulk save wrote nothing; save one by one to find the conversation refused
            else:
                for outcome, _, _ in run:
                    self.counts[outcome] += 1
                return
        for write in run:
            self._one(write)

    def _one(self, write: _Write) -> None:
        outcome, line, stored = write
        try:
            self.store.save(stored.conversation, stored.messages, replace=outcome is Outcome.REPLACED)
        except InvalidInputError as exc:
            if self.on_error == "raise":
                raise ImportFormatError(line, f"the store refused the conversation: {exc}") from exc
            self.skipped.append((line, f"the store refused the conversation: {exc}"))
            return
        self.counts[outcome] += 1
