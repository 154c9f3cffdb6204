"""The in-memory backend: per-instance dicts behind a lock; also the reference model.

Everything is copied in and out, so callers can never change stored data by
mutating a record's dicts afterwards. Data lives as long as the store object.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace as dataclass_replace
from typing import Any

from ..errors import InvalidInputError, StorageError
from ..hookspecs import hookimpl
from ..protocol import Capability, ConversationFilter, SearchOrder
from ..query import Query, bm25
from ..records import (
    ConversationRecord,
    MessageRecord,
    SearchHit,
    StoredConversation,
    check_unique_message_ids,
)
from ..registry import Backend
from ..text import tokens
from ..rules import check_filter, check_order, check_page, newest_first_key, ordered, page, passes


@dataclass
class _Entry:
    conversation: ConversationRecord
    title_tokens: list[str]
    messages: dict[str, MessageRecord] = field(default_factory=dict)  # insertion order = position
    message_tokens: dict[str, list[str]] = field(default_factory=dict)


def _copy(record):  # type: ignore[no-untyped-def]
    return copy.deepcopy(record)


class MemoryStore:
    """A :class:`~qv_session_manager.protocol.ConversationStore` held in memory."""

    capabilities = frozenset({Capability.RELEVANCE})

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.RLock()
        self._closed = False

    def _tokenize(self, text: str) -> list[str]:
        return tokens(text)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the store is closed")

    def save(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
    ) -> None:
        if not isinstance(conversation, ConversationRecord):
            raise InvalidInputError(f"expected a ConversationRecord, got {type(conversation).__name__}")
        check_unique_message_ids(messages)
        conversation = _copy(conversation)
        messages = [_copy(message) for message in messages]
        with self._lock:
            self._check_open()
            entry = self._entries.get(conversation.id)
            if entry is None:
                entry = _Entry(conversation, self._tokenize(conversation.title or ""))
            new_messages = {} if replace else dict(entry.messages)
            new_tokens = {} if replace else dict(entry.message_tokens)
            for message in messages:
                new_messages[message.id] = message
                previous = entry.messages.get(message.id)
                if previous is not None and previous.content == message.content:
                    new_tokens[message.id] = entry.message_tokens[message.id]
                else:
                    new_tokens[message.id] = self._tokenize(message.content)
            self._entries[conversation.id] = _Entry(
                conversation, self._tokenize(conversation.title or ""), new_messages, new_tokens
            )

    def load(self, conversation_id: str) -> StoredConversation | None:
        with self._lock:
            self._check_open()
            entry = self._entries.get(conversation_id)
            if entry is None:
                return None
            return StoredConversation(
                _copy(entry.conversation), tuple(_copy(m) for m in entry.messages.values())
            )

    def get(self, conversation_id: str) -> ConversationRecord | None:
        with self._lock:
            self._check_open()
            entry = self._entries.get(conversation_id)
            return None if entry is None else _copy(entry.conversation)

    def delete(self, conversation_id: str) -> bool:
        with self._lock:
            self._check_open()
            return self._entries.pop(conversation_id, None) is not None

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        with self._lock:
            self._check_open()
            entry = self._entries.get(conversation_id)
            if entry is None or message_id not in entry.messages:
                return False
            del entry.messages[message_id]
            del entry.message_tokens[message_id]
            return True

    def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> list[ConversationRecord]:
        check_page(limit, offset)
        check_filter(filter)
        with self._lock:
            self._check_open()
            chosen = [e.conversation for e in self._entries.values() if passes(e.conversation, filter)]
        records = ordered(chosen, filter.field)
        if after is not None:
            boundary = newest_first_key(after, filter.field)
            records = [r for r in records if newest_first_key(r, filter.field) < boundary]
        return [_copy(r) for r in page(records, limit, offset)]

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
        check_page(limit, offset)
        check_filter(filter)
        check_order(order)
        if query.is_empty:
            return []
        with self._lock:
            self._check_open()
            entries = list(self._entries.values())
            hits = [
                hit for entry in entries if passes(entry.conversation, filter)
                for hit in [self._match(entry, query, with_text)] if hit is not None
            ]
            if order == "relevance":
                hits = self._scored(hits, entries, query)
        hits.sort(key=lambda hit: newest_first_key(hit.conversation, filter.field), reverse=True)
        if order == "relevance":
            hits.sort(key=lambda hit: hit.score or 0.0, reverse=True)  # stable: ties stay newest first
        return [dataclass_replace(hit, conversation=_copy(hit.conversation)) for hit in page(hits, limit, offset)]

    @staticmethod
    def _match(entry: _Entry, query: Query, with_text: bool) -> SearchHit | None:
        if query.matches(entry.title_tokens):
            return SearchHit(entry.conversation, None, entry.conversation.title if with_text else None)
        for message_id, document in entry.message_tokens.items():
            if query.matches(document):
                text = entry.messages[message_id].content if with_text else None
                return SearchHit(entry.conversation, message_id, text)
        return None

    @staticmethod
    def _scored(hits: list[SearchHit], entries: list[_Entry], query: Query) -> list[SearchHit]:
        """Score each hit by its best-scoring matching document (title or message)."""
        tables = {
            "title": [e.title_tokens for e in entries],
            "message": [doc for e in entries for doc in e.message_tokens.values()],
        }
        stats = {}
        for name, documents in tables.items():
            frequency = {t: sum(1 for d in documents if t.matches(d)) for t in query.terms()}
            average = sum(map(len, documents)) / len(documents) if documents else 0.0
            stats[name] = dict(documents=len(documents), average_length=average, document_frequency=frequency)
        by_id = {e.conversation.id: e for e in entries}
        scored = []
        for hit in hits:
            entry = by_id[hit.conversation.id]
            candidates = [(entry.title_tokens, "title")] + [(d, "message") for d in entry.message_tokens.values()]
            best = max(
                (bm25(query, doc, **stats[name]) for doc, name in candidates if query.matches(doc)),
                default=0.0,
            )
            scored.append(dataclass_replace(hit, score=best))
        return scored

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._entries.clear()


def _open_url(url: str, options: Mapping[str, Any]) -> MemoryStore:
    if options:
        raise InvalidInputError(f"the memory backend takes no options, got: {', '.join(sorted(options))}")
    return MemoryStore()


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(Backend("memory", _open_url, description="in-process dicts, gone when the store is (built in)"))
