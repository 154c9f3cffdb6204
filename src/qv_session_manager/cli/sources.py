"""Import sources for the command line: a file or standard input, sniffed and counted as it is read.

:func:`open_source` opens the file (or takes standard input) as bytes, keeps its
first bytes for format detection (:mod:`qv_session_manager.exchange.detect`) and
hands out a text stream decoded exactly as the library reads import files (UTF-8,
byte order mark skipped, bad bytes as lone surrogates) that reports the bytes read,
so a progress bar can show how far through the file the import is.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from ..errors import StorageError
from ..exchange.detect import SNIFF_BYTES


class CountingReader(io.RawIOBase):
    """A raw binary stream giving ``prefix`` first, then the rest of ``stream``; counts the bytes given."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        super().__init__()
        self._prefix = prefix
        self._stream = stream
        #: How many bytes were read so far (the prefix included).
        self.read_so_far = 0
        #: Called with :attr:`read_so_far` after each read.
        self.on_read: Callable[[int], None] | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            count = min(len(buffer), len(self._prefix))
            buffer[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
        else:
            data = self._stream.read(len(buffer))
            count = len(data)
            buffer[:count] = data
        self.read_so_far += count
        if self.on_read is not None:
            self.on_read(self.read_so_far)
        return count


@dataclass
class Source:
    """An opened import source: its name for messages, first bytes, size (None for a pipe) and streams."""

    where: str
    head: bytes
    size: int | None
    counter: CountingReader
    _file: BinaryIO | None

    def text(self) -> TextIO:
        """The text stream to import from (decoded as the library decodes import files)."""
        return io.TextIOWrapper(io.BufferedReader(self.counter), encoding="utf-8-sig", errors="surrogateescape")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _size_of(stream: BinaryIO) -> int | None:
    """The size of a regular file behind ``stream``, or None (a pipe, a terminal)."""
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None


def _head(stream: BinaryIO) -> bytes:
    """The first bytes of ``stream``: up to the end of its first line, at most SNIFF_BYTES.

    Reads what is there (``read1``) rather than waiting for SNIFF_BYTES, so a pipe that
    delivers a few lines and then waits is imported as far as it goes.
    """
    head = b""
    while b"\n" not in head and len(head) < SNIFF_BYTES:
        chunk = stream.read1(SNIFF_BYTES - len(head)) if hasattr(stream, "read1") else stream.read(SNIFF_BYTES)
        if not chunk:
            break
        head += chunk
    return head


def open_source(source: str) -> Source:
    """Open ``source`` (a path, or ``-`` for standard input) and read its first bytes.

    Raises StorageError (an OSError) naming the file when it cannot be opened or read.
    """
    if source == "-":
        stream: BinaryIO = sys.stdin.buffer
        owned = None
        where = "standard input"
    else:
        try:
            stream = owned = open(source, "rb")  # noqa: SIM115 - closed by Source.close
        except OSError as exc:
            raise StorageError(f"cannot open {source}: {exc.strerror or exc}") from exc
        where = source
    try:
        head = _head(stream)
    except OSError as exc:
        if owned is not None:
            owned.close()
        raise StorageError(f"cannot read {where}: {exc.strerror or exc}") from exc
    return Source(where, head, _size_of(stream), CountingReader(head, stream), owned)
