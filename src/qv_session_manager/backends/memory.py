"""The in-memory backend: per-instance dicts behind a lock; also the reference model.

Everything is copied in and out, so callers can never change stored data by
mutating a record's dicts afterwards. Data lives as long as the store object.
"""

from __future__ import annotations

import builtins
import copy
import itertools
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from datetime import datetime
from typing import Any, TypeVar

from ..errors import InvalidInputError, StorageError
from ..hookspecs import hookimpl
from ..protocol import Capability, ConversationFilter, SaveItem, SearchOrder
from ..query import Query
from ..records import (
    ConversationRecord,
    MessageRecord,
    SearchHit,
    StoredConversation,
    check_append,
    check_save,
    checked_save_items,
    expiry_key,
)
from ..redact import mask_url
from ..registry import Backend
from ..rules import Searchable, check_window, is_expired, now_key, reference_list, reference_search, window_of
from ..text import tokens


@dataclass
class _Entry:
    conversation: ConversationRecord
    title_tokens: list[str]
    messages: dict[str, MessageRecord] = field(default_factory=dict)  # insertion order = position
    message_tokens: dict[str, list[str]] = field(default_factory=dict)
    expiry: str | None = None  # time key of metadata["expires_at"], parsed once at save
    revision: int = 0  # from the store's counter: a new number at every write to the entry


_R = TypeVar("_R")
_Record = TypeVar("_Record", ConversationRecord, MessageRecord)


def _copy(record: _R) -> _R:
    return copy.deepcopy(record)


def _checked_copy(record: _Record) -> _Record:
    """A deep copy, validated again: the caller may have changed the record's dicts."""
    return dataclass_replace(copy.deepcopy(record))


