"""Deliberately broken backends: the conformance suite must catch each of them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.records import ConversationRecord, MessageRecord, StoredConversation

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

    def save(self, conversation: ConversationRecord, messages: Sequence[MessageRecord], *, replace: bool = False) -> None:
        leftovers = self._orphans.pop(conversation.id, [])
        if leftovers and self.get(conversation.id) is None:
            super().save(conversation, leftovers)
        super().save(conversation, messages, replace=replace)


class NonAtomicSave(MemoryStore):
    """Writes messages one at a time, so a failure half-way leaves half a save."""

    def save(self, conversation: ConversationRecord, messages: Sequence[MessageRecord], *, replace: bool = False) -> None:
        super().save(conversation, [], replace=replace)
        for message in messages:
            super().save(conversation, [message])


class RepeatingPages(MemoryStore):
    """Keyset paging that starts the next page at the cursor row itself."""

    def list(self, filter: ConversationFilter, *, limit: int | None = None, offset: int = 0,
             after: ConversationRecord | None = None) -> list[ConversationRecord]:
        rows = super().list(filter)
        if after is not None:
            ids = [row.id for row in rows]
            rows = rows[ids.index(after.id):] if after.id in ids else rows
        end = None if limit is None else offset + limit
        return rows[offset:end]
