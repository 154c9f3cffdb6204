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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from datetime import datetime
from typing import Any, TypeVar

from .errors import (
    CorruptStorageError,
    InvalidInputError,
    SchemaVersionError,
    SessionStoreError,
    StorageError,
    UnsupportedOperationError,
)
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
from .rules import (
    Searchable,
    check_filter,
    check_page,
    check_window,
    common_bound,
    is_expired,
    now_key,
    passes,
    reference_list,
    reference_search,
    window_of,
)
from .text import tokens
from .vector_records import (
    EmbeddingTask,
    VectorSpace,
    best_per_conversation,
    check_limit,
    check_space,
    checked_embeddings,
    checked_vector,
    rank_conversations,
    similarities,
)

__all__ = ["Held", "HeldStore", "translating"]

_R = TypeVar("_R")


@dataclass
class Held:
    """One conversation as a :class:`HeldStore` holds it.

    ``messages`` map ids to records in stored order; ``expiry`` is the time key of
    ``metadata["expires_at"]`` (None: never expires). ``vectors`` maps a
    :attr:`VectorSpace.key <qv_session_manager.vector_records.VectorSpace.key>` to the
    packed vectors of messages by id; a backend stores them with the rest. The token
    fields are a cache the store fills on first use (see :meth:`HeldStore._documents`);
    a backend may keep its own data beside (``extra``: file bytes, say).
    """

    conversation: ConversationRecord
    messages: dict[str, MessageRecord]
    expiry: str | None = None
    extra: Any = None
    vectors: dict[str, dict[str, bytes]] = field(default_factory=dict)
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


def _check_space(store: HeldStore, space: object, *, optional: bool = False) -> None:
    """Refuse a vector call on a store that does not declare vectors, or with something else than a
    space (None too, when ``optional``)."""
    if Capability.VECTOR_STORAGE not in store.capabilities:
        raise UnsupportedOperationError(
            f"{type(store).__name__} does not declare Capability.VECTOR_STORAGE: its primitives keep no Held.vectors"
        )
    if not (optional and space is None):
        check_space(space)


