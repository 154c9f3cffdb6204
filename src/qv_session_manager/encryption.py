"""Field-level encryption at rest: a store wrapper that encrypts text before any backend sees it.

:class:`EncryptedStore` wraps any :class:`~qv_session_manager.protocol.ConversationStore`
and encrypts, with AES-256-GCM (``cryptography``'s ``AESGCM``; install the
``[encryption]`` extra):

- conversation titles and metadata;
- message content and metadata;
- images (``str`` and ``bytes`` alike, each keeps its type);
- tool call names and arguments.

Each encrypted text becomes the token ``qvenc1:<key id>:<base64 of nonce + ciphertext>``
(a ``bytes`` image becomes the same token as ASCII bytes); a metadata or
tool-arguments dict is replaced by ``{"qvenc1": "<token>"}``. A conversation's
expiry (``metadata["expires_at"]``, see ``Capability.EXPIRY``) is also copied in the
clear next to that token, so that the inner store can honour it; on the way back
the copy is checked against the encrypted metadata and removed, so callers get
exactly the metadata they saved. Each value is
encrypted with a fresh random 96-bit nonce, and its place (conversation id, message
id, field name, image or tool call index) is bound as associated data, so a token
copied to another field, message or conversation fails to decrypt instead of
showing up there.

Threat model
------------
Protects titles, content, metadata, images and tool calls from someone who can read
the storage but not the key: a stolen database file or backup, a database
administrator, a leaked dump. It does NOT hide: conversation and message ids,
timestamps (including a conversation's expiry), roles, model names, tool call ids, ``tool_call_id``, whether a title is
present, the number of messages, images and tool calls, the approximate size of each
value, nor which conversations are written when (who talks to whom, and how much).
It does not protect against anyone holding the key, or running code inside the
application (they can read keys and plaintext from memory). Someone who can write
the storage can delete or roll back whole records, or swap in older ciphertexts of
the same field, undetected (setting a clear expiry in the past is one more way to
delete); what they cannot do is change a value or move it elsewhere, nor change or
remove an expiry to keep a conversation alive, without :class:`EncryptionKeyError`
being raised on read.

Keys and rotation
-----------------
``keys`` maps key ids to 32-byte keys. New writes use ``current``; reads use the key
id named in each token, so old data stays readable while its key is kept. To rotate,
add a new key and make it ``current``; data is re-encrypted under it whenever it is
saved again. A token naming a key id that is not in ``keys``, or failing
authentication (wrong key, tampered bytes, moved value), raises
:class:`EncryptionKeyError`; garbage is never returned.

Costs
-----
The inner store only ever sees ciphertext, so it cannot search or filter by
metadata. ``search`` therefore loads and decrypts **every** stored conversation and
evaluates the query in Python with the shared reference rules
(:func:`qv_session_manager.rules.reference_search`), which gives the same hits and
BM25 scores as every other backend but costs time and memory proportional to the
whole store: fine for personal stores, not for millions of messages. ``list`` with a
metadata filter likewise reads and decrypts the whole listing of the time range
before filtering and paging; without a metadata filter it is passed to the inner
store as is (ids and timestamps are in the clear). Because nonces are random, every
save rewrites the ciphertext of the messages it is given, even unchanged ones.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from .errors import EncryptionKeyError, InvalidInputError, StorageError, UnsupportedOperationError
from .install_hints import install_hint
from .protocol import (
    Capability,
    ConversationFilter,
    ConversationStore,
    SaveItem,
    SearchOrder,
    offers,
)
from .query import Query
from .records import (
    EXPIRES_AT,
    ConversationRecord,
    Image,
    JSONValue,
    MessageRecord,
    SearchHit,
    StoredConversation,
    ToolCallRecord,
    check_append,
    check_save,
    checked_save_items,
)
from .rules import (
    Searchable,
    check_filter,
    check_order,
    check_page,
    check_window,
    reference_list,
    reference_search,
    window_of,
)
from .text import tokens

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # pragma: no cover - depends on the environment
    AESGCM = None  # type: ignore[assignment,misc]
    InvalidTag = Exception  # type: ignore[assignment,misc]

#: The prefix of every encrypted value, and the key replacing an encrypted dict.
PREFIX = "qvenc1"
KEY_SIZE = 32
NONCE_SIZE = 12


# -- the cipher --------------------------------------------------------------------


class _Cipher:
    """Encrypts with the current key and decrypts with whichever key a token names."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if AESGCM is None:
            raise InvalidInputError(
                f"EncryptedStore needs the 'cryptography' package: {install_hint('cryptography', 'encryption')}"
            )
        if not isinstance(keys, Mapping) or not keys:
            raise InvalidInputError("keys must be a non-empty mapping of key id to 32-byte key")
        self._aead: dict[str, Any] = {}
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not key_id or not key_id.isascii() or ":" in key_id:
                raise InvalidInputError(f"key id {key_id!r} must be a non-empty ASCII str without ':'")
            if not isinstance(key, bytes) or len(key) != KEY_SIZE:
                raise InvalidInputError(f"key {key_id!r} must be {KEY_SIZE} bytes (AES-256)")
            self._aead[key_id] = AESGCM(key)
        if current not in self._aead:
            raise InvalidInputError(f"current key id {current!r} is not one of the keys")
        self._current = current

    def seal(self, plaintext: bytes, place: bytes) -> str:
        """A token holding ``plaintext``, bound to ``place``; a fresh nonce every call."""
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._aead[self._current].encrypt(nonce, plaintext, place)
        return f"{PREFIX}:{self._current}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def open(self, token: object, place: bytes) -> bytes:
        """The plaintext of ``token``; EncryptionKeyError unless it was sealed for ``place`` with a known key."""
        if not isinstance(token, str):
            raise EncryptionKeyError(f"expected an encrypted value at {_describe(place)}, found {type(token).__name__}")
        prefix, _, rest = token.partition(":")
        key_id, _, payload = rest.partition(":")
        if prefix != PREFIX or not payload:
            raise EncryptionKeyError(f"the value at {_describe(place)} is not an encrypted value")
        aead = self._aead.get(key_id)
        if aead is None:
            raise EncryptionKeyError(f"the value at {_describe(place)} needs key id {key_id!r}, which is not given")
        try:
            raw = base64.b64decode(payload.encode("ascii"), validate=True)
            return bytes(aead.decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE:], place))
        except (InvalidTag, binascii.Error, UnicodeEncodeError, ValueError) as exc:
            raise EncryptionKeyError(
                f"the value at {_describe(place)} failed authentication (wrong key, changed or moved data)"
            ) from exc


