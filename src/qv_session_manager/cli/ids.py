"""Conversation ids as people type them: an exact id, or a unique prefix of one.

Resolution (:func:`resolve_id`) goes through the storage protocol only, so it works
on every backend:

1. An exact id wins and costs one ``get`` (two for a UUID spelled differently,
   as :class:`~qv_session_manager.SessionManager` accepts it).
2. Otherwise ``given`` is taken as a prefix: one full listing of the store
   (``list``, or ``list_summaries`` where the store has it) collects the ids that
   start with it. That scan costs time proportional to the number of stored
   conversations; it happens only when the id typed is not a stored one.

Short ids (:func:`short_ids`) are the shortest prefixes that no other stored id
shares, at least :data:`MINIMUM` characters; they need the same full listing.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

import click

from ..manager import SessionManager
from .common import fail

__all__ = ["MINIMUM", "all_ids", "matching_ids", "resolve_id", "short_ids"]

#: Short ids are never shorter than this (git shows 7; UUIDs collide more often below 8).
MINIMUM = 8
#: An ambiguous prefix names at most this many candidates in its error.
CANDIDATES_SHOWN = 10


def all_ids(manager: SessionManager) -> list[str]:
    """Every stored (not expired) conversation id, sorted: one full listing."""
    return sorted(row["id"] for row in manager.list_conversations())


def matching_ids(ids: Sequence[str], prefix: str) -> list[str]:
    """The ids of the sorted ``ids`` that start with ``prefix``, in order."""
    start = bisect.bisect_left(ids, prefix)
    found = []
    for key in ids[start:]:
        if not key.startswith(prefix):
            break
        found.append(key)
    return found


def resolve_id(manager: SessionManager, given: str, *, missing_ok: bool = False) -> str | None:
    """The stored id ``given`` names: itself when stored, else the one id it is a prefix of.

    A prefix is compared exactly; only when no id starts with it is it tried in
    lower case (UUIDs are stored in lower case, people may type them in upper case).

    Fails (``error: ...``, exit code 1) when no id starts with ``given`` (unless
    ``missing_ok``, which returns None then) and when several do; that error names
    the candidates (up to :data:`CANDIDATES_SHOWN`, then how many more). An empty
    ``given`` is a usage error (exit code 2). Nothing stored is changed.
    """
    if not given:
        raise click.BadParameter("an empty id names no conversation", param_hint="ID")
    record = manager._get(given)
    if record is not None:
        return record.id
    ids = all_ids(manager)
    candidates = matching_ids(ids, given) or (matching_ids(ids, given.lower()) if given != given.lower() else [])
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        if missing_ok:
            return None
        fail(f"no conversation {given!r} (no stored id starts with it)")
    shown = ", ".join(candidates[:CANDIDATES_SHOWN])
    more = len(candidates) - CANDIDATES_SHOWN
    fail(
        f"id prefix {given!r} is ambiguous: {len(candidates)} conversations start with it "
        f"({shown}{f' and {more} more' if more > 0 else ''}); type more of the id"
    )


def _common_length(left: str, right: str) -> int:
    length = 0
    for a, b in zip(left, right):
        if a != b:
            break
        length += 1
    return length


def short_ids(ids: Sequence[str], wanted: Iterable[str], *, minimum: int = MINIMUM) -> dict[str, str]:
    """For each id of ``wanted``: its shortest prefix that no other id of the sorted ``ids`` starts with.

    Never shorter than ``minimum`` nor longer than the id; an id that is itself a
    prefix of another one is given whole (an exact id wins in :func:`resolve_id`).
    Each result, typed back, resolves to its id.
    """
    shortened = {}
    for key in wanted:
        index = bisect.bisect_left(ids, key)
        needed = 0
        for neighbour in (index - 1, index + 1 if index < len(ids) and ids[index] == key else index):
            if 0 <= neighbour < len(ids) and ids[neighbour] != key:
                needed = max(needed, _common_length(key, ids[neighbour]) + 1)
        shortened[key] = key[: max(minimum, needed)]
    return shortened
