"""The qv-session-manager JSONL format: a header line, then one conversation per line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TextIO

from ..errors import ImportFormatError
from ..records import StoredConversation
from .schema import check_header, decode_conversation, dumps_line, encode_conversation, header, parse_line

#: What a reader yields: the line a conversation starts on, and it or why it was refused.
Entry = tuple[int, "StoredConversation | ImportFormatError"]


def write_jsonl(conversations: Iterable[StoredConversation], stream: TextIO) -> int:
    """Write the header line, then each conversation on its own line, in the order given.

    Conversations are taken from the iterable one at a time (a generator is read
    lazily) and nothing is kept. Returns the number of conversations written.
    """
    stream.write(dumps_line(header()) + "\n")
    count = 0
    for stored in conversations:
        stream.write(dumps_line(encode_conversation(stored)) + "\n")
        count += 1
    return count


def jsonl_entries(stream: TextIO) -> Iterator[Entry]:
    """Every conversation line of ``stream`` with its line number, in file order.

    A bad conversation line is yielded as its ImportFormatError, so a caller may skip
    it. Blank lines are ignored. A missing, foreign or newer header raises
    ImportFormatError (line 1): the whole file is unusable then.
    """
    lines = _numbered_lines(stream)
    first = next(lines, None)
    if first is None:
        raise ImportFormatError(1, "the file is empty: no header line")
    check_header(parse_line(first[1], 1))
    for number, text in lines:
        if not text.strip():
            continue
        try:
            yield number, decode_conversation(parse_line(text, number), number)
        except ImportFormatError as exc:
            yield number, exc


def read_jsonl(stream: TextIO) -> Iterator[tuple[int, StoredConversation]]:
    """``(line number, conversation)`` for each conversation line, in file order, lazily.

    The first bad line raises ImportFormatError with its number in the message and in
    ``.line`` (a bad header: line 1); the conversations before it have been yielded.
    """
    for number, item in jsonl_entries(stream):
        if isinstance(item, ImportFormatError):
            raise item
        yield number, item


def _numbered_lines(stream: TextIO) -> Iterator[tuple[int, str]]:
    number = 0
    while True:
        try:
            text = stream.readline()
        except UnicodeDecodeError as exc:
            raise ImportFormatError(number + 1, f"the file is not UTF-8 text ({exc.reason})") from None
        if not text:
            return
        number += 1
        yield number, text
