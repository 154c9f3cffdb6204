"""The reference rules of listing and paging, for backends that evaluate in Python.

A backend written in Python (the memory backend, plugins) can use these helpers to
get exactly the order, filters and paging the protocol prescribes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from .errors import InvalidInputError
from .protocol import ConversationFilter
from .records import ConversationRecord, check_metadata_filter, metadata_matches
from .timeutil import time_key

T = TypeVar("T")


_LARGEST = 2**63 - 1


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _LARGEST


def check_page(limit: int | None, offset: int) -> None:
    """Raise InvalidInputError unless limit is None or a count, and offset is a count."""
    if limit is not None and not _count(limit):
        raise InvalidInputError(f"limit must be None or an int from 0 to 2**63-1, not {limit!r}")
    if not _count(offset):
        raise InvalidInputError(f"offset must be an int from 0 to 2**63-1, not {offset!r}")


def check_filter(filter: ConversationFilter) -> None:
    """Raise InvalidInputError unless ``filter`` has a known field and a valid metadata filter."""
    if not isinstance(filter, ConversationFilter):
        raise InvalidInputError(f"expected a ConversationFilter, got {type(filter).__name__}")
    if filter.field not in ("updated_at", "created_at"):
        raise InvalidInputError(f"field must be 'updated_at' or 'created_at', not {filter.field!r}")
    check_metadata_filter(filter.metadata)


def check_order(order: str) -> None:
    """Raise InvalidInputError unless ``order`` is a search order."""
    if order not in ("recent", "relevance"):
        raise InvalidInputError(f"order must be 'recent' or 'relevance', not {order!r}")


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
