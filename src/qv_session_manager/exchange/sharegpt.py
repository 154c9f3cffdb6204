"""Importing ShareGPT dumps: a JSON array of ``{"id": ..., "conversations": [{"from", "value"}]}``.

Ids and timestamps are derived, never random, so importing the same file twice
gives the same records (and saving them again changes nothing):

- conversation id: ``uuid5(SHAREGPT_NAMESPACE, str(item["id"]))``;
- message id: ``uuid5(conversation id, str(position))``, position counting from 0;
- times: the conversation is created at SHAREGPT_EPOCH (UTC), message ``i`` at
  SHAREGPT_EPOCH + ``i`` seconds, and updated_at is the last message's time.

Roles: ``human`` -> user, ``gpt`` -> assistant, ``system`` -> system; any other
``from`` (``bing``, ``chatgpt``...) becomes a user message whose metadata keeps the
original as ``{"sharegpt_from": ...}``. The conversation's metadata holds
``{"sharegpt_id": <original id>}``; title and model_name are null. Other keys of an
item are ignored.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO

from ..errors import ImportFormatError, InvalidInputError
from ..records import ConversationRecord, MessageRecord, StoredConversation
from .jsonl import Entry
from .scanner import JsonScanner, TruncatedError, array_items

log = logging.getLogger("qv_session_manager")

#: The namespace of conversation ids made from ShareGPT ids (fixed: re-imports are idempotent).
SHAREGPT_NAMESPACE = uuid.UUID("6f0f2b8e-7a4c-5d1e-9b3a-51a4e0c2d7f3")
#: The creation time of every imported ShareGPT conversation.
SHAREGPT_EPOCH = datetime(2023, 1, 1, tzinfo=timezone.utc)

_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def sharegpt_entries(stream: TextIO) -> Iterator[Entry]:
    """Each item of the array with the line it starts on, in file order.

    An item that is not a usable conversation is yielded as its ImportFormatError. A
    file cut short (inside an item, or without the closing ``]``) ends the reading
    after the last complete item, with a warning logged (naming the line of the
    incomplete item, which is not imported); a syntax error elsewhere, or
    a file that is not an array, raises ImportFormatError.
    """
    scanner = JsonScanner(stream)
    if scanner.peek() is None:
        raise ImportFormatError(1, "the file is empty: no JSON array")
    try:
        yield from array_items(scanner, sharegpt_conversation, "a JSON array of ShareGPT conversations")
    except TruncatedError as exc:
        if exc.reason.startswith("the file ends inside a value"):
            log.warning(
                "the ShareGPT file is cut short: the item starting on line %d is incomplete and was not imported;"
                " the items before it were read",
                exc.line,
            )
        else:
            log.warning("the ShareGPT file is cut short at line %d (no closing ']'); every item was read", exc.line)
        return
    if scanner.peek() is not None:
        raise ImportFormatError(scanner.line, "extra data after the JSON array")


def read_sharegpt(stream: TextIO) -> Iterator[tuple[int, StoredConversation]]:
    """``(line, conversation)`` for each ShareGPT item, lazily; a torn tail ends it quietly.

    ``line`` is where the item starts. The first unusable item raises
    ImportFormatError (with ``.line``); items before it have been yielded.
    """
    for line, item in sharegpt_entries(stream):
        if isinstance(item, ImportFormatError):
            raise item
        yield line, item


def sharegpt_conversation(item: Any, line: int) -> StoredConversation:
    """The records of one ShareGPT item (see the module docstring); ImportFormatError if unusable."""
    if not isinstance(item, dict):
        raise ImportFormatError(line, "a ShareGPT item must be a JSON object")
    original = item.get("id")
    turns = item.get("conversations")
    if not isinstance(original, (str, int)) or isinstance(original, bool) or original == "":
        raise ImportFormatError(line, "a ShareGPT item needs an id (a string or an integer)")
    if not isinstance(turns, list):
        raise ImportFormatError(line, f"ShareGPT item {original!r} needs a list under 'conversations'")
    conversation_id = uuid.uuid5(SHAREGPT_NAMESPACE, str(original))
    try:
        messages = tuple(_message(conversation_id, position, turn) for position, turn in enumerate(turns))
        record = ConversationRecord(
            id=str(conversation_id),
            created_at=SHAREGPT_EPOCH,
            updated_at=messages[-1].created_at if messages else SHAREGPT_EPOCH,
            metadata={"sharegpt_id": original},
        )
    except InvalidInputError as exc:
        raise ImportFormatError(line, f"ShareGPT item {original!r}: {exc}") from None
    return StoredConversation(record, messages)


def _message(conversation_id: uuid.UUID, position: int, turn: Any) -> MessageRecord:
    if not isinstance(turn, dict) or not isinstance(turn.get("from"), str) or not isinstance(turn.get("value"), str):
        raise InvalidInputError(f"turn {position} must be an object with string 'from' and 'value'")
    speaker = turn["from"]
    role = _ROLES.get(speaker)
    return MessageRecord(
        id=str(uuid.uuid5(conversation_id, str(position))),
        role=role or "user",
        content=turn["value"],
        created_at=SHAREGPT_EPOCH + timedelta(seconds=position),
        metadata={} if role else {"sharegpt_from": speaker},
    )
