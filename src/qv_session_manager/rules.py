"""The reference rules of listing, paging and resume windows, for backends that evaluate in Python.

A backend written in Python (the memory backend, plugins) can use these helpers to
get exactly the order, filters and paging the protocol prescribes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, TypeVar, cast

from .errors import InvalidInputError
from .protocol import ConversationFilter
from .query import Query, bm25
from .records import ConversationRecord, SearchHit, StoredConversation, check_metadata_filter, metadata_matches
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


def check_positive_int(value: object, name: str) -> None:
    """Raise InvalidInputError unless ``value`` is an int of at least 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive int, not {value!r}")


def common_bound(tokens: object, share: object, minimum: object, messages: int) -> int:
    """The arguments of ``TokenCounting.common_tokens`` checked, and its bound: a token is
    common when more than this many of the ``messages`` stored messages hold it.

    Raises InvalidInputError unless ``tokens`` is a sequence of strs (not a str),
    ``share`` a number from 0 to 1, and ``minimum`` a count.
    """
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        raise InvalidInputError(f"tokens must be a sequence of strs, not {type(tokens).__name__}")
    if not all(isinstance(token, str) for token in tokens):
        raise InvalidInputError("tokens must all be strs")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise InvalidInputError(f"share must be a number from 0 to 1, not {share!r}")
    check_count(minimum, "minimum")
    return max(cast(int, minimum), int(share * messages))


def check_count(value: object, name: str) -> None:
    """Raise InvalidInputError unless ``value`` is an int from 0 to 2**63-1 (not a bool)."""
    if not _count(value):
        raise InvalidInputError(f"{name} must be an int from 0 to 2**63-1, not {value!r}")


# -- expiry (see Capability.EXPIRY in the protocol) ------------------------------------


def now_key() -> str:
    """The time key of the current instant: the "now" each call compares expiries with."""
    return time_key(datetime.now(timezone.utc))


def is_expired(expiry: str | None, now: str) -> bool:
    """Whether a conversation whose expiry has time key ``expiry`` (None: no expiry) is expired at ``now``.

    Expired means the expiry is at or before now; such a conversation is missing to every read.
    """
    return expiry is not None and expiry <= now


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
    """The sort key of newest-first order (use with reverse=True): (time key of ``field``, id).

    Keyset paging compares the same key: ``list(after=record)`` continues with the rows
    whose key is strictly smaller than ``record``'s, by the filter's field.
    """
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
    """The page of already ordered ``items``: skip ``offset``, then keep ``limit`` (None: all).

    Keyset paging (``after=``) comes first, then the offset; arguments are not checked
    here (see :func:`check_page`).
    """
    end = None if limit is None else offset + limit
    return list(items[offset:end])


def ordered(records: Iterable[ConversationRecord], field: str) -> list[ConversationRecord]:
    """``records`` newest first by ``field``: descending time key, equal times by descending id."""
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
        hit
        for item in items
        if passes(item.conversation, filter)
        for hit in [_first_hit(item, query, with_text)]
        if hit is not None
    ]
    if order == "relevance":
        hits = _scored(hits, items, query)
    hits.sort(key=lambda hit: newest_first_key(hit.conversation, filter.field), reverse=True)
    if order == "relevance":
        hits.sort(key=lambda hit: hit.score or 0.0, reverse=True)  # stable: ties stay newest first
    return page(hits, limit, offset)


# -- resume windows -------------------------------------------------------------
#
# The rule that picks the last messages of a conversation for resuming it. Every
# backend and SessionManager use it, so a window is the same everywhere.


def check_window(last_messages: object, last_turns: object, keep_system: object = True) -> None:
    """Raise InvalidInputError unless exactly one of the sizes is a positive int and keep_system a bool."""
    given = [
        (name, value)
        for name, value in (("last_messages", last_messages), ("last_turns", last_turns))
        if value is not None
    ]
    if len(given) != 1:
        raise InvalidInputError("give exactly one of last_messages and last_turns")
    name, value = given[0]
    if not _count(value) or value == 0:
        raise InvalidInputError(f"{name} must be an int from 1 to 2**63-1, not {value!r}")
    if not isinstance(keep_system, bool):
        raise InvalidInputError(f"keep_system must be True or False, not {keep_system!r}")


def window_start(
    roles: Sequence[str],
    *,
    last_messages: int | None = None,
    last_turns: int | None = None,
    complete: bool = True,
) -> int | None:
    """Where the window begins in ``roles``, the roles of a conversation's last messages in stored order.

    The wanted start is ``len(roles) - last_messages``, or the ``last_turns``-th last
    user message (the start of the conversation when it has fewer messages or user
    messages than asked). From there the start moves earlier while it is on a
    ``tool`` message: a window never begins with tool results cut off from the
    assistant message whose tool calls they answer, since the next model call would
    then fail. The result is the shortest such window; it starts with a tool message
    only when the whole conversation does.

    Only roles matter: an assistant message's tool results follow it, so a window that
    never starts on a tool message never separates them from it.

    ``complete`` says whether ``roles`` is the whole conversation. When it is not (a
    backend read only the tail), None means the tail is too short to decide: read
    earlier messages and ask again. Otherwise the answer is an index into ``roles``
    and does not change when earlier messages are added in front. Sizes are checked
    with :func:`check_window` first.
    """
    check_window(last_messages, last_turns)
    if last_turns is not None:
        users = [index for index, role in enumerate(roles) if role == "user"]
        if len(users) >= last_turns:
            return users[-last_turns]
        return 0 if complete else None
    assert last_messages is not None
    if len(roles) < last_messages:
        return 0 if complete else None
    start = len(roles) - last_messages
    while start > 0 and roles[start] == "tool":
        start -= 1
    if start == 0 and roles[0] == "tool" and not complete:
        return None  # the assistant message that made these calls is further back
    return start


def leading_system_count(roles: Iterable[str]) -> int:
    """How many messages at the start of a conversation are system messages (its instructions)."""
    count = 0
    for role in roles:
        if role != "system":
            break
        count += 1
    return count


def window_indices(
    roles: Sequence[str],
    *,
    last_messages: int | None = None,
    last_turns: int | None = None,
    keep_system: bool = True,
) -> list[int]:
    """The positions (into a whole conversation's ``roles``) of its window, ascending.

    The window is the suffix chosen by :func:`window_start`; with ``keep_system`` the
    conversation's leading system messages come in front of it even when they are
    older (they are not counted in ``last_messages``). Raises InvalidInputError for
    bad sizes.
    """
    check_window(last_messages, last_turns, keep_system)
    start = window_start(roles, last_messages=last_messages, last_turns=last_turns)
    assert start is not None  # a complete conversation always decides
    head = min(leading_system_count(roles), start) if keep_system else 0
    return [*range(head), *range(start, len(roles))]


def window_of(
    stored: StoredConversation,
    *,
    last_messages: int | None = None,
    last_turns: int | None = None,
    keep_system: bool = True,
) -> StoredConversation:
    """``stored`` with only the messages of its window (see :func:`window_indices`), in stored order.

    For backends that hold whole conversations in Python, and for SessionManager over
    stores without ``load_window``.
    """
    messages = stored.messages
    chosen = window_indices(
        [m.role for m in messages], last_messages=last_messages, last_turns=last_turns, keep_system=keep_system
    )
    return StoredConversation(stored.conversation, tuple(messages[index] for index in chosen))
