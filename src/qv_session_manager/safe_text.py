"""Untrusted text made safe to show on a terminal.

Stored text was written by a model, pasted by a user or imported from someone
else's file. Printed raw, an escape sequence in it can clear the screen, set the
window title, hide or fake output; a bidi override can make text read differently
from what it holds. :func:`terminal_safe` turns every such character into a visible
escape, so it is shown and never interpreted:

- C0 controls other than newline and tab, DEL and the C1 controls (U+0080-U+009F):
  ``\\xNN`` (``\\r`` for a carriage return);
- the bidi embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069:
  ``\\uNNNN``;
- lone surrogates (from JSON ``"\\ud800"``), which no terminal encoding can print:
  ``\\uNNNN``.

Newlines and tabs stay, so transcripts keep their shape; every other character is
kept as it is. The result is for reading, not a reversible encoding: an escaped
ESC and the four typed characters ``\\x1b`` look the same (``--json`` output keeps
exact data, see :func:`json_safe`).
"""

from __future__ import annotations

import re
from typing import TextIO

__all__ = ["UNSAFE", "TerminalWriter", "json_safe", "terminal_safe"]

#: One character a terminal may interpret or that can fake the order of text.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x0D:
        return "\\r"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def terminal_safe(text: str) -> str:
    """``text`` with every :data:`UNSAFE` character replaced by a visible escape.

    Contract: the result holds no control character other than ``\\n`` and ``\\t``,
    no bidi control and no surrogate; text without such characters is returned
    unchanged.
    """
    return UNSAFE.sub(_visible, text)


def json_safe(document: str) -> str:
    """A JSON document with every :data:`UNSAFE` character written as a ``\\uNNNN`` escape.

    ``json.dumps`` already escapes C0 controls; with ``ensure_ascii=False`` it leaves
    DEL, C1, bidi controls and lone surrogates raw. Outside strings a JSON document
    holds only ASCII structure, so every match is inside a string, and the escaped
    document parses to exactly the same value.
    """
    return UNSAFE.sub(_json_escape, document)


class TerminalWriter:
    """A write-only text stream that passes everything through :func:`terminal_safe`.

    For an export written to a terminal: CRLF line ends (CSV) become LF first, every
    other control character is shown escaped. The data is then for reading only;
    write to a file or a pipe for the exact bytes.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(terminal_safe(text.replace("\r\n", "\n")))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()