def _place(conversation_id: str, message_id: str | None, field: str) -> bytes:
    # Ids never contain NUL (records refuse it), so this joining is unambiguous.
    parts = [PREFIX, conversation_id, "" if message_id is None else message_id, field]
    return "\x00".join(parts).encode("utf-8", "surrogatepass")


def _image_field(index: int, image: Image) -> str:
    # The type is part of the place, so a str token cannot pass for a bytes image.
    return f"image {index} ({'bytes' if isinstance(image, bytes) else 'str'})"


def _describe(place: bytes) -> str:
    _, conversation_id, message_id, field = place.decode("utf-8", "surrogatepass").split("\x00", 3)
    where = f"conversation {conversation_id!r}"
    return f"{where}, message {message_id!r}, {field}" if message_id else f"{where}, {field}"


# -- records <-> encrypted records ---------------------------------------------------


class _Codec:
    """Turns plaintext records into encrypted ones and back; one place per field."""

    def __init__(self, cipher: _Cipher) -> None:
        self._cipher = cipher

    # text and dicts

    def _seal_text(self, text: str, place: bytes) -> str:
        return self._cipher.seal(text.encode("utf-8"), place)

    def _open_text(self, token: object, place: bytes) -> str:
        try:
            return self._cipher.open(token, place).decode("utf-8")
        except UnicodeDecodeError as exc:  # authenticated but not ours: still never return it
            raise EncryptionKeyError(f"the value at {_describe(place)} is not text") from exc

    def _seal_dict(self, value: dict[str, JSONValue], place: bytes) -> dict[str, JSONValue]:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return {PREFIX: self._seal_text(text, place)}

    def _open_dict(self, sealed: object, place: bytes) -> dict[str, JSONValue]:
        if not isinstance(sealed, dict) or set(sealed) != {PREFIX}:
            raise EncryptionKeyError(f"the value at {_describe(place)} is not an encrypted dict")
        try:
            value = json.loads(self._open_text(sealed[PREFIX], place))
        except json.JSONDecodeError as exc:
            raise EncryptionKeyError(f"the value at {_describe(place)} is not JSON") from exc
        if not isinstance(value, dict):
            raise EncryptionKeyError(f"the value at {_describe(place)} is not a dict")
        return value

    # Which fields are encrypted, and under which place, is written once below: sealing
    # and opening walk the same fields with opposite functions, so they cannot drift apart.

    def seal_conversation(self, record: ConversationRecord) -> ConversationRecord:
        return self._map_conversation(record, self._seal_text, self._seal_metadata)

    def open_conversation(self, record: ConversationRecord) -> ConversationRecord:
        return self._map_conversation(record, self._open_text, self._open_metadata)

    def _seal_metadata(self, value: dict[str, JSONValue], place: bytes) -> dict[str, JSONValue]:
        """A conversation's sealed metadata, with a clear copy of its expiry for the inner store."""
        sealed = self._seal_dict(value, place)
        if EXPIRES_AT in value:
            sealed[EXPIRES_AT] = value[EXPIRES_AT]
        return sealed

    def _open_metadata(self, sealed: object, place: bytes) -> dict[str, JSONValue]:
        """The decrypted metadata; EncryptionKeyError unless the clear expiry copy matches it exactly."""
        clear: dict[str, object] = {}
        if isinstance(sealed, dict) and EXPIRES_AT in sealed:
            sealed = dict(sealed)
            clear[EXPIRES_AT] = sealed.pop(EXPIRES_AT)
        value = self._open_dict(sealed, place)
        kept = {EXPIRES_AT: value[EXPIRES_AT]} if EXPIRES_AT in value else {}
        if kept != clear or type(kept.get(EXPIRES_AT)) is not type(clear.get(EXPIRES_AT)):
            raise EncryptionKeyError(f"the expiry stored in the clear at {_describe(place)} was changed")
        return value

    def seal_message(self, conversation_id: str, message: MessageRecord) -> MessageRecord:
        return self._map_message(conversation_id, message, self._seal_text, self._seal_dict, self._seal_image)

    def open_message(self, conversation_id: str, message: MessageRecord) -> MessageRecord:
        return self._map_message(conversation_id, message, self._open_text, self._open_dict, self._open_image)

    @staticmethod
    def _map_conversation(
        record: ConversationRecord,
        text: Callable[[str, bytes], str],
        mapping: Callable[[Any, bytes], Any],
    ) -> ConversationRecord:
        cid = record.id
        return dataclasses.replace(
            record,
            title=None if record.title is None else text(record.title, _place(cid, None, "title")),
            metadata=mapping(record.metadata, _place(cid, None, "metadata")),
        )

    @staticmethod
    def _map_message(
        conversation_id: str,
        message: MessageRecord,
        text: Callable[[str, bytes], str],
        mapping: Callable[[Any, bytes], Any],
        image: Callable[[Image, bytes], Image],
    ) -> MessageRecord:
        def at(field: str) -> bytes:
            return _place(conversation_id, message.id, field)

        images = (
            None
            if message.images is None
            else tuple(image(each, at(_image_field(index, each))) for index, each in enumerate(message.images))
        )
        calls = (
            None
            if message.tool_calls is None
            else tuple(
                ToolCallRecord(
                    text(call.name, at(f"tool call {index} name")),
                    mapping(call.arguments, at(f"tool call {index} arguments")),
                    call.id,
                )
                for index, call in enumerate(message.tool_calls)
            )
        )
        return dataclasses.replace(
            message,
            content=text(message.content, at("content")),
            metadata=mapping(message.metadata, at("metadata")),
            images=images,
            tool_calls=calls,
        )

    def _seal_image(self, image: Image, place: bytes) -> Image:
        if isinstance(image, bytes):
            return self._cipher.seal(image, place).encode("ascii")
        return self._seal_text(image, place)

    def _open_image(self, image: Image, place: bytes) -> Image:
        if isinstance(image, bytes):
            try:
                token = image.decode("ascii")
            except UnicodeDecodeError as exc:
                raise EncryptionKeyError(f"the image at {_describe(place)} is not an encrypted value") from exc
            return self._cipher.open(token, place)
        return self._open_text(image, place)

    def open_stored(self, stored: StoredConversation) -> StoredConversation:
        cid = stored.conversation.id
        return StoredConversation(
            self.open_conversation(stored.conversation),
            tuple(self.open_message(cid, message) for message in stored.messages),
        )