def _vectors_kept(previous: Held, held: Held) -> dict[str, dict[str, bytes]]:
    """``previous``'s vectors of the messages ``held`` still has with the same content."""
    kept = {}
    for key, by_id in previous.vectors.items():
        same = {
            mid: blob
            for mid, blob in by_id.items()
            if mid in held.messages
            and mid in previous.messages
            and held.messages[mid].content == previous.messages[mid].content
        }
        if same:
            kept[key] = same
    return kept


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
    saves with :meth:`_put`). The message-vector side (``VECTOR_STORAGE``) is here too,
    over :attr:`Held.vectors`; a subclass declares it once its primitives store and
    read back that field.

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
            Capability.TOKEN_COUNTING,
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
        """``_write(held)``, with what ``previous`` had for unchanged texts kept: tokens, and vectors.

        A message's vectors go when it goes or its content changes, so what is written
        never holds a vector of text that is no longer stored.
        """
        if previous is not None:
            self._carry_tokens(previous, held)
            if not held.vectors:
                held.vectors = _vectors_kept(previous, held)
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

    def common_tokens(self, tokens: Sequence[str], *, share: float, minimum: int) -> builtins.set[str]:
        """See :class:`~qv_session_manager.protocol.TokenCounting`: counted exactly over every
        held message, expired ones too (the held texts are the only index)."""
        common_bound(tokens, share, minimum, 0)  # the arguments' checks, before any reading
        wanted = set(tokens)
        holding: Counter[str] = Counter()
        messages = 0
        with self._lock:
            self._check_open()
            for held in self._read_all():
                _, documents = self._documents(held)
                messages += len(documents)
                for document in documents.values():
                    holding.update(wanted.intersection(document))
        bound = common_bound(tokens, share, minimum, messages)
        return {token for token, count in holding.items() if count > bound}

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

    # -- message vectors (protocol.VectorStorage) ---------------------------------------

    def pending_embeddings(self, space: VectorSpace, *, limit: int) -> builtins.list[EmbeddingTask]:
        """See :class:`~qv_session_manager.protocol.VectorStorage`: in the order ``_read_all`` gives."""
        _check_space(self, space)
        check_limit(limit)
        found: builtins.list[EmbeddingTask] = []
        with self._lock:
            self._check_open()
            for held in self._live_entries():
                done = held.vectors.get(space.key, {})
                for mid, message in held.messages.items():
                    if message.content and mid not in done:
                        found.append(EmbeddingTask(held.conversation.id, mid, message.content))
                        if len(found) == limit:
                            return found
        return found

    def store_embeddings(self, space: VectorSpace, embedded: Sequence[tuple[EmbeddingTask, Sequence[float]]]) -> int:
        """See :class:`~qv_session_manager.protocol.VectorStorage`: one ``_write`` per conversation."""
        _check_space(self, space)
        by_conversation: dict[str, builtins.list[tuple[EmbeddingTask, bytes]]] = {}
        for task, blob in checked_embeddings(space, embedded):
            by_conversation.setdefault(task.conversation_id, []).append((task, blob))
        stored = 0
        with self._lock:
            self._check_open()
            now = now_key()
            for conversation_id, items in by_conversation.items():
                held = self._live(conversation_id, now) if is_storable_id(conversation_id) else None
                if held is None:
                    continue
                fits = [
                    (task.message_id, blob)
                    for task, blob in items
                    if task.message_id in held.messages and held.messages[task.message_id].content == task.text
                ]
                if fits:
                    vectors = {key: dict(by_id) for key, by_id in held.vectors.items()}
                    vectors.setdefault(space.key, {}).update(fits)
                    self._store(held, dataclass_replace(held, vectors=vectors))
                    stored += len(fits)
        return stored

    def vector_search(
        self,
        space: VectorSpace,
        query: Sequence[float],
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> builtins.list[SearchHit]:
        """See :class:`~qv_session_manager.protocol.VectorStorage`: exact, by the shared rule."""
        _check_space(self, space)
        checked_vector(query, space)
        check_page(limit, offset)
        check_filter(filter)
        with self._lock:
            self._check_open()
            found = [
                (held.conversation, mid, message.content, by_id[mid])
                for held in self._live_entries()
                if passes(held.conversation, filter) and (by_id := held.vectors.get(space.key))
                for mid, message in held.messages.items()
                if mid in by_id and message.content
            ]
        scores = similarities([item[3] for item in found], query, space.dimension)
        rows = [(record, mid, content) for record, mid, content, _ in found]
        records = {record.id: record for record, _, _ in rows}
        best = best_per_conversation((record.id, mid, score) for (record, mid, _), score in zip(rows, scores))
        ranked = rank_conversations(
            [(records[cid], mid, score) for cid, (mid, score) in best.items()], filter.field, limit=limit, offset=offset
        )
        texts = {(record.id, mid): message for record, mid, message in rows} if with_text else {}
        return [
            dataclass_replace(
                hit,
                conversation=_copy(hit.conversation),
                text=texts[hit.conversation.id, hit.message_id] if with_text and hit.message_id else None,
            )
            for hit in ranked
        ]

    def embedding_counts(self, space: VectorSpace) -> tuple[int, int]:
        """See :class:`~qv_session_manager.protocol.VectorStorage`."""
        _check_space(self, space)
        embedded = waiting = 0
        with self._lock:
            self._check_open()
            for held in self._live_entries():
                done = held.vectors.get(space.key, {})
                for mid, message in held.messages.items():
                    if message.content:
                        if mid in done:
                            embedded += 1
                        else:
                            waiting += 1
        return embedded, waiting

    def forget_embeddings(self, space: VectorSpace | None = None) -> int:
        """See :class:`~qv_session_manager.protocol.VectorStorage`: one ``_write`` per conversation that had some."""
        _check_space(self, space, optional=True)
        removed = 0
        with self._lock:
            self._check_open()
            for held in builtins.list(self._read_all()):
                kept = {key: by_id for key, by_id in held.vectors.items() if space is not None and key != space.key}
                gone = sum(len(by_id) for by_id in held.vectors.values()) - sum(len(by_id) for by_id in kept.values())
                if gone:
                    self._write(dataclass_replace(held, vectors=kept))
                    removed += gone
        return removed

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
