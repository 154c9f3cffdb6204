"""Output formats for rows of data: ``--format table|json|jsonl|csv|tsv|markdown`` and ``-c/--columns``.

Contract:

- ``table`` is for people: a rich table, box-drawn only when standard output is a
  terminal (columns aligned with spaces otherwise). It is the default on a
  terminal; piped output defaults to ``tsv``.
- ``json`` (one indented array) and ``jsonl`` (one object a line) keep values exact,
  with control characters written as JSON escapes (:func:`~qv_session_manager.safe_text.json_safe`).
- ``csv``, ``tsv`` and ``markdown`` put each value on one line (newlines and tabs
  become spaces), show control characters escaped
  (:func:`~qv_session_manager.safe_text.terminal_safe`) and give a leading ``'`` to
  a cell that a spreadsheet would run as a formula
  (:func:`~qv_session_manager.exchange.csv_view.neutralized`); markdown escapes ``|``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from ..exchange.csv_view import neutralized
from ..safe_text import json_safe, terminal_safe

__all__ = [
    "FORMATS",
    "cell_text",
    "columns_option",
    "format_option",
    "json_lines",
    "json_text",
    "pick_format",
    "render_rows",
    "split_columns",
]

FORMATS = ("table", "json", "jsonl", "csv", "tsv", "markdown")
F = TypeVar("F", bound=Callable[..., Any])


def format_option(command: F) -> F:
    """``--format``, plus ``--json`` as its short form (kept from earlier versions)."""
    command = click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default=None,
        help="Output format (default: table on a terminal, tsv when piped).",
    )(command)
    return click.option("--json", "as_json", is_flag=True, help="Same as --format json.")(command)


def columns_option(available: Sequence[str], default: Sequence[str]) -> Callable[[F], F]:
    """``-c/--columns a,b``: which columns to print, of ``available`` (repeatable; commas or spaces)."""
    return click.option(
        "-c",
        "--columns",
        "columns",
        multiple=True,
        metavar="COLS",
        help=f"Columns to print, comma-separated, of: {', '.join(available)} (default: {','.join(default)}).",
    )


def split_columns(given: tuple[str, ...], available: Sequence[str], default: Sequence[str]) -> list[str]:
    """The columns named in ``given`` (``"a,b"`` and repeated options both work), else ``default``.

    An unknown name is a usage error (exit code 2) that lists the available ones.
    """
    names = [name.strip() for option in given for name in option.replace(" ", ",").split(",") if name.strip()]
    unknown = [name for name in names if name not in available]
    if unknown:
        raise click.BadParameter(
            f"unknown column {terminal_safe(unknown[0])!r}; choose from {', '.join(available)}",
            param_hint="'-c/--columns'",
        )
    return names or list(default)


def pick_format(output_format: str | None, as_json: bool) -> str:
    """The format asked for: ``--format``, else json for ``--json``, else table on a terminal, tsv when piped."""
    if output_format is not None and as_json and output_format != "json":
        raise click.UsageError("--json and --format " + output_format + " contradict each other")
    if as_json:
        return "json"
    if output_format is not None:
        return output_format
    return "table" if sys.stdout.isatty() else "tsv"


def cell_text(value: object) -> str:
    """One value as one line of text: None is empty, lists and dicts are JSON, newlines and tabs are spaces."""
    if value is None:
        text = ""
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return terminal_safe(" ".join(text.replace("\t", " ").splitlines()) if text else "")


def _json(value: object, indent: int | None) -> str:
    return json_safe(json.dumps(value, ensure_ascii=False, indent=indent, default=str))


def json_text(value: object) -> str:
    """``value`` as indented JSON and a newline, control characters escaped (the data unchanged)."""
    return _json(value, 2) + "\n"


def json_lines(rows: Sequence[object]) -> str:
    """One compact JSON document a line, as :func:`json_text` escapes them."""
    return "".join(_json(row, None) + "\n" for row in rows)


def render_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], output_format: str) -> str:
    """``rows`` (only ``columns``, in that order) as text in a machine format; ends with a newline.

    ``output_format`` is one of json, jsonl, csv, tsv, markdown (``table`` is drawn by
    the caller with rich). Empty ``rows`` give ``[]``, nothing, or just the header.
    """
    picked = [{column: row.get(column) for column in columns} for row in rows]
    if output_format == "json":
        return json_text(picked)
    if output_format == "jsonl":
        return json_lines(picked)
    cells = [[neutralized(cell_text(row[column])) for column in columns] for row in picked]
    if output_format == "markdown":

        def line(values: Sequence[str]) -> str:
            return "| " + " | ".join(value.replace("\\", "\\\\").replace("|", "\\|") for value in values) + " |\n"

        return line(columns) + line(["---"] * len(columns)) + "".join(line(values) for values in cells)
    if output_format == "tsv":  # no cell holds a tab or a newline: nothing to quote
        return "".join("\t".join(values) + "\n" for values in [list(columns), *cells])
    if output_format != "csv":
        raise ValueError(f"no text form for format {output_format!r}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(cells)
    return buffer.getvalue()
