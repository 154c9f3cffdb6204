"""A CSV view of conversations: one row per message, for spreadsheets. Not importable."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TextIO

from ..codec import tool_calls_to_json
from ..records import StoredConversation
from .schema import dumps_line

CSV_COLUMNS = (
    "conversation_id",
    "conversation_title",
    "message_id",
    "position",
    "role",
    "created_at",
    "content",
    "tool_calls",
    "tool_call_id",
)


def write_csv(conversations: Iterable[StoredConversation], stream: TextIO) -> int:
    """Write a header row, then one row per message; return the number of conversations.

    Columns are CSV_COLUMNS. Rows follow the conversations in the order given and their
    messages in stored order (``position`` counts from 0). ``tool_calls`` is the calls
    as a JSON array (empty when the message has none), ``created_at`` the ISO string;
    a missing title or tool_call_id is an empty cell. A conversation without messages
    has no row. Images and metadata are not part of this view. Open a file target with
    ``newline=""`` (rows end with CRLF, as the csv module writes them).
    """
    writer = csv.writer(stream)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for stored in conversations:
        record = stored.conversation
        for position, message in enumerate(stored.messages):
            writer.writerow(
                (
                    record.id,
                    record.title or "",
                    message.id,
                    position,
                    message.role,
                    message.created_at.isoformat(),
                    message.content,
                    dumps_line(tool_calls_to_json(message.tool_calls)) if message.tool_calls else "",
                    message.tool_call_id or "",
                )
            )
        count += 1
    return count
