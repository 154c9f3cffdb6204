"""Rows of the SQLite schema: encoding records into columns and back."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import datetime
from typing import Any

from ... import codec
from ...errors import CorruptStorageError
from ...records import ConversationRecord, MessageRecord, expiry_key
from ...text import MAX_TOKEN_LENGTH, index_text, separated
from ...timeutil import time_key


def parse_timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise CorruptStorageError(f"stored timestamp {text!r} is not ISO 8601") from None


# Bytes of token characters to "a", others to " ": a run longer than MAX_TOKEN_LENGTH is
# then a plain substring search, in C (a regex is ~10x slower). Every byte of a non-ASCII
# character counts, so a run of that many bytes may be fewer characters: such text takes
# the exact path.
_RUNS = bytes(ord("a") if byte >= 0x80 or chr(byte).isalnum() else ord(" ") for byte in range(256))
_OVERLONG_RUN = b"a" * (MAX_TOKEN_LENGTH + 1)


def index_body(text: str | None) -> str:
    """What goes into an FTS5 row for ``text`` (empty: no row).

    FTS5's ``ascii`` tokenizer splits at ASCII characters other than letters and
    digits, lower-cases ASCII and keeps every other character in its tokens, so the
    text :func:`~qv_session_manager.text.separated` gives (ASCII text as it is) holds
    exactly the shared tokens and FTS5 then tokenizes in C, which makes saves and bulk
    imports much faster. Text with a run of token characters too long for that goes in
    as the shared tokens joined by spaces (they are cut to length).
    """
    if not text:
        return ""
    body = text if text.isascii() else separated(text)
    if _OVERLONG_RUN in body.encode("utf-8", "surrogatepass").translate(_RUNS):
        return index_text(text)
    return body


def body_column(text: str | None) -> str | None:
    """The ``index_body`` / ``title_body`` column for ``text``: NULL when the index holds ``text`` as it is.

    The search index is contentless, so removing an entry needs exactly the body that
    went in; keeping it beside the text (only where it differs) lets the schema's
    triggers remove entries without Python.
    """
    body = index_body(text)
    return None if body == (text or "") else body


def digest(role: str, content: str | None, *rest: Any) -> bytes:
    """A fingerprint of a message's stored columns, to skip rewriting unchanged messages.

    The repr of a tuple of the other columns and the content's length tells them and
    their boundaries apart (strings are quoted, None is bare, and no tuple's repr is a
    prefix of another's), and the content's own bytes follow: so equal fingerprints
    mean equal columns. The content is hashed as it is, not through repr, which would
    escape and copy it first.
    """
    head = repr((role, None if content is None else len(content), *rest))
    hasher = hashlib.blake2b(head.encode("utf-8", "surrogatepass"), digest_size=16)
    if content:
        hasher.update(content.encode("utf-8", "surrogatepass"))
    return hasher.digest()


MESSAGE_COLUMNS = "id, role, content, created_at, metadata, images, tool_calls, tool_call_id"
CONVERSATION_COLUMNS = "id, title, model_name, created_at, updated_at, metadata"
#: The condition of a conversation ``c`` that has not expired at the parameter ``:now`` (see Capability.EXPIRY).
LIVE = "(c.expires_key IS NULL OR c.expires_key > :now)"


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
        images=None if images is None else codec.load_images(images),  # most have neither: no call
        tool_calls=None if tool_calls is None else codec.load_tool_calls(tool_calls),
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


def summary_of_row(row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    """``convert.summary(decode_conversation(row))``, without the record: the stored
    timestamps are the ``isoformat()`` text that summary would make again."""
    id_, title, model_name, created_at, updated_at, metadata = row
    return {
        "id": id_,
        "title": title,
        "model_name": model_name,
        "created_at": created_at,
        "updated_at": updated_at,
        "metadata": codec.loads(metadata),
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
