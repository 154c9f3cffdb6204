"""Retention over any store: deleting old conversations, keeping the newest, expiry checks.

Everything here goes through the storage protocol only (``list`` in keyset pages,
then ``delete``), so it works on every backend, and memory stays bounded by one
page of records whatever the store's size. :class:`~qv_session_manager.SessionManager`
exposes it (``delete_older_than``, ``keep_newest``, ``purge_expired``, ``set_expiry``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from .errors import InvalidInputError, UnsupportedOperationError
from .protocol import (
    Capability,
    ConversationFilter,
    ConversationStore,
    SaveItem,
    TimeField,
    offers,
)
from .records import EXPIRES_AT, ConversationRecord, MessageRecord, check_datetime, fixed_offset
from .rules import check_count, check_filter

#: Conversations listed per page while deleting.
PAGE_SIZE = 200


def _delete_listed(store: ConversationStore, filter: ConversationFilter, after: ConversationRecord | None) -> int:
    """Delete every conversation of ``filter``'s newest-first listing after ``after``; return how many.

    Keyset pages: deleting what was listed never makes a later page skip or repeat.
    """
    deleted = 0
    while True:
        page = store.list(filter, limit=PAGE_SIZE, after=after)
        deleted += sum(store.delete(record.id) for record in page)
        if len(page) < PAGE_SIZE:
            return deleted
        after = page[-1]


def delete_older_than(store: ConversationStore, cutoff: datetime, field: TimeField = "updated_at") -> int:
    """Delete the conversations whose ``field`` is strictly before ``cutoff``; return how many.

    The comparison is a listing's ``end`` bound (naive timestamps count as UTC).
    Raises InvalidInputError for a cutoff that is not a datetime or a bad field.
    """
    check_datetime(cutoff, "cutoff")
    filter = ConversationFilter(field=field, end=cutoff)
    check_filter(filter)
    return _delete_listed(store, filter, None)


def keep_newest(store: ConversationStore, count: int, field: TimeField = "updated_at") -> int:
    """Delete all but the ``count`` newest conversations (newest first by ``field``); return how many.

    ``count=0`` deletes every conversation. Conversations saved while it runs, newer
    than the ones kept, are kept too. Raises InvalidInputError unless ``count`` is an
    int from 0 (not a bool) and ``field`` a time field.
    """
    check_count(count, "count")
    filter = ConversationFilter(field=field)
    check_filter(filter)
    boundary = None
    if count:
        last_kept = store.list(filter, limit=1, offset=count - 1)
        if not last_kept:
            return 0
        boundary = last_kept[0]
    return _delete_listed(store, filter, boundary)


def purge_expired(store: ConversationStore) -> int:
    """The store's ``purge_expired`` (see :class:`~qv_session_manager.protocol.Expiring`); 0 when it
    does not declare ``Capability.PURGING``."""
    return store.purge_expired() if offers(store, Capability.PURGING) else 0


# -- expiry on the way in ---------------------------------------------------------------


def expiry_text(expires_at: object) -> str | None:
    """How an expiry is stored in metadata: ``expires_at.isoformat()``; None stays None.

    Raises InvalidInputError unless it is a datetime with a UTC form, or None.
    """
    if expires_at is None:
        return None
    check_datetime(expires_at, "expires_at")
    return fixed_offset(expires_at).isoformat()  # type: ignore[arg-type]  # check_datetime: a datetime


def with_expiry(record: ConversationRecord, expires_at: datetime | None) -> ConversationRecord:
    """``record`` whose metadata holds ``expires_at`` (None: no expiry), other keys untouched."""
    metadata = {key: value for key, value in record.metadata.items() if key != EXPIRES_AT}
    text = expiry_text(expires_at)
    if text is not None:
        metadata[EXPIRES_AT] = text
    return dataclasses.replace(record, metadata=metadata)


def check_expiry_supported(store: ConversationStore, record: ConversationRecord) -> None:
    """Raise InvalidInputError when ``record`` carries an expiry that ``store`` would not honour."""
    if EXPIRES_AT in record.metadata and Capability.EXPIRY not in store.capabilities:
        raise InvalidInputError(
            f"conversation {record.id} has metadata[{EXPIRES_AT!r}], but {type(store).__name__} does not "
            "declare Capability.EXPIRY: it would keep the conversation after it expired"
        )


class ExpiryGuard:
    """A view of a store without ``Capability.EXPIRY`` whose saves refuse conversations with an expiry.

    For code that saves through a store directly (imports): the refusal is an
    InvalidInputError raised before anything is written, as for any unstorable record.
    It declares the wrapped store's capabilities; every other call goes to the
    wrapped store. ``save_revisioned`` is never offered (see
    :func:`~qv_session_manager.protocol.offers`): it would bypass the check.
    """

    def __init__(self, store: ConversationStore) -> None:
        self.wrapped = store
        self.capabilities = store.capabilities

    def save(
        self, conversation: ConversationRecord, messages: Sequence[MessageRecord], *, replace: bool = False
    ) -> None:
        if isinstance(conversation, ConversationRecord):
            check_expiry_supported(self.wrapped, conversation)
        self.wrapped.save(conversation, messages, replace=replace)

    def save_many(self, items: Iterable[SaveItem]) -> int:
        """Every item is checked, then the wrapped store's ``save_many`` (all or nothing, as before);
        UnsupportedOperationError when it has none."""
        wrapped = self.wrapped
        if not offers(wrapped, Capability.BULK_SAVING):
            raise UnsupportedOperationError(f"{type(wrapped).__name__} has no save_many")
        checked = list(items)
        for item in checked:
            if isinstance(item, tuple) and item and isinstance(item[0], ConversationRecord):
                check_expiry_supported(wrapped, item[0])
        return wrapped.save_many(checked)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def guarded(store: ConversationStore) -> ConversationStore:
    """``store`` itself when it honours expiries, else an :class:`ExpiryGuard` over it."""
    if Capability.EXPIRY in store.capabilities:
        return store
    return ExpiryGuard(store)
