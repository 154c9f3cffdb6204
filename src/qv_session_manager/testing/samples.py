"""Records with sensible defaults, for the conformance clauses and for tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from ..records import ConversationRecord, MessageRecord

BASE = datetime(2025, 1, 20, 12, 0, 0)
_serial = itertools.count()


def conversation(
    id: str | None = None,
    *,
    title: str | None = "t",
    updated: datetime | None = None,
    created: datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> ConversationRecord:
    """A conversation record with sensible defaults."""
    updated = updated or BASE
    return ConversationRecord(
        id=f"auto-c{next(_serial)}" if id is None else id,
        title=title,
        model_name="llama3",
        created_at=created or updated,
        updated_at=updated,
        metadata=metadata or {},
    )


def message(
    content: str = "hello", *, id: str | None = None, role: str = "user", at: datetime | None = None, **fields: Any
) -> MessageRecord:
    """A message record with sensible defaults."""
    return MessageRecord(
        id=f"m{next(_serial)}" if id is None else id, role=role, content=content, created_at=at or BASE, **fields
    )


def minutes(n: int) -> datetime:
    return BASE + timedelta(minutes=n)
