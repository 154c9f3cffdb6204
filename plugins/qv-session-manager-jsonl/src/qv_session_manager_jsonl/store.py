"""JsonlStore: one JSON Lines file per conversation, in one directory.

A conversation file holds one JSON object per line: first the conversation
(``id``, ``title``, ``model_name``, ``created_at``, ``updated_at``, ``metadata``,
plus ``format``), then each message in stored order (``id``, ``role``,
``content``, ``created_at``, ``metadata``, ``images``, ``tool_calls``,
``tool_call_id``). Timestamps are ISO 8601 strings exactly as given; byte images
are ``{"$bytes": "<base64>"}`` as in :mod:`qv_session_manager.codec`. Text stays
readable (no ``\\uXXXX`` escapes for non-ASCII), so the files diff well in git.

Every write goes to a temporary file in the same directory, is flushed and
fsynced, then renamed over the conversation's file (and the directory is
fsynced), so a crash leaves either the old file or the new one, never half a
file. Temporary files start with ``.`` and end with ``.tmp``; reads ignore them
and every other name that is not a conversation file.

The semantics (upsert, ordering, filters, paging, search hits and relevance) are
those of the reference in-memory backend; ordering, filters and paging use
:mod:`qv_session_manager.rules`, matching and scoring the shared
:class:`~qv_session_manager.query.Query`.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import copy
import errno
import hashlib
import json
import os
import secrets
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from datetime import datetime
from typing import Any, TypeVar

from qv_session_manager import (
    Capability,
    ConversationFilter,
    ConversationRecord,
    CorruptStorageError,
    InvalidInputError,
    MessageRecord,
    ReadOnlyStorageError,
    SchemaVersionError,
    SearchHit,
    SessionStoreError,
    StorageError,
    StorageFullError,
    StoredConversation,
    ToolCallRecord,
    codec,
)
from qv_session_manager.private_files import create_private_file, make_private_folders
from qv_session_manager.protocol import SearchOrder
from qv_session_manager.query import Query
from qv_session_manager.records import check_append, check_save, expiry_key, is_storable_id, stored_expiry_key
from qv_session_manager.rules import (
    Searchable,
    check_window,
    is_expired,
    now_key,
    reference_list,
    reference_search,
    window_of,
)
from qv_session_manager.text import tokens

__all__ = ["FORMAT_VERSION", "JsonlStore", "file_name"]

#: Written into every conversation line; files of a newer format are refused.
FORMAT_VERSION = 1
SUFFIX = ".jsonl"
#: Longer encoded ids get a hashed name (file systems allow 255 bytes per name).
MAX_ENCODED_LENGTH = 200
TEMP_SUFFIX = ".tmp"

_UNRESERVED = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.~")
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)


def _escape_char(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))


def file_name(conversation_id: str) -> str:
    """The file name of a conversation: its id percent-encoded, plus ``.jsonl``.

    Only lower-case ASCII letters, digits and ``-_.~`` stay as they are; every
    other character (``/``, ``\\``, upper-case letters, non-ASCII) becomes
    ``%XX`` escapes of its UTF-8 bytes. So a name never leaves the directory, is
    pure ASCII (no Unicode normalization surprises), never starts with ``.``, and
    two ids differing only in case stay apart on case-insensitive file systems.
    Windows device names (``con``, ``nul``...) get their first letter escaped.
    An id whose encoding exceeds :data:`MAX_ENCODED_LENGTH` characters is named
    ``+sha256-<hex>.jsonl`` instead (``+`` never appears in an encoded id).
    """
    encoded = "".join(char if char in _UNRESERVED else _escape_char(char) for char in conversation_id)
    if encoded.startswith((".", "-")) or encoded.split(".", 1)[0] in _WINDOWS_DEVICES:
        encoded = _escape_char(encoded[0]) + encoded[1:]
    if len(encoded) > MAX_ENCODED_LENGTH:
        encoded = "+sha256-" + hashlib.sha256(conversation_id.encode("utf-8")).hexdigest()
    return encoded + SUFFIX


def _is_conversation_file(name: str) -> bool:
    return name.endswith(SUFFIX) and not name.startswith(".")


# -- errors --------------------------------------------------------------------

_READ_ONLY = {errno.EACCES, errno.EROFS, errno.EPERM}
_FULL = {errno.ENOSPC} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())


def translate(exc: OSError, doing: str) -> StorageError:
    """The library error for an OSError raised while ``doing`` something."""
    kind: type[StorageError] = StorageError
    if exc.errno in _READ_ONLY:
        kind = ReadOnlyStorageError
    elif exc.errno in _FULL:
        kind = StorageFullError
    return kind(f"{doing} failed: {exc}")


@contextmanager
def _os_errors(doing: str) -> Iterator[None]:
    try:
        yield
    except SessionStoreError:  # StorageError is an OSError too: pass ours through untouched
        raise
    except OSError as exc:
        raise translate(exc, doing) from exc


# -- encoding ------------------------------------------------------------------


def _decode_image(item: Any) -> str | bytes:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and set(item) == {"$bytes"} and isinstance(item["$bytes"], str):
        return base64.b64decode(item["$bytes"], validate=True)
    raise ValueError(f"an image must be a string or {{\"$bytes\": base64}}, not {item!r}")


def encode_conversation(record: ConversationRecord) -> dict[str, Any]:
    return {**codec.conversation_to_json(record), "format": FORMAT_VERSION}


def _line(value: dict[str, Any]) -> str:
    # json.dumps escapes "\n" and "\r", so one object is always exactly one line.
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _timestamp(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an ISO 8601 string, not {value!r}")
    if value.endswith(("Z", "z")):  # hand-written UTC; Python 3.10's fromisoformat does not take "Z"
        value = value[:-1] + "+00:00"
    return datetime.fromisoformat(value)


def _object(text: str, what: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    return value


def _decode_conversation(data: dict[str, Any]) -> ConversationRecord:
    version = data.get("format", FORMAT_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise SchemaVersionError(
            f"format {version} was written by a newer qv-session-manager-jsonl "
            f"(this one reads format {FORMAT_VERSION}); upgrade the plugin"
        )
    if type(version) is not int or version != FORMAT_VERSION:
        raise ValueError(f"unknown format {version!r}")
    return ConversationRecord.from_storage(
        id=data["id"],
        created_at=_timestamp(data["created_at"], "created_at"),
        updated_at=_timestamp(data["updated_at"], "updated_at"),
        title=data.get("title"),
        model_name=data.get("model_name"),
        metadata=data.get("metadata", {}),
    )


def _decode_message(data: dict[str, Any]) -> MessageRecord:
    images = data.get("images")
    calls = data.get("tool_calls")
    return MessageRecord(
        id=data["id"],
        role=data["role"],
        content=data["content"],
        created_at=_timestamp(data["created_at"], "created_at"),
        metadata=data.get("metadata", {}),
        images=None if images is None else tuple(_decode_image(image) for image in images),
        tool_calls=None
        if calls is None
        else tuple(ToolCallRecord(call["name"], call.get("arguments", {}), call.get("id")) for call in calls),
        tool_call_id=data.get("tool_call_id"),
    )


# -- the store -----------------------------------------------------------------


@dataclass
class _Entry:
    """One parsed conversation file; ``data`` is the file's bytes (the cache key)."""

    data: bytes
    conversation: ConversationRecord
    messages: dict[str, MessageRecord]  # insertion order = stored order
    expiry: str | None = None  # time key of metadata["expires_at"]
    _title_tokens: list[str] | None = None
    _message_tokens: dict[str, list[str]] | None = field(default=None)

    @property
    def title_tokens(self) -> list[str]:
        if self._title_tokens is None:
            self._title_tokens = tokens(self.conversation.title or "")
        return self._title_tokens

    @property
    def message_tokens(self) -> dict[str, list[str]]:
        if self._message_tokens is None:
            self._message_tokens = {mid: tokens(m.content) for mid, m in self.messages.items()}
        return self._message_tokens

    def reuse_tokens(self, previous: _Entry | None) -> None:
        """Take over the tokens of unchanged texts from the entry this one replaces."""
        if previous is None:
            return
        if previous._title_tokens is not None and previous.conversation.title == self.conversation.title:
            self._title_tokens = previous._title_tokens
        if previous._message_tokens is not None:
            known = previous._message_tokens
            self._message_tokens = {
                mid: known[mid]
                if mid in known and previous.messages[mid].content == message.content
                else tokens(message.content)
                for mid, message in self.messages.items()
            }


