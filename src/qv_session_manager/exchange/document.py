"""The qv-session-manager JSON format: one document, written and read incrementally.

``{"format": "qv-session-manager", "version": 1, "conversations": [...]}``, written
with one conversation per line so that line numbers stay meaningful.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from ..errors import ImportFormatError
from ..records import StoredConversation
from .jsonl import Entry
from .scanner import JsonScanner, array_items
from .schema import check_header, decode_conversation, dumps_line, encode_conversation, header


def write_json(conversations: Iterable[StoredConversation], stream: TextIO) -> int:
    """Write one JSON document holding the conversations in the order given; return how many.

    Written piece by piece: memory holds one conversation at a time, never the store.
    """
    opening = dumps_line(header())[:-1]  # the header object without its closing brace
    stream.write(opening + ',"conversations":[')
    count = 0
    for stored in conversations:
        stream.write(("\n" if count == 0 else ",\n") + dumps_line(encode_conversation(stored)))
        count += 1
    stream.write("\n]}\n")
    return count


def json_entries(stream: TextIO) -> Iterator[Entry]:
    """Each conversation of the document with the line it starts on, in document order.

    A conversation that is valid JSON but not a valid conversation is yielded as its
    ImportFormatError, so a caller may skip it. Anything that breaks the document
    itself raises ImportFormatError: JSON syntax errors, a missing, foreign or newer
    header, ``format``/``version`` placed after ``conversations``, unknown top-level
    keys, text after the document. The header is checked before any conversation.
    """
    scanner = JsonScanner(stream)
    if scanner.peek() is None:
        raise ImportFormatError(1, "the file is empty: no JSON document")
    start = scanner.line
    scanner.expect("{", "the document's opening '{'")
    fields: dict[str, Any] = {}
    seen_conversations = False
    while scanner.peek() != "}":
        if fields or seen_conversations:
            scanner.expect(",", "',' or '}' after a top-level value")
        key_line, key = scanner.value()
        if not isinstance(key, str):
            raise ImportFormatError(key_line, "expected a top-level key")
        if key in fields or (key == "conversations" and seen_conversations):
            raise ImportFormatError(key_line, f"the top-level key {key!r} appears twice")
        scanner.expect(":", "':' after a key")
        if key == "conversations":
            check_header(fields, start)
            seen_conversations = True
            yield from array_items(scanner, decode_conversation, "'[' opening the conversations")
        elif key in ("format", "version"):
            fields[key] = scanner.value()[1]
        else:
            raise ImportFormatError(key_line, f"unknown top-level key {key!r}")
    scanner.expect("}", "'}'")
    check_header(fields, start)
    if scanner.peek() is not None:
        raise ImportFormatError(scanner.line, "extra data after the JSON document")


def read_json(stream: TextIO) -> Iterator[tuple[int, StoredConversation]]:
    """``(line, conversation)`` for each conversation of a JSON export, lazily.

    ``line`` is the line the conversation starts on. Memory holds one conversation and
    one 64 KiB chunk, except after a JSON syntax error, which is only told apart from a
    cut-off file by reading to the end. The first problem raises ImportFormatError
    (with ``.line``); conversations before it have been yielded.
    """
    for line, item in json_entries(stream):
        if isinstance(item, ImportFormatError):
            raise item
        yield line, item