# -- the store -----------------------------------------------------------------------


class EncryptedStore:
    """A ConversationStore that keeps titles, content, metadata, images and tool calls encrypted in ``inner``.

    See the module docstring for what is encrypted, the threat model and the cost
    of ``search`` and metadata filters. Every method follows the contract of
    :class:`~qv_session_manager.protocol.ConversationStore`; reads additionally
    raise :class:`EncryptionKeyError` when a stored value cannot be decrypted
    (unknown key id, wrong key, tampered or moved value). ``load_window`` is always
    available (the inner store's when it has one, else load and cut); ``save_many``,
    ``purge_expired`` and ``drop`` are declared in ``capabilities`` exactly when the
    inner store offers them, so bulk saves stay all or nothing.
    Bad ``keys`` or ``current`` raise InvalidInputError. The wrapper owns ``inner``:
    ``close()`` closes it.
    """

    def __init__(self, inner: ConversationStore, keys: Mapping[str, bytes], *, current: str) -> None:
        self._inner = inner
        self._codec = _Codec(_Cipher(keys, current))
        self._closed = False
        offered = frozenset(capability for capability in _FORWARDED if offers(inner, capability))
        # The Python-side search ranks with BM25 and windows are cut here when the inner store cannot.
        self.capabilities: frozenset[Capability] = offered | {Capability.RELEVANCE, Capability.WINDOWED_LOADING}

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the store is closed")

    def _sealed(
        self, conversation: ConversationRecord, messages: Sequence[MessageRecord]
    ) -> tuple[ConversationRecord, list[MessageRecord]]:
        """Encrypted copies of a save's records; InvalidInputError for anything a save must refuse.

        ``dataclasses.replace`` validates again, since a caller may have changed a
        record's dicts after it was built.
        """
        check_save(conversation, messages)
        plain = dataclasses.replace(conversation)
        return (
            self._codec.seal_conversation(plain),
            [self._codec.seal_message(plain.id, dataclasses.replace(message)) for message in messages],
        )

    def save(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
    ) -> None:
        """Encrypt, then save as the inner store does (see ConversationStore.save)."""
        self._check_open()
        record, sealed = self._sealed(conversation, messages)
        self._inner.save(record, sealed, replace=replace)

    def append(
        self,
        conversation_id: str,
        messages: Sequence[MessageRecord],
        *,
        updated_at: datetime | None = None,
    ) -> bool:
        """Encrypt, then append as the inner store does; False when the conversation is missing."""
        self._check_open()
        updated_at = check_append(messages, updated_at)
        sealed = [self._codec.seal_message(conversation_id, dataclasses.replace(m)) for m in messages]
        return self._inner.append(conversation_id, sealed, updated_at=updated_at)

    def load(self, conversation_id: str) -> StoredConversation | None:
        """The decrypted conversation and messages in stored order; None if missing."""
        self._check_open()
        stored = self._inner.load(conversation_id)
        return None if stored is None else self._codec.open_stored(stored)

    def load_window(
        self,
        conversation_id: str,
        *,
        last_messages: int | None = None,
        last_turns: int | None = None,
        keep_system: bool = True,
    ) -> StoredConversation | None:
        """See WindowedLoading; uses the inner store's window when it has one."""
        self._check_open()
        check_window(last_messages, last_turns, keep_system)
        if offers(self._inner, Capability.WINDOWED_LOADING):
            stored = self._inner.load_window(
                conversation_id, last_messages=last_messages, last_turns=last_turns, keep_system=keep_system
            )
            return None if stored is None else self._codec.open_stored(stored)
        whole = self.load(conversation_id)
        if whole is None:
            return None
        return window_of(whole, last_messages=last_messages, last_turns=last_turns, keep_system=keep_system)

    def get(self, conversation_id: str) -> ConversationRecord | None:
        """The decrypted conversation without messages; None if missing."""
        self._check_open()
        record = self._inner.get(conversation_id)
        return None if record is None else self._codec.open_conversation(record)

    def delete(self, conversation_id: str) -> bool:
        """Passed through: False when missing."""
        self._check_open()
        return self._inner.delete(conversation_id)

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        """Passed through: False when either id is missing."""
        self._check_open()
        return self._inner.delete_message(conversation_id, message_id)

    def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> builtins.list[ConversationRecord]:
        """Decrypted conversations passing ``filter``, newest first (see ConversationStore.list).

        Without a metadata filter the inner store pages. With one, the whole listing
        of the time range is read and decrypted, then filtered and paged in Python
        (the inner store only sees encrypted metadata).
        """
        self._check_open()
        check_page(limit, offset)
        check_filter(filter)
        if not filter.metadata:
            records = self._inner.list(filter, limit=limit, offset=offset, after=after)
            return [self._codec.open_conversation(record) for record in records]
        everything = self._inner.list(dataclasses.replace(filter, metadata=None))
        plain = [self._codec.open_conversation(record) for record in everything]
        return reference_list(plain, filter, limit=limit, offset=offset, after=after)

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
        """See ConversationStore.search; evaluated in Python over every decrypted conversation.

        Costs a load and decryption of the whole store per call (see the module
        docstring). Conversations deleted while the search runs are skipped.
        """
        self._check_open()
        check_page(limit, offset)
        check_filter(filter)
        check_order(order)
        if query.is_empty:
            return []
        items: builtins.list[Searchable] = []
        # Every conversation, not only the filter's: BM25 statistics cover the whole store, as elsewhere.
        for record in self._inner.list(ConversationFilter()):
            stored = self._inner.load(record.id)
            if stored is None:
                continue
            plain = self._codec.open_stored(stored)
            items.append(
                Searchable(
                    plain.conversation,
                    tokens(plain.conversation.title or ""),
                    [(m.id, tokens(m.content), m.content) for m in plain.messages],
                )
            )
        return reference_search(items, query, filter, order=order, limit=limit, offset=offset, with_text=with_text)

    def purge_expired(self) -> int:
        """See :class:`~qv_session_manager.protocol.Expiring`: the inner store's purge (the expiry is in
        the clear there); UnsupportedOperationError when the inner store has none."""
        self._check_open()
        inner = self._inner
        if not offers(inner, Capability.PURGING):
            raise UnsupportedOperationError(f"{type(inner).__name__} has no purge_expired")
        return inner.purge_expired()

    def save_many(self, items: Iterable[SaveItem]) -> int:
        """See BulkSaving: encrypt every pair first, then save them in one inner transaction (all or nothing).

        Raises UnsupportedOperationError when the inner store has no ``save_many``
        (this store then does not declare ``Capability.BULK_SAVING``).
        """
        self._check_open()
        inner = self._inner
        if not offers(inner, Capability.BULK_SAVING):
            raise UnsupportedOperationError(f"{type(inner).__name__} has no save_many to save into")
        sealed = [self._sealed(conversation, messages) for conversation, messages in checked_save_items(items)]
        return inner.save_many(sealed)

    def drop(self) -> None:
        """See Droppable: drop the inner store; UnsupportedOperationError when it cannot be dropped."""
        self._check_open()
        inner = self._inner
        if not offers(inner, Capability.DROPPABLE):
            raise UnsupportedOperationError(f"{type(inner).__name__} cannot be dropped")
        self._closed = True
        inner.drop()

    def close(self) -> None:
        """Close the inner store; closing twice is harmless."""
        self._closed = True
        self._inner.close()


#: The inner store's capabilities an EncryptedStore keeps: what it forwards as they are.
#: Revisioned saves and summary listings are not forwarded (every save seals anew, and
#: summaries would be built from ciphertext); index inspection would show ciphertext.
_FORWARDED = (
    Capability.PERSISTENT,
    Capability.MULTI_PROCESS,
    Capability.EXPIRY,
    Capability.BULK_SAVING,
    Capability.PURGING,
    Capability.DROPPABLE,
)
