"""A CSV view of conversations: one row per message, for spreadsheets. Not importable.

Stored text is untrusted, and a spreadsheet runs a cell that starts with ``=`` as a
formula (``=HYPERLINK(...)``, ``=WEBSERVICE(...)``). So by default every cell whose
text starts with a formula trigger (:data:`FORMULA_TRIGGERS`: ``=``, ``+``, ``-``,
``@``, tab, carriage return) is written with a leading ``'``, as OWASP recommends
against CSV injection; spreadsheets show the rest of the text as it is. With
``formulas="raw"`` cells are written exactly as stored.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Literal, TextIO

from ..codec import tool_calls_to_json
from ..errors import InvalidInputError
from ..records import StoredConversation
from .schema import dumps_line

CsvFormulas = Literal["escape", "raw"]
#: What a cell may start with to be read as a formula by a spreadsheet.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

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


def neutralized(cell: str) -> str:
    """``cell`` with a leading ``'`` when it starts with a formula trigger, else unchanged."""
    return "'" + cell if cell.startswith(FORMULA_TRIGGERS) else cell


def check_formulas(formulas: object) -> None:
    """Raise InvalidInputError unless ``formulas`` is ``"escape"`` or ``"raw"``."""
    if formulas not in ("escape", "raw"):
        raise InvalidInputError(f"csv_formulas must be 'escape' or 'raw', not {formulas!r}")


def write_csv(conversations: Iterable[StoredConversation], stream: TextIO, *, formulas: CsvFormulas = "escape") -> int:
    """Write a header row, then one row per message; return the number of conversations.

    Columns are CSV_COLUMNS. Rows follow the conversations in the order given and their
    messages in stored order (``position`` counts from 0). ``tool_calls`` is the calls
    as a JSON array (empty when the message has none), ``created_at`` the ISO string;
    a missing title or tool_call_id is an empty cell. A conversation without messages
    has no row. Images and metadata are not part of this view. Open a file target with
    ``newline=""`` (rows end with CRLF, as the csv module writes them).

    ``formulas="escape"`` (the default) prefixes ``'`` to every cell starting with one
    of :data:`FORMULA_TRIGGERS` (see the module docstring); ``"raw"`` writes every cell
    as stored. Raises InvalidInputError for another value, before writing anything.
    """
    check_formulas(formulas)
    writer = csv.writer(stream)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for stored in conversations:
        record = stored.conversation
        for position, message in enumerate(stored.messages):
            cells = (
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
            writer.writerow(cells if formulas == "raw" else [neutralized(str(cell)) for cell in cells])
        count += 1
    return count
