"""Telling a file's format from its name and its first bytes, for import and export.

Import looks at the content first (the name may lie: a JSON Lines export saved as
``backup.json``): a JSON Lines export starts with its header line alone, a JSON
export with ``{`` and the same header followed by ``"conversations"``, a ShareGPT
file with ``[``. Export goes by the extension. Either raises FormatDetectionError,
whose message names the ``--format`` to give, when it cannot tell or when the name
and the format asked for disagree (``.csv`` with JSON Lines).
"""

from __future__ import annotations

import json
import os

from ..errors import InvalidInputError

#: How many bytes of a file :func:`import_format` looks at.
SNIFF_BYTES = 1 << 16
IMPORT_FORMATS = ("jsonl", "json", "sharegpt")
EXPORT_FORMATS = ("jsonl", "json", "csv", "markdown")
#: The extensions of the export formats (lower case); anything else means no format.
EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".md": "markdown",
    ".markdown": "markdown",
}
_NAMES = {"jsonl": "JSON Lines", "json": "JSON", "csv": "CSV", "markdown": "Markdown", "sharegpt": "ShareGPT"}
_HEADER = "qv-session-manager"


class FormatDetectionError(InvalidInputError):
    """The format of a file cannot be told, or does not fit its name; the message says which ``--format`` to give."""


def extension_format(path: str) -> str | None:
    """The export format the extension of ``path`` names (``.csv`` -> csv), or None."""
    return EXTENSIONS.get(os.path.splitext(path)[1].lower())


def export_format(path: str | None, asked: str | None) -> str:
    """The format to write ``path`` in (None: standard output): ``asked`` if given, else its extension's, else jsonl.

    Raises FormatDetectionError when ``asked`` contradicts the extension.
    """
    named = extension_format(path) if path is not None else None
    if asked is None:
        return named or "jsonl"
    if named is not None and named != asked:
        raise FormatDetectionError(
            f"{path} is named as a {_NAMES[named]} file but --format {asked} was given: "
            f"give --format {named}, or name the file with .{_extension(asked)}"
        )
    return asked


def _extension(name: str) -> str:
    return next(extension for extension, format in EXTENSIONS.items() if format == name)[1:]


def content_format(head: bytes) -> str | None:
    """The import format ``head`` (the first bytes of a file) looks like, or None.

    ``jsonl``: the first line is the qv-session-manager header object on its own;
    ``json``: an object whose first line holds that header and ``"conversations"``
    (or starts an object over several lines: a reformatted export); ``sharegpt``: an array.
    """
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return "sharegpt"
    if not text.startswith("{"):
        return None
    first = text.split("\n", 1)[0].strip()
    try:
        value = json.loads(first)
    except ValueError:
        # The first line is not a whole object: an export written (or reformatted) as one document.
        return "json" if '"conversations"' in text or first == "{" or _HEADER in first else None
    if isinstance(value, dict) and value.get("format") == _HEADER:
        return "json" if "conversations" in value else "jsonl"
    return None


def describe_start(head: bytes) -> str:
    """The first characters of ``head``, for an error saying what a file starts with."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if not text:
        return "it is empty"
    return f"it starts with {text[:20]!r}"


def import_format(where: str, head: bytes, asked: str | None) -> str:
    """The format to read a file in: ``asked`` if given, else the one its content shows.

    ``where`` names the file in errors. Raises FormatDetectionError when ``asked`` is
    None and the content shows no known format.
    """
    if asked is not None:
        return asked
    found = content_format(head)
    view = extension_format(where)
    if found is None and view in ("csv", "markdown"):
        raise FormatDetectionError(
            f"{where} is named as a {_NAMES[view]} file: CSV and Markdown exports are one-way views and cannot be "
            "imported; import a JSON Lines or JSON export instead (qv-sessions export backup.jsonl)"
        )
    if found is None:
        raise FormatDetectionError(
            f"cannot tell the format of {where} ({describe_start(head)}): "
            "give --format jsonl, --format json or --format sharegpt"
        )
    return found


def hint(head: bytes, asked: str) -> str:
    """A hint to add to an import error when the content looks like another format than ``asked`` ('' if not)."""
    found = content_format(head)
    if found is None or found == asked:
        return ""
    return f" (it looks like a {_NAMES[found]} file: give --format {found})"