def _decode(path: str, name: str, data: bytes) -> _Entry:
    try:
        lines = [line for line in data.decode("utf-8").split("\n") if line.strip()]
        if not lines:
            raise ValueError("the file is empty")
        conversation = _decode_conversation(_object(lines[0], "line 1"))
        messages: dict[str, MessageRecord] = {}
        for number, line in enumerate(lines[1:], start=2):
            message = _decode_message(_object(line, f"line {number}"))
            if message.id in messages:
                raise ValueError(f"message id {message.id!r} appears twice")
            messages[message.id] = message
    except SchemaVersionError as exc:
        raise SchemaVersionError(f"{path}: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error) as exc:
        # json.JSONDecodeError, UnicodeDecodeError and InvalidInputError are ValueErrors.
        raise CorruptStorageError(f"{path} is not a valid conversation file: {exc!r}") from exc
    if file_name(conversation.id) != name:
        raise CorruptStorageError(
            f"{path} holds conversation {conversation.id!r}, whose file would be "
            f"{file_name(conversation.id)!r}; was the file renamed?"
        )
    return _Entry(data, conversation, messages, stored_expiry_key(conversation.metadata))



_locks: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_locks_guard = threading.Lock()


def _directory_lock(directory: str) -> Any:
    """One lock per directory and process, shared by every open store on it."""
    key = os.path.normcase(os.path.realpath(directory))
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = threading.RLock()
        return lock


_R = TypeVar("_R")


def _copy(record: _R) -> _R:
    return copy.deepcopy(record)


class JsonlStore:
    """A :class:`~qv_session_manager.protocol.ConversationStore` of JSON Lines files.

    ``directory`` is created when missing (with its missing parents, each 0700);
    conversation files are created 0600 whatever the umask, and a rewritten file
    keeps the mode it had. Stores opened on the same directory in
    one process share a lock; several processes writing at once are not supported
    (no ``MULTI_PROCESS`` capability).
    """

    capabilities = frozenset({
        Capability.PERSISTENT, Capability.RELEVANCE, Capability.EXPIRY,
        Capability.WINDOWED_LOADING, Capability.PURGING, Capability.INDEX_INSPECTION,
    })

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        if not isinstance(directory, (str, os.PathLike)):
            raise InvalidInputError(f"directory must be a str or path, not {type(directory).__name__}")
        path = os.fspath(directory)
        if not isinstance(path, str) or not path or "\x00" in path:
            raise InvalidInputError(f"directory must be a non-empty path without NUL, not {path!r}")
        self.directory = os.path.abspath(path)
        with _os_errors(f"creating the directory {self.directory}"):
            make_private_folders(self.directory)
            if not os.path.isdir(self.directory):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", self.directory)
        self._lock = _directory_lock(self.directory)
        self._cache: dict[str, _Entry] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"JsonlStore({self.directory!r})"

    # -- files -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the store is closed")

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _read(self, name: str) -> _Entry | None:
        """The parsed file ``name``, or None when it does not exist (call under the lock)."""
        path = self._path(name)
        try:
            with open(path, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            self._cache.pop(name, None)
            return None
        except OSError as exc:
            raise translate(exc, f"reading {path}") from exc
        cached = self._cache.get(name)
        if cached is not None and cached.data == data:
            return cached
        entry = _decode(path, name, data)
        self._cache[name] = entry
        return entry

    def _live(self, name: str, now: str) -> _Entry | None:
        """The parsed file ``name`` unless it is missing or expired at ``now`` (call under the lock)."""
        entry = self._read(name)
        return None if entry is None or is_expired(entry.expiry, now) else entry

    def _all_live(self) -> list[_Entry]:
        """Every conversation in the directory not expired now (call under the lock)."""
        now = now_key()
        return [entry for entry in self._all() if not is_expired(entry.expiry, now)]

    def _all(self) -> list[_Entry]:
        """Every conversation in the directory (call under the lock)."""
        with _os_errors(f"listing {self.directory}"), os.scandir(self.directory) as found:
            names = sorted(e.name for e in found if _is_conversation_file(e.name) and e.is_file())
        for stale in set(self._cache) - set(names):
            del self._cache[stale]
        entries = []
        for name in names:
            entry = self._read(name)
            if entry is not None:
                entries.append(entry)
        return entries

    def _write(self, name: str, data: bytes) -> None:
        """Replace file ``name`` with ``data`` atomically (call under the lock)."""
        target = self._path(name)
        with _os_errors(f"writing {target}"):
            while True:
                temp = self._path(f".{secrets.token_hex(8)}{SUFFIX}{TEMP_SUFFIX}")
                try:
                    descriptor = create_private_file(temp, like=target)  # 0600, or the replaced file's mode
                    break
                except FileExistsError:
                    continue
            try:
                with os.fdopen(descriptor, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temp, target)
            except BaseException:
                try:
                    os.unlink(temp)
                except OSError:
                    pass
                raise
        self._sync_directory()

    def _remove(self, name: str) -> bool:
        path = self._path(name)
        with _os_errors(f"deleting {path}"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
        self._cache.pop(name, None)
        self._sync_directory()
        return True

    def _sync_directory(self) -> None:
        """Make a rename or unlink durable. Best effort: the change is already
        visible, so a failure here must not report the write as failed."""
        if os.name == "nt":  # directories cannot be opened (nor need fsync) on Windows
            return
        try:
            descriptor = os.open(self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return
        try:
            os.fsync(descriptor)
        except OSError:
            pass
        finally:
            os.close(descriptor)

    def _store(self, previous: _Entry | None, conversation: ConversationRecord,
               messages: Sequence[MessageRecord]) -> None:
        expiry_key(conversation.metadata)  # InvalidInputError, before writing, for a mutated record
        try:
            lines = [_line(encode_conversation(conversation))]
            lines.extend(_line(codec.message_to_json(message)) for message in messages)
            data = ("\n".join(lines) + "\n").encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:  # a record's dict was mutated after validation
            raise InvalidInputError(f"conversation {conversation.id} cannot be written as JSON: {exc}") from None
        name = file_name(conversation.id)
        self._write(name, data)
        entry = _decode(self._path(name), name, data)  # what a later read gives back, exactly
        entry.reuse_tokens(previous)
        self._cache[name] = entry

    # -- the protocol ------------------------------------------------------------

    def save(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
    ) -> None:
        try:
            messages = list(messages)
        except TypeError:
            raise InvalidInputError(f"messages must be a sequence of MessageRecord, not {type(messages).__name__}") from None
        check_save(conversation, messages)
        name = file_name(conversation.id)
        with self._lock:
            self._check_open()
            previous = self._live(name, now_key())  # an expired conversation starts afresh
            merged: dict[str, MessageRecord] = {} if replace or previous is None else dict(previous.messages)
            for message in messages:
                merged[message.id] = message  # a stored id keeps its position
            self._store(previous, conversation, list(merged.values()))

    def append(
        self,
        conversation_id: str,
        messages: Sequence[MessageRecord],
        *,
        updated_at: datetime | None = None,
    ) -> bool:
        try:
            messages = list(messages)
        except TypeError:
            raise InvalidInputError(f"messages must be a sequence of MessageRecord, not {type(messages).__name__}") from None
        updated_at = check_append(messages, updated_at)
        with self._lock:
            self._check_open()
            if not is_storable_id(conversation_id):
                return False
            previous = self._live(file_name(conversation_id), now_key())
            if previous is None:
                return False
            record = previous.conversation
            if updated_at is not None:
                record = dataclass_replace(record, updated_at=updated_at)
            merged = dict(previous.messages)
            for message in messages:
                merged[message.id] = message
            self._store(previous, record, list(merged.values()))
            return True

    def load(self, conversation_id: str) -> StoredConversation | None:
        with self._lock:
            self._check_open()
            if not is_storable_id(conversation_id):
                return None
            entry = self._live(file_name(conversation_id), now_key())
            if entry is None:
                return None
            return StoredConversation(
                _copy(entry.conversation), tuple(_copy(m) for m in entry.messages.values())
            )

    def load_window(
        self,
        conversation_id: str,
        *,
        last_messages: int | None = None,
        last_turns: int | None = None,
        keep_system: bool = True,
    ) -> StoredConversation | None:
        """See ``WindowedLoading``: the file is read whole (one file per conversation), then cut by the shared rule."""
        check_window(last_messages, last_turns, keep_system)
        stored = self.load(conversation_id)
        if stored is None:
            return None
        return window_of(stored, last_messages=last_messages, last_turns=last_turns, keep_system=keep_system)

    def get(self, conversation_id: str) -> ConversationRecord | None:
        with self._lock:
            self._check_open()
            if not is_storable_id(conversation_id):
                return None
            entry = self._live(file_name(conversation_id), now_key())
            return None if entry is None else _copy(entry.conversation)

    def delete(self, conversation_id: str) -> bool:
        with self._lock:
            self._check_open()
            if not is_storable_id(conversation_id):
                return False
            name = file_name(conversation_id)
            try:
                entry = self._read(name)
                expired = entry is not None and is_expired(entry.expiry, now_key())
            except (CorruptStorageError, SchemaVersionError):
                expired = False  # a file that cannot be read can still be deleted
            return self._remove(name) and not expired  # an expired file goes too, reported missing

    def purge_expired(self) -> int:
        """See ``qv_session_manager.protocol.Expiring``: delete the file of every conversation expired now."""
        with self._lock:
            self._check_open()
            now = now_key()
            return sum(
                self._remove(file_name(entry.conversation.id)) for entry in self._all() if is_expired(entry.expiry, now)
            )

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        with self._lock:
            self._check_open()
            if not is_storable_id(conversation_id) or not is_storable_id(message_id):
                return False
            entry = self._live(file_name(conversation_id), now_key())
            if entry is None or message_id not in entry.messages:
                return False
            kept = [m for mid, m in entry.messages.items() if mid != message_id]
            self._store(entry, entry.conversation, kept)
            return True

    def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> list[ConversationRecord]:
        with self._lock:
            self._check_open()
            records = [entry.conversation for entry in self._all_live()]
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
            items = [
                Searchable(
                    entry.conversation,
                    entry.title_tokens,
                    [(mid, document, entry.messages[mid].content) for mid, document in entry.message_tokens.items()],
                )
                for entry in self._all_live()
            ]
        hits = reference_search(items, query, filter, order=order, limit=limit, offset=offset, with_text=with_text)
        return [dataclass_replace(hit, conversation=_copy(hit.conversation)) for hit in hits]

    def indexed_tokens(self) -> builtins.set[str]:
        """See :class:`~qv_session_manager.protocol.IndexInspection`: the tokens of every file, expired ones too.

        This store has no index apart from its files: tokens come from what they hold now.
        """
        with self._lock:
            self._check_open()
            held: builtins.set[str] = set()
            for entry in self._all():
                held.update(entry.title_tokens)
                for document in entry.message_tokens.values():
                    held.update(document)
            return held

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cache.clear()
