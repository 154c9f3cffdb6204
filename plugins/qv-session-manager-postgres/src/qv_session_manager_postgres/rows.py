"""Rows of the PostgreSQL schema: encoding records into columns and back.

PostgreSQL refuses two things Python strings may hold:

- **NUL in ``text``.** A text field holding NUL (content, title, model_name,
  tool_call_id) is stored escaped (``\\`` becomes ``\\\\`` and NUL becomes ``\\0``)
  and the row's ``escaped`` bit mask says which fields were escaped. Text without
  NUL, the usual case, is stored exactly as it is, so the columns stay readable
  from SQL. Ids cannot hold NUL (records refuse it). JSON fields (metadata,
  images, tool calls) are stored as the exact JSON text of :mod:`qv_session_manager.codec`,
  in which NUL is already the escape ``\\u0000``: they need nothing more.
- **``\\u0000`` in ``jsonb``.** The metadata filters run on ``filter_doc``, a
  ``jsonb`` built here holding only the top-level scalar entries of the metadata,
  with every key and string escaped as above (always, so the escaping is
  injective) and every number written as its exact decimal value, so that
  PostgreSQL's numeric equality is Python's ``int``/``float`` equality.

The exact JSON text is what :meth:`load` returns; ``filter_doc`` is only searched.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from qv_session_manager import codec
from qv_session_manager.errors import CorruptStorageError
from qv_session_manager.records import ConversationRecord, MessageRecord, expiry_key
from qv_session_manager.timeutil import time_key

# -- NUL escaping ---------------------------------------------------------------

_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def escape(text: str) -> str:
    """A NUL-free, reversible form of ``text`` (see :func:`unescape`)."""
    return text.replace("\\", "\\\\").replace("\x00", "\\0")


def unescape(text: str) -> str:
    return _ESCAPED.sub(lambda match: "\x00" if match.group(1) == "0" else match.group(1), text)


def store_text(value: str | None, bit: int) -> tuple[str | None, int]:
    """(column value, bit if it was escaped): text with NUL is escaped, other text kept."""
    if value is None or "\x00" not in value:
        return value, 0
    return escape(value), bit


def load_text(value: str | None, escaped: int, bit: int) -> str | None:
    if value is None or not escaped & bit:
        return value
    return unescape(value)


# Bits of the ``escaped`` column.
TITLE, MODEL_NAME = 1, 2
CONTENT, TOOL_CALL_ID = 1, 2

# -- keys and fingerprints -----------------------------------------------------------


def id_key(id_: str) -> bytes:
    """The indexed key of an id: SHA-256 of its UTF-8, so ids of any length index."""
    return hashlib.sha256(id_.encode("utf-8")).digest()


def digest(*columns: Any) -> bytes:
    """A fingerprint of a message's stored columns, to skip rewriting unchanged messages."""
    hasher = hashlib.blake2b(digest_size=16)
    for column in columns:
        data = b"\x00N" if column is None else str(column).encode("utf-8")
        hasher.update(len(data).to_bytes(8, "little"))
        hasher.update(data)
    return hasher.digest()


def parse_timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise CorruptStorageError(f"stored timestamp {text!r} is not ISO 8601") from None


# -- metadata filters ---------------------------------------------------------------


def _json_number(value: float) -> str:
    """The exact decimal value of a number, as JSON (a float's binary value, not its repr)."""
    if isinstance(value, int):
        return str(value)
    return str(Decimal(value))  # exact; may use an exponent ("4.94...E-324"), which JSON allows


