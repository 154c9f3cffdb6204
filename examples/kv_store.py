"""A complete backend in one file: each conversation is one JSON document under its id.

The engine is a key-value table in SQLite, reached only through ``_get``, ``_set``,
``_delete`` and ``_scan``: replace those four to port the store to Redis, dbm or any
store of bytes under keys. :class:`~qv_session_manager.held.HeldStore` does the rest
(checks, expiry, merging, windows, listing and search by the shared rules); the store
adds bulk saves in one transaction and ``drop``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from qv_session_manager import Backend, codec, hookimpl, records, rules
from qv_session_manager.errors import CorruptStorageError, InvalidInputError, StorageError
from qv_session_manager.held import Held, HeldStore, translating
from qv_session_manager.protocol import Capability, SaveItem
from qv_session_manager.records import ConversationRecord, MessageRecord

# -- records <-> JSON documents ---------------------------------------------------


def encode(held: Held) -> bytes:
    """The document of a conversation: its fields and its messages in stored order."""
    document = {
        "conversation": codec.conversation_to_json(held.conversation),
        "messages": [codec.message_to_json(message) for message in held.messages.values()],
    }
    try:
        return codec.dumps(document).encode("utf-8")  # dumps: InvalidInputError for non-JSON values
    except UnicodeEncodeError:
        raise InvalidInputError(f"conversation {held.conversation.id} holds a lone surrogate") from None


def decode(data: bytes) -> Held:
    """A document back into a held conversation; CorruptStorageError when it is not one."""
    try:
        document = json.loads(data)
        fields = document["conversation"]
        conversation = ConversationRecord.from_storage(
            **{
                **fields,
                "created_at": datetime.fromisoformat(fields["created_at"]),
                "updated_at": datetime.fromisoformat(fields["updated_at"]),
            }
        )
        messages = {
            item["id"]: MessageRecord(
                **{
                    **item,
                    "created_at": datetime.fromisoformat(item["created_at"]),
                    "images": None if item["images"] is None else codec.images_from_json(item["images"]),
                    "tool_calls": None
                    if item["tool_calls"] is None
                    else codec.tool_calls_from_json(item["tool_calls"]),
                }
            )
            for item in document["messages"]
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptStorageError(f"a stored document does not hold a conversation: {exc!r}") from exc
    return Held(conversation, messages, records.stored_expiry_key(conversation.metadata))


def _storage_error(exc: sqlite3.Error, doing: str) -> StorageError:
    return StorageError(f"{doing} failed: {exc}")


# -- the store --------------------------------------------------------------------


class KeyValueStore(HeldStore):
    """A ConversationStore over a key-value table, with bulk saves and ``drop``."""

    capabilities = HeldStore.capabilities | {Capability.PERSISTENT, Capability.BULK_SAVING, Capability.DROPPABLE}

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()  # one lock per store object: every call runs under it
        self.path = os.fspath(path)
        with translating(f"opening {self.path}", sqlite3.Error, _storage_error):
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")

    # The engine: four calls.
    def _get(self, key: str) -> bytes | None:
        with translating(f"reading {key!r}", sqlite3.Error, _storage_error):
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _set(self, key: str, value: bytes) -> None:
        with translating(f"writing {key!r}", sqlite3.Error, _storage_error):
            self._db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def _delete(self, key: str) -> bool:
        with translating(f"deleting {key!r}", sqlite3.Error, _storage_error):
            return self._db.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount > 0

    def _scan(self) -> list[bytes]:
        with translating("reading every document", sqlite3.Error, _storage_error):
            return [bytes(value) for (value,) in self._db.execute("SELECT value FROM kv")]

    # HeldStore's primitives (called under the lock, with storable ids, on an open store).
    def _read(self, conversation_id: str) -> Held | None:
        data = self._get(conversation_id)
        return None if data is None else decode(data)

    def _read_all(self) -> list[Held]:
        return [decode(data) for data in self._scan()]

    def _write(self, held: Held) -> Held:
        self._set(held.conversation.id, encode(held))  # one statement: atomic
        return held

    def _remove(self, conversation_id: str) -> bool:
        return self._delete(conversation_id)

    def _release(self) -> None:
        self._db.close()

    # Optional sides beyond HeldStore's.
    @contextmanager
    def _transaction(self, doing: str) -> Iterator[None]:
        """One engine transaction: all of it or none of it."""
        with translating(doing, sqlite3.Error, _storage_error):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._db.rollback()
                raise

    def save_many(self, items: Iterable[SaveItem]) -> int:
        """Every pair checked first, then all saved in one transaction (see BulkSaving)."""
        admitted = [
            self._admitted(conversation, messages) for conversation, messages in records.checked_save_items(items)
        ]
        with self._lock:
            self._check_open()
            with self._transaction(f"saving {len(admitted)} conversations"):
                now = rules.now_key()
                for record, messages in admitted:
                    self._put(self._live(record.id, now), record, messages, False)
        return len(admitted)

    def drop(self) -> None:
        """See Droppable: the table opening created goes (the file may hold other tables); then close."""
        with self._lock:
            self._check_open()
            with self._transaction(f"dropping {self.path}"):
                self._db.execute("DROP TABLE kv")
            self.close()


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
