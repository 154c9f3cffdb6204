"""Ordering and paging rules shared by backends that sort in Python."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from ..errors import InvalidInputError
from ..protocol import ConversationFilter
from ..records import ConversationRecord, metadata_matches
from ..timeutil import time_key

T = TypeVar("T")


def check_page(limit: int | None, offset: int) -> None:
    """Raise InvalidInputError unless limit is None or >= 0 and offset is >= 0."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidInputError(f"limit must be None or an int >= 0, not {limit!r}")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidInputError(f"offset must be an int >= 0, not {offset!r}")


def newest_first_key(record: ConversationRecord, field: str) -> tuple[str, str]:
    """The sort key of newest-first order (use with reverse=True)."""
    return time_key(getattr(record, field)), record.id


def passes(record: ConversationRecord, filter: ConversationFilter) -> bool:
    """Whether ``record`` passes the time range and metadata of ``filter``."""
    if filter.start is not None or filter.end is not None:
        key = time_key(getattr(record, filter.field))
        if filter.start is not None and key < time_key(filter.start):
            return False
        if filter.end is not None and key >= time_key(filter.end):
            return False
    return metadata_matches(record.metadata, filter.metadata)


def page(items: Sequence[T], limit: int | None, offset: int) -> list[T]:
    end = None if limit is None else offset + limit
    return list(items[offset:end])


def ordered(records: Iterable[ConversationRecord], field: str) -> list[ConversationRecord]:
    return sorted(records, key=lambda record: newest_first_key(record, field), reverse=True)