def filter_scalar(value: Any) -> str | None:
    """The ``filter_doc`` JSON of one metadata value, or None when no filter can match it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return _json_number(value)
    if isinstance(value, str):
        return json.dumps(escape(value), ensure_ascii=False)
    return None  # lists and objects: a filter value is always a scalar


def filter_document(metadata: Mapping[str, Any]) -> str:
    """The jsonb text of the top-level scalar entries of ``metadata`` (see module doc)."""
    parts = []
    for key, value in metadata.items():
        encoded = filter_scalar(value)
        if encoded is not None:
            parts.append(json.dumps(escape(key), ensure_ascii=False) + ":" + encoded)
    return "{" + ",".join(parts) + "}"


# -- records ------------------------------------------------------------------------

CONVERSATION_COLUMNS = "c.id, c.title, c.model_name, c.created_at, c.updated_at, c.metadata, c.escaped"
#: A conversation ``c`` not expired at the parameter ``now`` (see Capability.EXPIRY).
LIVE = '(c.expires_key IS NULL OR c.expires_key > %(now)s COLLATE "C")'
MESSAGE_COLUMNS = "m.id, m.role, m.content, m.created_at, m.metadata, m.images, m.tool_calls, m.tool_call_id, m.escaped"


class EncodedMessage:
    """A message's column values, its fingerprints and (lazily) its search vector."""

    __slots__ = ("_vector", "content", "content_digest", "digest", "escaped", "id", "key", "values")

    def __init__(self, message: MessageRecord) -> None:
        content, content_bit = store_text(message.content, CONTENT)
        tool_call_id, tool_bit = store_text(message.tool_call_id, TOOL_CALL_ID)
        self.id = message.id
        self.key = id_key(message.id)
        self.content = message.content
        self.escaped = content_bit | tool_bit
        #: role, content, created_at, metadata, images, tool_calls, tool_call_id
        self.values = (
            message.role,
            content,
            message.created_at.isoformat(),
            codec.dumps(message.metadata),
            codec.dump_images(message.images),
            codec.dump_tool_calls(message.tool_calls),
            tool_call_id,
        )
        self.digest = digest(*self.values, self.escaped)
        self.content_digest = digest(message.content)
        self._vector: tuple[str, bool] | None = None

    def vector(self) -> tuple[str, bool]:
        """(tsvector literal, exact) of the content, computed once."""
        if self._vector is None:
            from .textsearch import document_vector

            self._vector = document_vector(self.content)
        return self._vector


def encode_conversation(record: ConversationRecord) -> dict[str, Any]:
    from .textsearch import document_vector

    title, title_bit = store_text(record.title, TITLE)
    model_name, model_bit = store_text(record.model_name, MODEL_NAME)
    vector, exact = document_vector(record.title or "")
    return {
        "id": record.id,
        "id_key": id_key(record.id),
        "title": title,
        "model_name": model_name,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "created_key": time_key(record.created_at),
        "updated_key": time_key(record.updated_at),
        "metadata": codec.dumps(record.metadata),
        "filter_doc": filter_document(record.metadata),
        "escaped": title_bit | model_bit,
        "title_tsv": vector,
        "title_exact": exact,
        "expires_key": expiry_key(record.metadata),
    }


def decode_conversation(row: tuple[Any, ...]) -> ConversationRecord:
    """The record of a qv_conversations row. Not validated again: every row was validated when
    its record was built (a metadata ``expires_at`` stored before the key was reserved stays as
    it is); what cannot be decoded raises ValueError or TypeError."""
    id_, title, model_name, created_at, updated_at, metadata, escaped = row
    return ConversationRecord.unchecked(
        id=id_,
        title=load_text(title, escaped, TITLE),
        model_name=load_text(model_name, escaped, MODEL_NAME),
        created_at=parse_timestamp(created_at),
        updated_at=parse_timestamp(updated_at),
        metadata=codec.loads(metadata),
    )


def summary_of_row(row: tuple[Any, ...]) -> dict[str, Any]:
    """``convert.summary(decode_conversation(row))`` without the record: the stored timestamps are
    the ``isoformat()`` text summary would make again."""
    id_, title, model_name, created_at, updated_at, metadata, escaped = row
    return {
        "id": id_,
        "title": load_text(title, escaped, TITLE),
        "model_name": load_text(model_name, escaped, MODEL_NAME),
        "created_at": created_at,
        "updated_at": updated_at,
        "metadata": codec.loads(metadata),
    }


def decode_message(row: tuple[Any, ...]) -> MessageRecord:
    """The record of a qv_messages row; not validated again (see :func:`decode_conversation`)."""
    id_, role, content, created_at, metadata, images, tool_calls, tool_call_id, escaped = row
    return MessageRecord.unchecked(
        id=id_,
        role=role,
        content=load_text(content, escaped, CONTENT),
        created_at=parse_timestamp(created_at),
        metadata=codec.loads(metadata),
        images=codec.load_images(images),
        tool_calls=codec.load_tool_calls(tool_calls),
        tool_call_id=load_text(tool_call_id, escaped, TOOL_CALL_ID),
    )
