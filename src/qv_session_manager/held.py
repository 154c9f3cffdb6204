"""HeldStore: the whole storage protocol for backends that hold whole conversations and evaluate in Python.

A backend that can read, write and remove one conversation at a time (a dict, a
file per conversation, a key-value store) subclasses :class:`HeldStore` and
implements four primitives; the base does everything else the protocol asks:
argument checks, the closed check, storable ids, checking records again (their
dicts may have changed since they were built), private copies in and out, the
expiry rule, merge-on-save and ``replace``, appends, message deletes, windows,
listing, search with relevance, purging and index inspection, all by the shared
rules of :mod:`qv_session_manager.rules`. The memory backend and the JSON Lines
plugin are built on it.

The primitives are called with the store's lock held, only with storable ids
(:func:`~qv_session_manager.records.is_storable_id`), and only while the store is
open:

- ``_read(conversation_id)``: the :class:`Held` conversation, or None;
- ``_read_all()``: every held conversation, expired ones included;
- ``_write(held)``: store ``held`` atomically in place of what the id held, and
  return what is now stored (``held`` itself, or what reading it back gives);
- ``_remove(conversation_id)``: remove it; whether it was there.

``_release()`` (optional) frees resources on ``close()``. Errors of the engine
must leave the primitives as library errors (see :func:`translating`).
"""

from __future__ import annotations

import builtins
import copy
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from datetime import datetime
from typing import Any, TypeVar

from .errors import CorruptStorageError, InvalidInputError, SchemaVersionError, SessionStoreError, StorageError
from .protocol import Capability, ConversationFilter, SearchOrder
from .query import Query
from .records import (
    ConversationRecord,
    MessageRecord,
    SearchHit,
    StoredConversation,
    check_append,
    check_save,
    expiry_key,
    is_storable_id,
)
from .rules import Searchable, check_window, is_expired, now_key, reference_list, reference_search, window_of
from .text import tokens

__all__ = ["Held", "HeldStore", "translating"]

_R = TypeVar("_R")


@dataclass
class Held:
    """One conversation as a :class:`HeldStore` holds it.

    ``messages`` map ids to records in stored order; ``expiry`` is the time key of
    ``metadata["expires_at"]`` (None: never expires). The token fields are a cache
    the store fills on first use (see :meth:`HeldStore._documents`); a backend may
    keep its own data beside (``extra``: file bytes, say).
    """

    conversation: ConversationRecord
    messages: dict[str, MessageRecord]
    expiry: str | None = None
    extra: Any = None
    title_tokens: list[str] | None = field(default=None, repr=False)
    message_tokens: dict[str, list[str]] | None = field(default=None, repr=False)


@contextmanager
def translating(
    doing: str,
    catch: type[BaseException] | tuple[type[BaseException], ...],
    translate: Callable[[Any, str], StorageError],
) -> Iterator[None]:
    """Turn the engine's exceptions (``catch``) into ``translate(exc, doing)``; library errors pass untouched.

    For example ``with translating(f"reading {path}", OSError, to_storage_error): ...``.
    The library error is raised from the engine's, so tracebacks keep both.
    """
    try:
        yield
    except SessionStoreError:  # StorageError is an OSError too: pass ours through as they are
        raise
    except catch as exc:
        raise translate(exc, doing) from exc


def _copy(record: _R) -> _R:
    return copy.deepcopy(record)


def _listed(messages: Sequence[MessageRecord]) -> list[MessageRecord]:
    try:
        return list(messages)
    except TypeError:
        raise InvalidInputError(
            f"messages must be a sequence of MessageRecord, not {type(messages).__name__}"
        ) from None


