"""Rows of the SQLite schema: encoding records into columns and back."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from datetime import datetime
from typing import Any

from ... import codec
from ...errors import CorruptStorageError
from ...records import ConversationRecord, MessageRecord, expiry_key
from ...text import MAX_TOKEN_LENGTH, index_text
from ...timeutil import time_key


def parse_timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise CorruptStorageError(f"stored timestamp {text!r} is not ISO 8601") from None


_LONG_ASCII_RUN = re.compile(f"[A-Za-z0-9]{{{MAX_TOKEN_LENGTH + 1}}}")


def index_body(text: str | None) -> str:
    """What goes into an FTS5 row for ``text`` (empty: no row).

    FTS5's ``ascii`` tokenizer splits ASCII text exactly where the shared tokenizer
    does and lower-cases it the same way, so ASCII text without over-long runs goes in
    as it is: FTS5 then tokenizes in C, which makes bulk imports much faster. Other
    text goes in as the shared tokens joined by spaces.
    """
    if not text:
        return ""
    if text.isascii() and not _LONG_ASCII_RUN.search(text):
        return text
    return index_text(text)


def body_column(text: str | None) -> str | None:
    """The ``index_body`` / ``title_body`` column for ``text``: NULL when the index holds ``text`` as it is.

    The search index is contentless, so removing an entry needs exactly the body that
    went in; keeping it beside the text (only where it differs) lets the schema's
    triggers remove entries without Python.
    """
    body = index_body(text)
    return None if body == (text or "") else body


def digest(*columns: Any) -> bytes:
    """A fingerprint of a message's stored columns, to skip rewriting unchanged messages.

    The repr of the tuple tells every column and its boundaries apart (strings are
    quoted, None is bare), so equal fingerprints mean equal columns.
    """
    return hashlib.blake2b(repr(columns).encode("utf-8", "surrogatepass"), digest_size=16).digest()


MESSAGE_COLUMNS = "id, role, content, created_at, metadata, images, tool_calls, tool_call_id"
CONVERSATION_COLUMNS = "id, title, model_name, created_at, updated_at, metadata"


def encode_message(message: MessageRecord) -> tuple[Any, ...]:
    """(id, role, content, created_at, metadata, images, tool_calls, tool_call_id, digest)."""
    row = (
        message.role,
        message.content,
        message.created_at.isoformat(),
        codec.dumps(message.metadata),
        codec.dump_images(message.images),
        codec.dump_tool_calls(message.tool_calls),
    )
    return (message.id, *row, message.tool_call_id, digest(*row, message.tool_call_id))


def decode_message(row: sqlite3.Row | tuple[Any, ...]) -> MessageRecord:
    id_, role, content, created_at, metadata, images, tool_calls, tool_call_id = row
    return MessageRecord.unchecked(
        id=id_,
        role=role,
        content=content,
        created_at=parse_timestamp(created_at),
        metadata=codec.loads(metadata),
        images=codec.load_images(images),
        tool_calls=codec.load_tool_calls(tool_calls),
        tool_call_id=tool_call_id,
    )


def encode_conversation(record: ConversationRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "title": record.title,
        "model_name": record.model_name,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "created_key": time_key(record.created_at),
        "updated_key": time_key(record.updated_at),
        "metadata": codec.dumps(record.metadata),
        "expires_key": expiry_key(record.metadata),
        "title_body": body_column(record.title),
    }


def decode_conversation(row: sqlite3.Row | tuple[Any, ...]) -> ConversationRecord:
    id_, title, model_name, created_at, updated_at, metadata = row
    return ConversationRecord.unchecked(
        id=id_,
        title=title,
        model_name=model_name,
        created_at=parse_timestamp(created_at),
        updated_at=parse_timestamp(updated_at),
        metadata=codec.loads(metadata),
    )
