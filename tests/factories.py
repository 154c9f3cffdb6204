"""Small builders of records and SDK objects for tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from qv_session_manager.records import ConversationRecord, MessageRecord

BASE = datetime(2025, 1, 20, 12, 0, 0)
_ids = itertools.count()


def conversation(id: str | None = None, *, title: str | None = "t", updated: datetime | None = None,
                 created: datetime | None = None, metadata: dict | None = None) -> ConversationRecord:
    updated = updated or BASE
    return ConversationRecord(
        id=f"c{next(_ids)}" if id is None else id,
        title=title,
        model_name="llama3",
        created_at=created or updated,
        updated_at=updated,
        metadata=metadata or {},
    )


def message(content: str = "hello", *, id: str | None = None, role: str = "user",
            at: datetime | None = None, **fields: object) -> MessageRecord:
    return MessageRecord(id=f"m{next(_ids)}" if id is None else id, role=role, content=content,
                         created_at=at or BASE, **fields)  # type: ignore[arg-type]


def minutes(n: int) -> datetime:
    return BASE + timedelta(minutes=n)
