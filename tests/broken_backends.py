"""Deliberately broken backends: the conformance suite must catch each of them."""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.held import Held
from qv_session_manager.protocol import Capability, ConversationFilter, SearchOrder
from qv_session_manager.query import Alternative, Query, Term
from qv_session_manager.records import (
    ConversationRecord,
    MessageRecord,
    SearchHit,
    StoredConversation,
)
from qv_session_manager.rules import newest_first_key, page
from qv_session_manager.timeutil import time_key

_WORD = re.compile(r"[^\W_]+")


class CaseSensitiveSearch(MemoryStore):
    """Indexes words as written: 'python' misses 'Python'."""

    def _tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text)


class DiacriticsKept(MemoryStore):
    """Folds case but keeps accents: 'resume' misses 'Résumé'."""

    def _tokenize(self, text: str) -> list[str]:
        return [token.lower() for token in _WORD.findall(text)]


class OrderedByTimestamp(MemoryStore):
    """Orders messages by created_at instead of the stored sequence."""

    def load(self, conversation_id: str) -> StoredConversation | None:
        stored = super().load(conversation_id)
        if stored is None:
            return None
        by_time = sorted(stored.messages, key=lambda m: (m.created_at.replace(tzinfo=None), m.id))
        return replace(stored, messages=tuple(by_time))


class DeleteLeavesMessages(MemoryStore):
    """Deletes the conversation row but keeps its messages, which come back with the id."""

    def __init__(self) -> None:
        super().__init__()
        self._orphans: dict[str, list[MessageRecord]] = {}

    def delete(self, conversation_id: str) -> bool:
        stored = self.load(conversation_id)
        if stored is not None:
            self._orphans[conversation_id] = list(stored.messages)
        return super().delete(conversation_id)

    def save(
        self, conversation: ConversationRecord, messages: Sequence[MessageRecord], *, replace: bool = False
    ) -> None:
        leftovers = self._orphans.pop(conversation.id, [])
        if leftovers and self.get(conversation.id) is None:
            super().save(conversation, leftovers)
        super().save(conversation, messages, replace=replace)


class NonAtomicSave(MemoryStore):
    """Writes messages one at a time, so a failure half-way leaves half a save."""

    def save(
        self, conversation: ConversationRecord, messages: Sequence[MessageRecord], *, replace: bool = False
    ) -> None:
        super().save(conversation, [], replace=replace)
        for message in messages:
            super().save(conversation, [message])


class RepeatingPages(MemoryStore):
    """Keyset paging that starts the next page at the cursor row itself."""

    def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> list[ConversationRecord]:
        rows = super().list(filter)
        if after is not None:
            ids = [row.id for row in rows]
            rows = rows[ids.index(after.id) :] if after.id in ids else rows
        end = None if limit is None else offset + limit
        return rows[offset:end]


def _by_time_then_title(record: ConversationRecord, field: str) -> tuple[str, str]:
    return time_key(getattr(record, field)), record.title or ""


