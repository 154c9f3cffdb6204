"""The in-memory backend: a dict of held conversations behind a lock; also the reference model.

Everything is copied in and out (see :class:`~qv_session_manager.held.HeldStore`),
so callers can never change stored data by mutating a record's dicts afterwards.
Data lives as long as the store object.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import InvalidInputError
from ..held import Held, HeldStore
from ..hookspecs import hookimpl
from ..protocol import Capability, SaveItem
from ..records import ConversationRecord, MessageRecord, checked_save_items
from ..redact import mask_url
from ..registry import Backend
from ..rules import now_key


class MemoryStore(HeldStore):
    """A :class:`~qv_session_manager.protocol.ConversationStore` held in memory, with bulk and revisioned saves."""

    capabilities = HeldStore.capabilities | {
        Capability.BULK_SAVING,
        Capability.REVISIONED_SAVING,
        Capability.VECTOR_STORAGE,
    }

    def __init__(self) -> None:
        super().__init__()
        self._entries: dict[str, Held] = {}
        # One counter for the whole store: a new number at every write, never given twice.
        self._revisions: Iterator[int] = itertools.count(1)
        self._revision: dict[str, int] = {}

    def _read(self, conversation_id: str) -> Held | None:
        return self._entries.get(conversation_id)

    def _read_all(self) -> list[Held]:
        return list(self._entries.values())

    def _write(self, held: Held) -> Held:
        self._entries[held.conversation.id] = held
        self._revision[held.conversation.id] = next(self._revisions)
        return held

    def _remove(self, conversation_id: str) -> bool:
        self._revision.pop(conversation_id, None)
        return self._entries.pop(conversation_id, None) is not None

    def _release(self) -> None:
        self._entries.clear()
        self._revision.clear()

    def save_revisioned(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
        expected: Hashable | None = None,
    ) -> Hashable | None:
        """See :class:`~qv_session_manager.protocol.RevisionedSaving`: one counter for the whole store."""
        record, admitted = self._admitted(conversation, messages)
        with self._lock:
            self._check_open()
            previous = self._live(record.id, now_key())
            if expected is not None and (previous is None or self._revision.get(record.id) != expected):
                return None
            self._put(previous, record, admitted, replace)
            return self._revision[record.id]

    def save_many(self, items: Iterable[SaveItem]) -> int:
        """Save every pair at once (see BulkSaving): all are checked before any is applied."""
        admitted = [self._admitted(conversation, messages) for conversation, messages in checked_save_items(items)]
        with self._lock:
            self._check_open()
            now = now_key()
            for record, messages in admitted:
                self._put(self._live(record.id, now), record, messages, False)
        return len(admitted)


def _open_url(url: str, options: Mapping[str, Any]) -> MemoryStore:
    if "?" in url or "#" in url:
        raise InvalidInputError(f"{mask_url(url)!r}: the memory backend takes no options; write memory://")
    if options:
        raise InvalidInputError(f"the memory backend takes no options, got: {', '.join(sorted(options))}")
    return MemoryStore()


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(Backend("memory", _open_url, description="in-process dicts, gone when the store is (built in)"))