class HeldStore:
    """A :class:`~qv_session_manager.protocol.ConversationStore` over four primitives (see the module docstring).

    It also has ``load_window``, ``purge_expired`` and ``indexed_tokens``, declared in
    ``capabilities``; a subclass adds ``PERSISTENT`` when its data survives ``close()``,
    and may add more sides of its own (the memory backend adds bulk and revisioned
    saves with :meth:`_put`).

    ``lock`` (default: a ``threading.RLock``) is held for every call; it must be
    re-entrant. Store objects that share data must share it, and a store declaring
    ``MULTI_PROCESS`` needs one that also excludes other processes (a thread lock
    combined with the engine's own lock).
    """

    capabilities: frozenset[Capability] = frozenset(
        {
            Capability.RELEVANCE,
            Capability.EXPIRY,
            Capability.WINDOWED_LOADING,
            Capability.PURGING,
            Capability.INDEX_INSPECTION,
        }
    )

    def __init__(self, lock: AbstractContextManager[Any] | None = None) -> None:
        self._lock = threading.RLock() if lock is None else lock
        self._closed = False

    # -- the primitives ------------------------------------------------------------

    def _read(self, conversation_id: str) -> Held | None:
        raise NotImplementedError

    def _read_all(self) -> Iterable[Held]:
        raise NotImplementedError

    def _write(self, held: Held) -> Held:
        raise NotImplementedError

    def _remove(self, conversation_id: str) -> bool:
        raise NotImplementedError

    def _release(self) -> None:
        """Free what the store holds on ``close()`` (called once, under the lock)."""

    # -- hooks ------------------------------------------------------------------------

    def _tokenize(self, text: str) -> list[str]:
        """The search tokens of a title: the shared tokenizer."""
        return tokens(text)

    def _tokenize_message(self, content: str) -> list[str]:
        """The search tokens of a message's content: the shared tokenizer."""
        return self._tokenize(content)

    def _documents(self, held: Held) -> tuple[list[str], dict[str, list[str]]]:
        """The tokens of ``held``'s title and of each message, computed once and kept on ``held``."""
        if held.title_tokens is None:
            held.title_tokens = self._tokenize(held.conversation.title or "")
        if held.message_tokens is None:
            held.message_tokens = {mid: self._tokenize_message(m.content) for mid, m in held.messages.items()}
        return held.title_tokens, held.message_tokens

    # -- helpers for subclasses --------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the store is closed")

    def _live(self, conversation_id: str, now: str) -> Held | None:
        """The conversation unless it is missing or expired at ``now`` (call under the lock)."""
        held = self._read(conversation_id)
        return None if held is None or is_expired(held.expiry, now) else held

    def _found(self, conversation_id: str) -> Held | None:
        """What a read by id sees now: the live conversation, None for a missing, expired or unstorable id."""
        return self._live(conversation_id, now_key()) if is_storable_id(conversation_id) else None

    def _live_entries(self) -> list[Held]:
        """Every conversation not expired now (call under the lock)."""
        now = now_key()
        return [held for held in self._read_all() if not is_expired(held.expiry, now)]

    @staticmethod
    def _admitted(
        conversation: ConversationRecord, messages: Sequence[MessageRecord]
    ) -> tuple[ConversationRecord, list[MessageRecord]]:
        """Private copies of a save's records, checked again; InvalidInputError for anything unstorable."""
        listed = _listed(messages)
        check_save(conversation, listed)
        return _copy(conversation), [_copy(message) for message in listed]

    def _put(
        self, previous: Held | None, conversation: ConversationRecord, messages: Sequence[MessageRecord], replace: bool
    ) -> Held:
        """Store a save of admitted records over ``previous`` (its live state, or None) and return what is stored.

        Stored messages keep their place and are updated by id; new ones follow in the
        order given; ``replace`` makes the messages exactly ``messages``. Tokens of
        unchanged texts carry over. It calls ``_write`` once and reads nothing itself.
        Call under the lock.
        """
        kept = {} if replace or previous is None else previous.messages
        merged = dict(kept)
        for message in messages:
            merged[message.id] = message
        return self._store(previous, Held(conversation, merged, expiry_key(conversation.metadata)))

    def _store(self, previous: Held | None, held: Held) -> Held:
        """``_write(held)``, with the tokens ``previous`` had for unchanged texts kept on what is stored."""
        if previous is not None:
            self._carry_tokens(previous, held)
        stored = self._write(held)
        if stored is not held:
            self._carry_tokens(held, stored)
        return stored

    def _carry_tokens(self, source: Held, target: Held) -> None:
        """Give ``target`` the tokens ``source`` has for the same texts (and tokenize only its new texts)."""
        if source.title_tokens is not None and source.conversation.title == target.conversation.title:
            target.title_tokens = source.title_tokens
        known = source.message_tokens
        if known is not None and target.message_tokens is None:
            target.message_tokens = {
                mid: known[mid]
                if mid in known and source.messages[mid].content == message.content
                else self._tokenize_message(message.content)
                for mid, message in target.messages.items()
            }

    # -- the protocol -----------------------------------------------------------------

    def save(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
    ) -> None:
        record, admitted = self._admitted(conversation, messages)
        with self._lock:
            self._check_open()
            self._put(self._live(record.id, now_key()), record, admitted, replace)  # an expired one starts afresh

    def append(
        self,
        conversation_id: str,
        messages: Sequence[MessageRecord],
        *,
        updated_at: datetime | None = None,
    ) -> bool:
        listed = _listed(messages)
        updated_at = check_append(listed, updated_at)
        admitted = [_copy(message) for message in listed]
        with self._lock:
            self._check_open()
            if not is_storable_id(conversation_id):
                return False
            previous = self._live(conversation_id, now_key())
            if previous is None:
                return False
            record = previous.conversation
            if updated_at is not None:
                record = dataclass_replace(record, updated_at=updated_at)
            self._put(previous, record, admitted, False)
            return True

    def load(self, conversation_id: str) -> StoredConversation | None:
        with self._lock:
            self._check_open()
            held = self._found(conversation_id)
            if held is None:
                return None
            return StoredConversation(_copy(held.conversation), tuple(_copy(m) for m in held.messages.values()))

    def load_window(
        self,
        conversation_id: str,
        *,
        last_messages: int | None = None,
        last_turns: int | None = None,
        keep_system: bool = True,
    ) -> StoredConversation | None:
        """See :class:`~qv_session_manager.protocol.WindowedLoading`: the shared rule over the held messages."""
        check_window(last_messages, last_turns, keep_system)
        with self._lock:
            self._check_open()
            held = self._found(conversation_id)
            if held is None:
                return None
            whole = StoredConversation(held.conversation, tuple(held.messages.values()))
            window = window_of(whole, last_messages=last_messages, last_turns=last_turns, keep_system=keep_system)
            return StoredConversation(_copy(window.conversation), tuple(_copy(m) for m in window.messages))

    def get(self, conversation_id: str) -> ConversationRecord | None:
        with self._lock:
            self._check_open()
            held = self._found(conversation_id)
            return None if held is None else _copy(held.conversation)

    def delete(self, conversation_id: str) -> bool:
        with self._lock:
            self._check_open()
            if not is_storable_id(conversation_id):
                return False
            try:
                held = self._read(conversation_id)
            except (CorruptStorageError, SchemaVersionError):
                held = None  # what cannot be read can still be deleted
            expired = held is not None and is_expired(held.expiry, now_key())
            return self._remove(conversation_id) and not expired  # an expired one goes too, reported missing

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        with self._lock:
            self._check_open()
            if not is_storable_id(conversation_id) or not is_storable_id(message_id):
                return False
            held = self._live(conversation_id, now_key())
            if held is None or message_id not in held.messages:
                return False
            kept = {mid: m for mid, m in held.messages.items() if mid != message_id}
            self._store(held, Held(held.conversation, kept, held.expiry))
            return True

    def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> builtins.list[ConversationRecord]:
        with self._lock:
            self._check_open()
            records = [held.conversation for held in self._live_entries()]
        return [_copy(r) for r in reference_list(records, filter, limit=limit, offset=offset, after=after)]

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
        with self._lock:
            self._check_open()
            items = []
            for held in self._live_entries():
                title, documents = self._documents(held)
                items.append(
                    Searchable(
                        held.conversation,
                        title,
                        [(mid, documents[mid], message.content) for mid, message in held.messages.items()],
                    )
                )
        hits = reference_search(items, query, filter, order=order, limit=limit, offset=offset, with_text=with_text)
        return [dataclass_replace(hit, conversation=_copy(hit.conversation)) for hit in hits]

    def indexed_tokens(self) -> builtins.set[str]:
        """See :class:`~qv_session_manager.protocol.IndexInspection`: the tokens of every held
        conversation, expired ones too (the held texts are the only index)."""
        with self._lock:
            self._check_open()
            held_tokens: builtins.set[str] = set()
            for held in self._read_all():
                title, documents = self._documents(held)
                held_tokens.update(title)
                for document in documents.values():
                    held_tokens.update(document)
            return held_tokens

    def purge_expired(self) -> int:
        """See :class:`~qv_session_manager.protocol.Expiring`: remove every conversation expired now."""
        with self._lock:
            self._check_open()
            now = now_key()
            doomed = [held.conversation.id for held in self._read_all() if is_expired(held.expiry, now)]
            return sum(self._remove(conversation_id) for conversation_id in doomed)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release()