class MemoryStore:
    """A :class:`~qv_session_manager.protocol.ConversationStore` held in memory."""

    capabilities = frozenset({
        Capability.RELEVANCE, Capability.EXPIRY, Capability.BULK_SAVING, Capability.REVISIONED_SAVING,
        Capability.WINDOWED_LOADING, Capability.PURGING, Capability.INDEX_INSPECTION,
    })

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._revisions = itertools.count(1)
        self._lock = threading.RLock()
        self._closed = False

    def _tokenize(self, text: str) -> list[str]:
        return tokens(text)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the store is closed")

    def _live(self, conversation_id: str, now: str) -> _Entry | None:
        """The entry of a conversation that exists and has not expired at ``now`` (call under the lock)."""
        entry = self._entries.get(conversation_id)
        return None if entry is None or is_expired(entry.expiry, now) else entry

    def _live_entries(self) -> list[_Entry]:
        """Every entry not expired now (call under the lock)."""
        now = now_key()
        return [entry for entry in self._entries.values() if not is_expired(entry.expiry, now)]

    def save(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
    ) -> None:
        self.save_revisioned(conversation, messages, replace=replace)

    def save_revisioned(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
        expected: Hashable | None = None,
    ) -> Hashable | None:
        """See :class:`~qv_session_manager.protocol.RevisionedSaving`: one counter for the whole store."""
        check_save(conversation, messages)
        checked = self._copies(conversation, messages)
        with self._lock:
            self._check_open()
            now = now_key()
            if expected is not None:
                entry = self._live(conversation.id, now)
                if entry is None or entry.revision != expected:
                    return None
            return self._apply(*checked, replace, now)

    def save_many(self, items: Iterable[SaveItem]) -> int:
        """Save every pair at once (see BulkSaving): all are checked before any is applied."""
        checked = [self._copies(conversation, messages) for conversation, messages in checked_save_items(items)]
        with self._lock:
            self._check_open()
            now = now_key()
            for conversation, messages in checked:
                self._apply(conversation, messages, False, now)
        return len(checked)

    @staticmethod
    def _copies(
        conversation: ConversationRecord, messages: Sequence[MessageRecord]
    ) -> tuple[ConversationRecord, list[MessageRecord]]:
        """Private, verified copies of what a checked save stores; raises InvalidInputError."""
        return _checked_copy(conversation), [_checked_copy(message) for message in messages]

    def _apply(
        self, conversation: ConversationRecord, messages: list[MessageRecord], replace: bool, now: str
    ) -> int:
        """The effect of a save on checked copies; the caller holds the lock. Returns the new revision.

        A conversation expired at ``now`` is replaced whole, as if it had never been stored.
        """
        entry = self._live(conversation.id, now)
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
        revision = next(self._revisions)
        self._entries[conversation.id] = _Entry(
            conversation, self._tokenize(conversation.title or ""), new_messages, new_tokens,
            expiry_key(conversation.metadata), revision,
        )
        return revision

    def append(
        self,
        conversation_id: str,
        messages: Sequence[MessageRecord],
        *,
        updated_at: datetime | None = None,
    ) -> bool:
        updated_at = check_append(messages, updated_at)
        with self._lock:
            self._check_open()
            now = now_key()
            entry = self._live(conversation_id, now)
            if entry is None:
                return False
            record = entry.conversation
            if updated_at is not None:
                record = dataclass_replace(record, updated_at=updated_at)
            self._apply(*self._copies(record, messages), False, now)
            return True

    def load(self, conversation_id: str) -> StoredConversation | None:
        with self._lock:
            self._check_open()
            entry = self._live(conversation_id, now_key())
            if entry is None:
                return None
            return StoredConversation(
                _copy(entry.conversation), tuple(_copy(m) for m in entry.messages.values())
            )

    def load_window(
        self,
        conversation_id: str,
        *,
        last_messages: int | None = None,
        last_turns: int | None = None,
        keep_system: bool = True,
    ) -> StoredConversation | None:
        """See :class:`~qv_session_manager.protocol.WindowedLoading`: the shared rule over the stored list."""
        check_window(last_messages, last_turns, keep_system)
        with self._lock:
            self._check_open()
            entry = self._live(conversation_id, now_key())
            if entry is None:
                return None
            whole = StoredConversation(entry.conversation, tuple(entry.messages.values()))
            window = window_of(whole, last_messages=last_messages, last_turns=last_turns, keep_system=keep_system)
            return StoredConversation(_copy(window.conversation), tuple(_copy(m) for m in window.messages))

    def get(self, conversation_id: str) -> ConversationRecord | None:
        with self._lock:
            self._check_open()
            entry = self._live(conversation_id, now_key())
            return None if entry is None else _copy(entry.conversation)

    def delete(self, conversation_id: str) -> bool:
        with self._lock:
            self._check_open()
            entry = self._entries.pop(conversation_id, None)  # an expired one goes too, unreported
            return entry is not None and not is_expired(entry.expiry, now_key())

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        with self._lock:
            self._check_open()
            entry = self._live(conversation_id, now_key())
            if entry is None or message_id not in entry.messages:
                return False
            del entry.messages[message_id]
            del entry.message_tokens[message_id]
            entry.revision = next(self._revisions)
            return True

    def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> list[ConversationRecord]:
        with self._lock:
            self._check_open()
            records = [entry.conversation for entry in self._live_entries()]
        return [_copy(r) for r in reference_list(records, filter, limit=limit, offset=offset, after=after)]

    def search(
        self,
        query: Query,
        filter: ConversationFilter,
        *,
        order: SearchOrder = "recent",
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> builtins.list[SearchHit]:
        with self._lock:
            self._check_open()
            items = [
                Searchable(
                    entry.conversation,
                    entry.title_tokens,
                    [(mid, document, entry.messages[mid].content) for mid, document in entry.message_tokens.items()],
                )
                for entry in self._live_entries()
            ]
            hits = reference_search(
                items, query, filter, order=order, limit=limit, offset=offset, with_text=with_text
            )
            return [dataclass_replace(hit, conversation=_copy(hit.conversation)) for hit in hits]

    def indexed_tokens(self) -> set[str]:
        """See :class:`~qv_session_manager.protocol.IndexInspection`: the tokens of every entry, expired ones too."""
        with self._lock:
            self._check_open()
            held: set[str] = set()
            for entry in self._entries.values():
                held.update(entry.title_tokens)
                for document in entry.message_tokens.values():
                    held.update(document)
            return held

    def purge_expired(self) -> int:
        """See :class:`~qv_session_manager.protocol.Expiring`: drop every entry expired now."""
        with self._lock:
            self._check_open()
            now = now_key()
            doomed = [key for key, entry in self._entries.items() if is_expired(entry.expiry, now)]
            for key in doomed:
                del self._entries[key]
            return len(doomed)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._entries.clear()


def _open_url(url: str, options: Mapping[str, Any]) -> MemoryStore:
    if "?" in url or "#" in url:
        raise InvalidInputError(f"{mask_url(url)!r}: the memory backend takes no options; write memory://")
    if options:
        raise InvalidInputError(f"the memory backend takes no options, got: {', '.join(sorted(options))}")
    return MemoryStore()


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(Backend("memory", _open_url, description="in-process dicts, gone when the store is (built in)"))
