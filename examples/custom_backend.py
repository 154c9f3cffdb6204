"""Register a backend in-process, without packaging it, and select it by URL.

The backend here wraps another store and keeps an audit trail of every write:
it shows the protocol (plain methods, no base class), the hook, and URL selection.
Run it with ``python examples/custom_backend.py``.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import Backend, SessionManager, hookimpl, open_store
from qv_session_manager.plugins import pm
from qv_session_manager.protocol import SIDE_METHODS, ConversationFilter, SearchOrder
from qv_session_manager.query import Query
from qv_session_manager.records import (
    ConversationRecord,
    MessageRecord,
    SearchHit,
    StoredConversation,
)


class AuditedStore:
    """Delegates to an inner store and records each write in ``audit``."""

    def __init__(self, inner_url: str) -> None:
        self.inner = open_store(inner_url)
        # The inner store's behaviours, none of its optional sides: this wrapper has no save_many.
        self.capabilities = self.inner.capabilities - SIDE_METHODS.keys()
        self.audit: list[str] = []

    def save(
        self, conversation: ConversationRecord, messages: Sequence[MessageRecord], *, replace: bool = False
    ) -> None:
        self.inner.save(conversation, messages, replace=replace)
        self.audit.append(f"save {conversation.id} (+{len(messages)} messages)")

    def append(
        self, conversation_id: str, messages: Sequence[MessageRecord], *, updated_at: datetime | None = None
    ) -> bool:
        appended = self.inner.append(conversation_id, messages, updated_at=updated_at)
        self.audit.append(f"append {conversation_id} (+{len(messages)} messages): {appended}")
        return appended

    def delete(self, conversation_id: str) -> bool:
        deleted = self.inner.delete(conversation_id)
        self.audit.append(f"delete {conversation_id}: {deleted}")
        return deleted

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        deleted = self.inner.delete_message(conversation_id, message_id)
        self.audit.append(f"delete message {message_id}: {deleted}")
        return deleted

    def load(self, conversation_id: str) -> StoredConversation | None:
        return self.inner.load(conversation_id)

    def get(self, conversation_id: str) -> ConversationRecord | None:
        return self.inner.get(conversation_id)

    def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> list[ConversationRecord]:
        return self.inner.list(filter, limit=limit, offset=offset, after=after)

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
        return self.inner.search(query, filter, order=order, limit=limit, offset=offset, with_text=with_text)

    def close(self) -> None:
        self.inner.close()


def open_audited(url: str, options: Mapping[str, Any]) -> AuditedStore:
    # audited://memory://  ->  wraps the store at memory://
    return AuditedStore(url.split("://", 1)[1] or "memory://")


class AuditPlugin:
    @hookimpl
    def register_backends(self, register):  # type: ignore[no-untyped-def]
        register(Backend("audited", open_audited, description="an audit trail around another store"))


def main() -> None:
    pm.register(AuditPlugin(), name="audit-example")
    with SessionManager(url="audited://memory://") as mgr:
        conv = Conversation(title="Audited chat")
        conv.add_user_message("Hello!")
        mgr.save_conversation(conv)
        print("found:", [c["title"] for c in mgr.search_conversations("hello")])
        mgr.delete_conversation(str(conv.id))
        for line in mgr.store.audit:  # type: ignore[attr-defined]
            print("audit:", line)


if __name__ == "__main__":
    main()