class TiesByTitle(MemoryStore):
    """Breaks ties of equal timestamps by descending title instead of descending id (lists and searches)."""

    def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> list[ConversationRecord]:
        rows = sorted(
            super().list(filter, after=after), key=lambda r: _by_time_then_title(r, filter.field), reverse=True
        )
        return page(rows, limit, offset)

    def search(
        self,
        query: Query,
        filter: ConversationFilter,
        *,
        order: SearchOrder = "recent",
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> list[SearchHit]:
        hits = super().search(query, filter, order=order, with_text=with_text)
        if order == "recent":
            hits.sort(key=lambda hit: _by_time_then_title(hit.conversation, filter.field), reverse=True)
        return page(hits, limit, offset)


class RelevanceTiesByAscendingId(MemoryStore):
    """Orders relevance hits of equal score by ascending id, ignoring their timestamps."""

    def search(
        self,
        query: Query,
        filter: ConversationFilter,
        *,
        order: SearchOrder = "recent",
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> list[SearchHit]:
        hits = super().search(query, filter, order=order, with_text=with_text)
        if order == "relevance":
            hits.sort(key=lambda hit: (-(hit.score or 0.0), hit.conversation.id))
        return page(hits, limit, offset)


class KeysetByUpdatedAt(MemoryStore):
    """Continues keyset pages after the cursor's updated_at, whatever field the listing orders by."""

    def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> list[ConversationRecord]:
        rows = super().list(filter)
        if after is not None:
            boundary = newest_first_key(after, "updated_at")
            rows = [row for row in rows if newest_first_key(row, "updated_at") < boundary]
        return page(rows, limit, offset)


class SearchEndInclusive(MemoryStore):
    """Treats the end of a search's time range as inclusive (listings get it right)."""

    def search(
        self,
        query: Query,
        filter: ConversationFilter,
        *,
        order: SearchOrder = "recent",
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> list[SearchHit]:
        if filter.end is not None:
            with contextlib.suppress(OverflowError):
                filter = replace(filter, end=filter.end + timedelta(microseconds=1))
        return super().search(query, filter, order=order, limit=limit, offset=offset, with_text=with_text)


@dataclass(frozen=True)
class _LongerOnly(Term):
    """A prefix term that only matches words longer than the prefix: ``al*`` misses ``al``."""

    def starts(self, document: Sequence[str]) -> list[int]:
        last = len(self.tokens) - 1
        return [start for start in super().starts(document) if document[start + last] != self.tokens[-1]]


def _strict(term: Term) -> Term:
    return _LongerOnly(term.tokens, True) if term.prefix else term


class PrefixMissesExactWord(MemoryStore):
    """Matches ``pref*`` only against words longer than ``pref`` (a LIKE 'pref_%' mistake)."""

    def search(
        self,
        query: Query,
        filter: ConversationFilter,
        *,
        order: SearchOrder = "recent",
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> list[SearchHit]:
        strict = Query(
            tuple(
                Alternative(tuple(map(_strict, a.required)), tuple(map(_strict, a.excluded)))
                for a in query.alternatives
            )
        )
        return super().search(strict, filter, order=order, limit=limit, offset=offset, with_text=with_text)


class MessageFoldingOff(MemoryStore):
    """Folds case and accents in titles but indexes message text as written."""

    def _tokenize_message(self, content: str) -> list[str]:
        return _WORD.findall(content)


class ExpiredStillListed(MemoryStore):
    """Hides expired conversations from load, get and writes, but not from list and search."""

    def _live_entries(self) -> list[Any]:
        return list(self._entries.values())


class DeletedTextStaysIndexed(MemoryStore):
    """A search index that only grows: deleted, edited and replaced text stays in it, unseen by searches."""

    def __init__(self) -> None:
        super().__init__()
        self._index: set[str] = set()

    def _write(self, held: Held) -> Held:
        stored = super()._write(held)
        title, documents = self._documents(stored)
        self._index.update(title, *documents.values())
        return stored

    def indexed_tokens(self) -> set[str]:
        with self._lock:
            self._check_open()
            return set(self._index)


class UndeclaredBulkSaving(MemoryStore):
    """Has a working save_many but does not declare it: nothing would ever call it."""

    capabilities = MemoryStore.capabilities - {Capability.BULK_SAVING}


class DeclaredWithoutMethod(MemoryStore):
    """Declares Droppable without having drop()."""

    capabilities = MemoryStore.capabilities | {Capability.DROPPABLE}


@dataclass
class Shared:
    """The data of one store name, shared by every SharedMemoryStore opened on it."""

    entries: dict[str, Any] = field(default_factory=dict)
    revisions: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    revision: dict[str, int] = field(default_factory=dict)
    lock: Any = field(default_factory=threading.RLock)


class SharedMemoryStore(MemoryStore):
    """A correct MULTI_PROCESS store: store objects on one name share the data and one lock."""

    capabilities = MemoryStore.capabilities | {Capability.MULTI_PROCESS}

    def __init__(self, shared: Shared | None = None) -> None:
        super().__init__()
        shared = Shared() if shared is None else shared
        self._entries, self._revisions, self._revision = shared.entries, shared.revisions, shared.revision
        self._lock = self._lock_of(shared)

    @staticmethod
    def _lock_of(shared: Shared) -> Any:
        return shared.lock

    def close(self) -> None:
        with self._lock:
            self._closed = True  # the data belongs to every store object on the name


class LostUpdatesAcrossStores(SharedMemoryStore):
    """Shares the data but locks per store object: two objects read, then write, over each other."""

    @staticmethod
    def _lock_of(shared: Shared) -> Any:
        return threading.RLock()

    def _live(self, conversation_id: str, now: str) -> Any:
        entry = super()._live(conversation_id, now)
        time.sleep(0.001)  # the window between reading and writing that another store object writes in
        return entry


class TornReplaceAcrossStores(SharedMemoryStore):
    """Replaces in two writes (the messages emptied, then the new ones), so another store object reads half a state."""

    def save(
        self, conversation: ConversationRecord, messages: Sequence[MessageRecord], *, replace: bool = False
    ) -> None:
        if not replace:
            super().save(conversation, messages)
            return
        super().save(conversation, [], replace=True)
        time.sleep(0.001)
        super().save(conversation, messages)


class StaleRevisionAccepted(SharedMemoryStore):
    """Conditional saves ignore ``expected``: a read-modify-write overwrites what another store object wrote."""

    def save_revisioned(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
        expected: Hashable | None = None,
    ) -> Hashable | None:
        return super().save_revisioned(conversation, messages, replace=replace)

    def load(self, conversation_id: str) -> StoredConversation | None:
        stored = super().load(conversation_id)
        time.sleep(0.001)  # the window between reading and writing back that another store object writes in
        return stored


def opener(store: type[MemoryStore]) -> Callable[[str], MemoryStore]:
    """A store_opener for ``store``: independent stores, or shared data per name for SharedMemoryStore kinds."""
    if issubclass(store, SharedMemoryStore):
        names: dict[str, Shared] = defaultdict(Shared)
        shared_store = store
        return lambda name: shared_store(names[name])
    return lambda name: store()
