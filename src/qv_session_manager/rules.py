"""The reference rules of listing and paging, for backends that evaluate in Python.

A backend written in Python (the memory backend, plugins) can use these helpers to
get exactly the order, filters and paging the protocol prescribes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from .errors import InvalidInputError
from .protocol import ConversationFilter
from .query import Query, bm25
from .records import ConversationRecord, SearchHit, check_metadata_filter, metadata_matches
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


def reference_list(
    records: Iterable[ConversationRecord],
    filter: ConversationFilter,
    *,
    limit: int | None = None,
    offset: int = 0,
    after: ConversationRecord | None = None,
) -> list[ConversationRecord]:
    """The protocol's ``list`` over conversations held in Python (arguments checked)."""
    check_page(limit, offset)
    check_filter(filter)
    chosen = ordered((record for record in records if passes(record, filter)), filter.field)
    if after is not None:
        boundary = newest_first_key(after, filter.field)
        chosen = [record for record in chosen if newest_first_key(record, filter.field) < boundary]
    return page(chosen, limit, offset)


@dataclass(frozen=True)
class Searchable:
    """A conversation as the reference search sees it.

    ``messages`` are (message id, tokens of its content, content) in stored order;
    tokens come from :func:`qv_session_manager.text.tokens`.
    """

    conversation: ConversationRecord
    title_tokens: Sequence[str]
    messages: Sequence[tuple[str, Sequence[str], str]]


def _first_hit(item: Searchable, query: Query, with_text: bool) -> SearchHit | None:
    """The title when it matches, else the first matching message in stored order."""
    if query.matches(item.title_tokens):
        return SearchHit(item.conversation, None, item.conversation.title if with_text else None)
    for message_id, document, content in item.messages:
        if query.matches(document):
            return SearchHit(item.conversation, message_id, content if with_text else None)
    return None


def _scored(hits: list[SearchHit], items: Sequence[Searchable], query: Query) -> list[SearchHit]:
    """Score each hit by the BM25 of its best matching document.

    Titles and messages are two separate collections for the statistics, as they are
    two indexes in the SQLite backend.
    """
    collections = {
        "title": [item.title_tokens for item in items],
        "message": [document for item in items for _, document, _ in item.messages],
    }
    statistics: dict[str, dict[str, Any]] = {}
    for name, documents in collections.items():
        frequency = {term: sum(1 for d in documents if term.matches(d)) for term in query.terms()}
        average = sum(map(len, documents)) / len(documents) if documents else 0.0
        statistics[name] = dict(documents=len(documents), average_length=average, document_frequency=frequency)
    by_id = {item.conversation.id: item for item in items}
    scored = []
    for hit in hits:
        item = by_id[hit.conversation.id]
        candidates = [(item.title_tokens, "title")] + [(d, "message") for _, d, _ in item.messages]
        best = max(
            (bm25(query, document, **statistics[name]) for document, name in candidates if query.matches(document)),
            default=0.0,
        )
        scored.append(replace(hit, score=best))
    return scored


def reference_search(
    items: Sequence[Searchable],
    query: Query,
    filter: ConversationFilter,
    *,
    order: str = "recent",
    limit: int | None = None,
    offset: int = 0,
    with_text: bool = False,
) -> list[SearchHit]:
    """The protocol's ``search`` over conversations held in Python.

    Arguments are checked as every backend must check them. Returned hits share
    their ConversationRecord objects with ``items``: copy them if the caller may
    mutate what you keep.
    """
    check_page(limit, offset)
    check_filter(filter)
    check_order(order)
    if query.is_empty:
        return []
    hits = [
        hit for item in items if passes(item.conversation, filter)
        for hit in [_first_hit(item, query, with_text)] if hit is not None
    ]
    if order == "relevance":
        hits = _scored(hits, items, query)
    hits.sort(key=lambda hit: newest_first_key(hit.conversation, filter.field), reverse=True)
    if order == "relevance":
        hits.sort(key=lambda hit: hit.score or 0.0, reverse=True)  # stable: ties stay newest first
    return page(hits, limit, offset)
