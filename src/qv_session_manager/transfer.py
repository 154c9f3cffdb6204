"""Reading a whole store page by page, and copying one store into another."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .conflicts import (
    OnConflict,
    Outcome,
    check_on_conflict,
    conflict_reason,
    decide,
    with_new_id,
)
from .errors import ConversationExistsError
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


@dataclass(frozen=True)
class CopyReport:
    """What :func:`copy_store` did with each conversation of the source.

    - ``copied``: written under its own id, which was free in the destination;
    - ``replaced``: written over the destination's conversation with the same id;
    - ``skipped``: ids whose destination conversation was kept as it was;
    - ``renamed``: source id -> the new id it was written under in the destination.
    """

    copied: int = 0
    replaced: int = 0
    skipped: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)

    @property
    def written(self) -> int:
        """How many conversations were written to the destination."""
        return self.copied + self.replaced + len(self.renamed)


def copy_store(
    source: ConversationStore,
    destination: ConversationStore,
    *,
    on_conflict: OnConflict = "replace",
    page_size: int = 200,
    progress: Callable[[int], None] | None = None,
) -> CopyReport:
    """Copy every conversation of ``source`` into ``destination``; return the report.

    Each conversation is written whole in one ``save(..., replace=True)``, never
    merged with a destination conversation. A conversation whose id the
    destination already holds follows ``on_conflict`` (see
    :mod:`qv_session_manager.conflicts`): ``"replace"`` (default), ``"skip"``,
    ``"rename"`` or ``"fail"`` (ConversationExistsError, raised before it is
    written). ``"replace"`` is the default because a copy makes the destination
    hold the source's conversations as they are now: running it again (or after an
    interruption) rewrites what changed, duplicates nothing and catches up; the
    destination's other conversations are kept. ``"skip"`` keeps what the
    destination holds; ``"rename"`` keeps both (and so duplicates on every rerun).

    Memory stays bounded as in :func:`iter_stored` plus the report's lists of
    skipped and renamed ids. ``progress`` is called with the number of source
    conversations handled so far after each one. Conversations saved in ``source``
    while the copy runs may or may not be included; copy again afterwards to catch
    up. A conversation with an expiry raises InvalidInputError, before it is
    written, when ``destination`` does not declare ``Capability.EXPIRY`` (it would
    keep the conversation forever). On any error the conversations copied before
    stay copied. Raises InvalidInputError for an unknown ``on_conflict`` before
    reading anything.
    """
    check_on_conflict(on_conflict)
    destination = guarded(destination)
    report = CopyReport()
    counts = dict.fromkeys((Outcome.NEW, Outcome.REPLACED), 0)
    for handled, stored in enumerate(iter_stored(source, page_size=page_size), 1):
        key = stored.conversation.id
        outcome = decide(destination.get(key) is not None, on_conflict)
        if outcome is Outcome.FAILED:
            raise ConversationExistsError(key, conflict_reason(key, outcome))
        if outcome is Outcome.SKIPPED:
            report.skipped.append(key)
        else:
            if outcome is Outcome.RENAMED:
                stored = with_new_id(stored)
                report.renamed[key] = stored.conversation.id
            # replace=True also for a free id: nothing hidden (an expired conversation) is merged in
            destination.save(stored.conversation, stored.messages, replace=True)
            if outcome is not Outcome.RENAMED:
                counts[outcome] += 1
        if progress is not None:
            progress(handled)
    return dataclasses.replace(report, copied=counts[Outcome.NEW], replaced=counts[Outcome.REPLACED])
