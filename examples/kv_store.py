"""A complete backend in one file: each conversation is one JSON document under its id.

The engine is a key-value table in SQLite, and ``_get``, ``_put``, ``_remove`` and
``_scan`` are its only calls: replace them to port the store to Redis, dbm or any store
of bytes under keys. Nothing is indexed: ``list`` and ``search`` read every live
document and apply the shared reference rules of :mod:`qv_session_manager.rules`.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from qv_session_manager import Backend, codec, hookimpl, records, rules
from qv_session_manager.errors import InvalidInputError, StorageError
from qv_session_manager.protocol import Capability, ConversationFilter, SaveItem, SearchOrder
from qv_session_manager.query import Query
from qv_session_manager.records import ConversationRecord, MessageRecord, SearchHit, StoredConversation
from qv_session_manager.text import tokens

# -- records <-> JSON documents ---------------------------------------------------


def encode(conversation: ConversationRecord, messages: Iterable[MessageRecord]) -> bytes:
    """The document of a conversation: its fields, its messages in stored order, its expiry key."""
    document = {
        "conversation": codec.conversation_to_json(conversation),
        "messages": [codec.message_to_json(message) for message in messages],
        "expiry": records.expiry_key(conversation.metadata),  # InvalidInputError for a bad expires_at
    }
    try:
        return codec.dumps(document).encode("utf-8")  # dumps: InvalidInputError for non-JSON values
    except UnicodeEncodeError:
        raise InvalidInputError(f"conversation {conversation.id} holds a lone surrogate") from None


def decode(data: bytes) -> tuple[StoredConversation, str | None]:
    """A document back into records, and its expiry key."""
    document = json.loads(data)
    fields = document["conversation"]
    conversation = ConversationRecord(**{
        **fields,
        "created_at": datetime.fromisoformat(fields["created_at"]),
        "updated_at": datetime.fromisoformat(fields["updated_at"]),
    })
    messages = tuple(
        MessageRecord(**{
            **item,
            "created_at": datetime.fromisoformat(item["created_at"]),
            "images": None if item["images"] is None else codec.images_from_json(item["images"]),
            "tool_calls": None if item["tool_calls"] is None else codec.tool_calls_from_json(item["tool_calls"]),
        })
        for item in document["messages"]
    )
    return StoredConversation(conversation, messages), document["expiry"]


# -- the store --------------------------------------------------------------------


class KeyValueStore:
    """A ConversationStore (plus BulkSaving, WindowedLoading, Expiring, Droppable) over a key-value table."""

    capabilities = frozenset({
        Capability.PERSISTENT, Capability.RELEVANCE, Capability.EXPIRY,
        Capability.BULK_SAVING, Capability.WINDOWED_LOADING, Capability.PURGING, Capability.DROPPABLE,
    })

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.RLock()  # every method is called from several threads
        self._closed = False
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        except sqlite3.Error as exc:
            raise StorageError(f"opening {self.path} failed: {exc}") from exc

    # The engine: four calls, made only inside _engine().
    def _get(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _put(self, key: str, value: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def _remove(self, key: str) -> bool:
        return self._db.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount > 0

    def _scan(self) -> list[bytes]:
        return [bytes(value) for (value,) in self._db.execute("SELECT value FROM kv")]

    @contextmanager
    def _engine(self, doing: str, *, write: bool = False) -> Iterator[None]:
        """Lock, refuse a closed store, run one transaction (all or nothing), translate engine errors."""
        with self._lock:
            if self._closed:
                raise StorageError("the store is closed")
            try:
                if write:
                    self._db.execute("BEGIN IMMEDIATE")
                yield
                if write:
                    self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.rollback()
                if isinstance(exc, sqlite3.Error):
                    raise StorageError(f"{doing} failed: {exc}") from exc
                raise

    def _live(self, conversation_id: str) -> StoredConversation | None:
        """The conversation unless it is missing or expired now (inside _engine)."""
        data = self._get(conversation_id)
        if data is None:
            return None
        stored, expiry = decode(data)
        return None if rules.is_expired(expiry, rules.now_key()) else stored

    def _all_live(self) -> list[StoredConversation]:
        now = rules.now_key()
        return [stored for stored, expiry in map(decode, self._scan()) if not rules.is_expired(expiry, now)]

    def _write(self, conversation: ConversationRecord, kept: Iterable[MessageRecord],
               messages: Sequence[MessageRecord]) -> None:
        merged = {message.id: message for message in kept}
        for message in messages:
            merged[message.id] = message  # a stored id keeps its place; new ids go last
        self._put(conversation.id, encode(conversation, merged.values()))

    def _save(self, conversation: ConversationRecord, messages: Sequence[MessageRecord], replace: bool) -> None:
        previous = None if replace else self._live(conversation.id)  # an expired one starts afresh
        self._write(conversation, () if previous is None else previous.messages, messages)

    def save(self, conversation: ConversationRecord, messages: Sequence[MessageRecord], *,
             replace: bool = False) -> None:
        records.check_save(conversation, messages)  # types, distinct ids, dicts changed since validation
        with self._engine(f"saving {conversation.id}", write=True):
            self._save(conversation, messages, replace)

    def save_many(self, items: Iterable[SaveItem]) -> int:
        checked = list(records.checked_save_items(items))  # every pair checked before any write
        with self._engine(f"saving {len(checked)} conversations", write=True):
            for conversation, messages in checked:
                self._save(conversation, messages, False)
        return len(checked)

    def append(self, conversation_id: str, messages: Sequence[MessageRecord], *,
               updated_at: datetime | None = None) -> bool:
        updated_at = records.check_append(messages, updated_at)  # raises even when the id is missing
        with self._engine(f"appending to {conversation_id!r}", write=True):
            previous = self._live(conversation_id) if records.is_storable_id(conversation_id) else None
            if previous is None:
                return False
            record = previous.conversation
            if updated_at is not None:
                record = dataclasses.replace(record, updated_at=updated_at)
            self._write(record, previous.messages, messages)
            return True

    def load(self, conversation_id: str) -> StoredConversation | None:
        with self._engine(f"loading {conversation_id!r}"):
            return self._live(conversation_id) if records.is_storable_id(conversation_id) else None

    def load_window(self, conversation_id: str, *, last_messages: int | None = None,
                    last_turns: int | None = None, keep_system: bool = True) -> StoredConversation | None:
        rules.check_window(last_messages, last_turns, keep_system)  # raises whether or not the id exists
        stored = self.load(conversation_id)
        if stored is None:
            return None
        return rules.window_of(stored, last_messages=last_messages, last_turns=last_turns, keep_system=keep_system)

    def get(self, conversation_id: str) -> ConversationRecord | None:
        stored = self.load(conversation_id)
        return None if stored is None else stored.conversation

    def delete(self, conversation_id: str) -> bool:
        with self._engine(f"deleting {conversation_id!r}", write=True):
            if not records.is_storable_id(conversation_id):
                return False
            live = self._live(conversation_id) is not None
            return self._remove(conversation_id) and live  # an expired one goes too, reported missing

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        with self._engine(f"deleting a message of {conversation_id!r}", write=True):
            if not (records.is_storable_id(conversation_id) and records.is_storable_id(message_id)):
                return False
            stored = self._live(conversation_id)
            if stored is None or all(message.id != message_id for message in stored.messages):
                return False
            kept = [message for message in stored.messages if message.id != message_id]
            self._put(conversation_id, encode(stored.conversation, kept))
            return True

    def list(self, filter: ConversationFilter, *, limit: int | None = None, offset: int = 0,
             after: ConversationRecord | None = None) -> builtins.list[ConversationRecord]:
        with self._engine("listing"):
            conversations = [stored.conversation for stored in self._all_live()]
        return rules.reference_list(conversations, filter, limit=limit, offset=offset, after=after)

    def search(self, query: Query, filter: ConversationFilter, *, order: SearchOrder = "recent",
               limit: int | None = None, offset: int = 0, with_text: bool = False) -> builtins.list[SearchHit]:
        with self._engine("searching"):  # first: search('') on a closed store raises too
            items = [
                rules.Searchable(
                    stored.conversation,
                    tokens(stored.conversation.title or ""),
                    [(message.id, tokens(message.content), message.content) for message in stored.messages],
                )
                for stored in self._all_live()
            ]
        return rules.reference_search(items, query, filter, order=order, limit=limit, offset=offset,
                                      with_text=with_text)

    def purge_expired(self) -> int:
        with self._engine("purging expired conversations", write=True):
            now = rules.now_key()
            expired = [stored.conversation.id for stored, expiry in map(decode, self._scan())
                       if rules.is_expired(expiry, now)]
            return sum(self._remove(key) for key in expired)

    def drop(self) -> None:
        with self._engine(f"dropping {self.path}", write=True):
            self._db.execute("DROP TABLE kv")  # what opening created; the file may hold other tables
        self.close()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()


# -- registration -----------------------------------------------------------------


def open_url(url: str, options: Mapping[str, Any]) -> KeyValueStore:
    """``kvstore:///path/to/file.db``; no options."""
    path = url.split("://", 1)[1]
    if options or not path or "?" in path:
        raise InvalidInputError("write kvstore:///path/to/file.db, without options")
    return KeyValueStore(path)


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(Backend("kvstore", open_url, description="JSON documents in a key-value table (guide example)"))
