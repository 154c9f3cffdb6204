"""Reading one JSON value at a time from a text stream, for documents too big to hold.

The scanner keeps a buffer of at most one value plus one chunk: a value is decoded
with ``json.JSONDecoder.raw_decode`` and, when the buffer ends inside it, more text is
read and the decode retried (reading at least as much as is buffered, so a big value
costs linear time). It counts lines, so every value is reported with the line it
starts on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any, TextIO, TypeVar

from ..errors import ImportFormatError
from .numbers import too_long_integer

CHUNK_SIZE = 1 << 16
T = TypeVar("T")
_SPACE = re.compile(r"[ \t\r\n]*")


class ItemError(ImportFormatError):
    """A value was read completely but is not acceptable; the scanner has moved past it."""


class TruncatedError(ImportFormatError):
    """The text ends inside a value or before the closing bracket: the file was cut short."""


class JsonScanner:
    """Pull-style JSON reading over ``stream``: punctuation with :meth:`expect`, values with :meth:`value`.

    Strict JSON: duplicate keys in an object, ``NaN``/``Infinity`` and integers too long
    for Python to convert (``sys.get_int_max_str_digits()``) make the value an
    :class:`ItemError`. Text that is not JSON raises :class:`ImportFormatError` (the
    scanner cannot find the next value after it); text ending early raises
    :class:`TruncatedError`. To tell a syntax error from a cut-off value, the scanner
    reads on to the end of the stream, so a syntax error costs memory up to the rest
    of the file.
    """

    def __init__(self, stream: TextIO, chunk_size: int = CHUNK_SIZE) -> None:
        self._stream = stream
        self._chunk_size = chunk_size
        self._buffer = ""
        self._pos = 0
        self._eof = False
        #: The 1-based line of the next unread character.
        self.line = 1
        self._problems: list[str] = []
        self._decoder = json.JSONDecoder(
            object_pairs_hook=self._object, parse_constant=self._constant, parse_int=self._integer
        )

    # The hooks note problems instead of raising, so a refused value is still read to
    # its end and the scanner can go on with the next one.
    def _object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            self._problems.append("an object has the same key twice")
        return result

    def _constant(self, name: str) -> None:
        self._problems.append(f"{name} is not JSON data")
        return None

    def _integer(self, digits: str) -> int | None:
        try:
            return int(digits)
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            self._problems.append(too_long_integer(digits))
            return None

    def _fill(self, at_least: int = 0) -> bool:
        """Append more text to the buffer; False at the end of the stream."""
        if self._eof:
            return False
        try:
            text = self._stream.read(max(self._chunk_size, at_least))
        except UnicodeDecodeError as exc:
            raise ImportFormatError(self.line, f"the file is not UTF-8 text ({exc.reason})") from None
        if not text:
            self._eof = True
            return False
        self._buffer = self._buffer[self._pos :] + text
        self._pos = 0
        return True

    def _advance(self, end: int) -> None:
        self.line += self._buffer.count("\n", self._pos, end)
        self._pos = end

    def peek(self) -> str | None:
        """The next character after whitespace (not consumed), or None at the end of the stream."""
        while True:
            self._advance(_SPACE.match(self._buffer, self._pos).end())  # type: ignore[union-attr]
            if self._pos < len(self._buffer):
                return self._buffer[self._pos]
            if not self._fill():
                return None

    def expect(self, allowed: str, what: str) -> str:
        """Consume and return the next non-space character, which must be one of ``allowed``."""
        found = self.peek()
        if found is None:
            raise TruncatedError(self.line, f"the file ends where {what} was expected")
        if found not in allowed:
            raise ImportFormatError(self.line, f"expected {what}, found {found!r}")
        self._advance(self._pos + 1)
        return found

    def value(self) -> tuple[int, Any]:
        """The next JSON value and the line it starts on.

        Raises ItemError (after consuming the value) for duplicate keys, NaN or an
        integer too long to convert,
        TruncatedError when the stream ends inside it, ImportFormatError for a
        syntax error.
        """
        if self.peek() is None:
            raise TruncatedError(self.line, "the file ends where a value was expected")
        line = self.line
        while True:
            self._problems.clear()
            try:
                value, end = self._decoder.raw_decode(self._buffer, self._pos)
            except json.JSONDecodeError as exc:
                if self._fill(len(self._buffer) - self._pos):
                    continue
                if exc.pos >= len(self._buffer.rstrip()) or exc.msg.startswith("Unterminated string"):
                    raise TruncatedError(line, f"the file ends inside a value ({exc.msg})") from None
                where = self.line + self._buffer.count("\n", self._pos, exc.pos)
                raise ImportFormatError(
                    where, f"invalid JSON ({exc.msg}, in the value starting on line {line})"
                ) from None
            except RecursionError:
                raise ImportFormatError(line, "invalid JSON (nested too deeply)") from None
            if end == len(self._buffer) and self._fill():
                continue  # a number may go on in the next chunk
            self._advance(end)
            if self._problems:
                raise ItemError(line, f"invalid JSON ({self._problems[0]})")
            return line, value


def array_items(
    scanner: JsonScanner, decode: Callable[[Any, int], T], opening: str
) -> Iterator[tuple[int, T | ImportFormatError]]:
    """Each item of the JSON array at the scanner, decoded, with the line it starts on.

    An item that is unreadable JSON of its own (ItemError) or that ``decode`` refuses
    is yielded as its ImportFormatError, so a caller may skip it; anything that breaks
    the array itself raises. ``opening`` describes the expected '[' in errors.
    """
    scanner.expect("[", opening)
    first = True
    while scanner.peek() != "]":
        if not first:
            scanner.expect(",", "',' or ']' after a conversation")
        first = False
        try:
            line, value = scanner.value()
        except ItemError as exc:
            yield exc.line, exc
            continue
        try:
            yield line, decode(value, line)
        except ImportFormatError as exc:
            yield line, exc
    scanner.expect("]", "']'")
