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

Everything but the files (upsert, ordering, filters, paging, expiry, windows,
search hits and relevance) is :class:`~qv_session_manager.held.HeldStore`'s, the
base the in-memory backend uses too.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import json
import os
import secrets
import threading
import weakref
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from qv_session_manager import (
    Capability,
    ConversationRecord,
    CorruptStorageError,
    InvalidInputError,
    MessageRecord,
    ReadOnlyStorageError,
    SchemaVersionError,
    StorageError,
    StorageFullError,
    ToolCallRecord,
    codec,
)
from qv_session_manager.held import Held, HeldStore, translating
from qv_session_manager.private_files import create_private_file, make_private_folders
from qv_session_manager.records import stored_expiry_key

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


def _os_errors(doing: str) -> AbstractContextManager[None]:
    return translating(doing, OSError, translate)


# -- encoding ------------------------------------------------------------------


def _decode_image(item: Any) -> str | bytes:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and set(item) == {"$bytes"} and isinstance(item["$bytes"], str):
        return base64.b64decode(item["$bytes"], validate=True)
    raise ValueError(f'an image must be a string or {{"$bytes": base64}}, not {item!r}')


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


def _message_line(message: MessageRecord, vectors: dict[str, dict[str, bytes]]) -> dict[str, Any]:
    """A message's JSON, with its vectors (space key -> base64 of the float32 values) when it has any."""
    data = codec.message_to_json(message)
    mine = {
        key: base64.b64encode(by_id[message.id]).decode("ascii")
        for key, by_id in vectors.items()
        if message.id in by_id
    }
    if mine:
        data["vectors"] = mine
    return data


def _decode_vectors(found: Any) -> dict[str, bytes]:
    """A message line's ``vectors``: space key -> packed float32 values of the key's dimension."""
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise ValueError("a message's vectors must be an object")
    decoded = {}
    for key, text in found.items():
        if not isinstance(text, str):
            raise ValueError(f"the vector of space {key!r} must be base64 text")
        blob = base64.b64decode(text, validate=True)
        dimension = key.rsplit("/", 1)[-1]
        if not dimension.isdigit() or len(blob) != 4 * int(dimension):
            raise ValueError(f"the vector of space {key!r} has {len(blob)} bytes")
        decoded[key] = blob
    return decoded


# -- the store -----------------------------------------------------------------


def _decode(path: str, name: str, data: bytes) -> Held:
    try:
        lines = [line for line in data.decode("utf-8").split("\n") if line.strip()]
        if not lines:
            raise ValueError("the file is empty")
        conversation = _decode_conversation(_object(lines[0], "line 1"))
        messages: dict[str, MessageRecord] = {}
        vectors: dict[str, dict[str, bytes]] = {}
        for number, line in enumerate(lines[1:], start=2):
            item = _object(line, f"line {number}")
            found = item.pop("vectors", None)
            message = _decode_message(item)
            if message.id in messages:
                raise ValueError(f"message id {message.id!r} appears twice")
            messages[message.id] = message
            for key, blob in _decode_vectors(found).items():
                vectors.setdefault(key, {})[message.id] = blob
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
    return Held(conversation, messages, stored_expiry_key(conversation.metadata), extra=data, vectors=vectors)


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


class JsonlStore(HeldStore):
    """A :class:`~qv_session_manager.protocol.ConversationStore` of JSON Lines files.

    ``directory`` is created when missing (with its missing parents, each 0700);
    conversation files are created 0600 whatever the umask, and a rewritten file
    keeps the mode it had. Stores opened on the same directory in
    one process share a lock; several processes writing at once are not supported
    (no ``MULTI_PROCESS`` capability). Everything but the files is
    :class:`~qv_session_manager.held.HeldStore`'s.
    """

    capabilities = HeldStore.capabilities | {Capability.PERSISTENT, Capability.VECTOR_STORAGE}

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
        super().__init__(_directory_lock(self.directory))
        self._cache: dict[str, Held] = {}  # by file name; a file's bytes decide whether its entry is current

    def __repr__(self) -> str:
        return f"JsonlStore({self.directory!r})"

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    # -- the primitives of HeldStore --------------------------------------------------

    def _read(self, conversation_id: str) -> Held | None:
        return self._read_file(file_name(conversation_id))

    def _read_all(self) -> list[Held]:
        with _os_errors(f"listing {self.directory}"), os.scandir(self.directory) as found:
            names = sorted(e.name for e in found if _is_conversation_file(e.name) and e.is_file())
        for stale in set(self._cache) - set(names):
            del self._cache[stale]
        held = (self._read_file(name) for name in names)
        return [entry for entry in held if entry is not None]

    def _write(self, held: Held) -> Held:
        conversation = held.conversation
        try:
            lines = [_line(encode_conversation(conversation))]
            lines.extend(_line(_message_line(message, held.vectors)) for message in held.messages.values())
            data = ("\n".join(lines) + "\n").encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:  # a record's dict was mutated after it was checked
            raise InvalidInputError(f"conversation {conversation.id} cannot be written as JSON: {exc}") from None
        name = file_name(conversation.id)
        self._replace_file(name, data)
        stored = _decode(self._path(name), name, data)  # what a later read gives back, exactly
        self._cache[name] = stored
        return stored

    def _remove(self, conversation_id: str) -> bool:
        name = file_name(conversation_id)
        path = self._path(name)
        with _os_errors(f"deleting {path}"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
        self._cache.pop(name, None)
        self._sync_directory()
        return True

    def _release(self) -> None:
        self._cache.clear()

    # -- files ---------------------------------------------------------------------

    def _read_file(self, name: str) -> Held | None:
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
        if cached is not None and cached.extra == data:
            return cached
        entry = _decode(path, name, data)
        self._cache[name] = entry
        return entry

    def _replace_file(self, name: str, data: bytes) -> None:
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
