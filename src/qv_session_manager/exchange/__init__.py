"""Export and import of whole stores: lossless JSONL/JSON, CSV and Markdown views, ShareGPT input.

Everything works on records (:class:`~qv_session_manager.records.StoredConversation`),
one conversation at a time, so memory does not grow with the size of the store or
the file. The format is specified in docs/export-format.md.

- :func:`write_jsonl` / :func:`read_jsonl`: the qv-session-manager JSONL format, lossless;
- :func:`write_json` / :func:`read_json`: the same as one JSON document;
- :func:`write_csv`, :func:`write_markdown`: one-way views;
- :func:`read_sharegpt`: ShareGPT dumps, ids derived so re-imports are idempotent;
- :func:`export_to` / :func:`import_into`: the above with paths or streams, batches,
  error handling and the rule for ids already taken (:mod:`qv_session_manager.conflicts`), as used by ``SessionManager.export_conversations`` / ``import_conversations``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, TextIO

from ..conflicts import ON_CONFLICT_CHOICES, OnConflict, check_on_conflict
from ..errors import ImportFormatError, InvalidInputError
from ..protocol import ConversationStore
from ..records import StoredConversation
from .csv_view import CSV_COLUMNS, FORMULA_TRIGGERS, CsvFormulas, check_formulas, write_csv
from .document import json_entries, read_json, write_json
from .files import reading, writing
from .importing import ImportReport, OnError, import_entries
from .jsonl import Entry, jsonl_entries, read_jsonl, write_jsonl
from .markdown import write_markdown
from .schema import FORMAT_NAME, FORMAT_VERSION
from .sharegpt import SHAREGPT_EPOCH, SHAREGPT_NAMESPACE, read_sharegpt, sharegpt_entries

ExportFormat = Literal["jsonl", "json", "csv", "markdown"]
ImportFormat = Literal["jsonl", "json", "sharegpt"]

_WRITERS: dict[str, Callable[[Iterable[StoredConversation], TextIO], int]] = {
    "jsonl": write_jsonl,
    "json": write_json,
    "csv": write_csv,
    "markdown": write_markdown,
}
_READERS: dict[str, Callable[[TextIO], Iterator[Entry]]] = {
    "jsonl": jsonl_entries,
    "json": json_entries,
    "sharegpt": sharegpt_entries,
}


def export_to(
    conversations: Iterable[StoredConversation],
    destination: str | os.PathLike[str] | TextIO,
    *,
    format: ExportFormat = "jsonl",
    progress: Callable[[int], None] | None = None,
    csv_formulas: CsvFormulas = "escape",
) -> int:
    """Write ``conversations`` in ``format`` to a stream (as is) or a path (atomically); return how many.

    ``progress`` is called with the running count after each conversation is written.
    ``csv_formulas`` is :func:`write_csv`'s ``formulas`` (``"escape"``: a ``'`` before
    cells that start with a formula trigger; ``"raw"``: cells as stored); it applies
    to ``format="csv"`` only. Raises InvalidInputError for an unknown format, a bad
    ``csv_formulas`` or ``"raw"`` with another format (before creating anything).
    """
    writer = _WRITERS.get(format)
    if writer is None:
        raise InvalidInputError(f"export format must be one of {sorted(_WRITERS)}, not {format!r}")
    check_formulas(csv_formulas)
    if format == "csv":
        writer = functools.partial(write_csv, formulas=csv_formulas)
    elif csv_formulas != "escape":
        raise InvalidInputError(f"csv_formulas applies to format='csv' only, not to {format!r}")
    if progress is not None:
        conversations = _counted(conversations, progress)
    with writing(destination) as stream:
        return writer(conversations, stream)


def import_into(
    store: ConversationStore,
    source: str | os.PathLike[str] | TextIO,
    *,
    format: ImportFormat = "jsonl",
    batch_size: int = 500,
    message_limit: int = 20_000,
    on_error: OnError = "raise",
    on_conflict: OnConflict = "skip",
    keep_empty: bool | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Read ``source`` in ``format`` and save its conversations into ``store`` (see :func:`import_entries`).

    ``keep_empty=None`` means the format's own rule: a conversation without
    messages in a ``jsonl``/``json`` export is a real record and is stored (the
    round trip stays lossless); a ShareGPT item without turns is no conversation
    and is skipped. Either way it is counted in ``ImportReport.empty``. Arguments
    are checked before ``source`` is opened.
    """
    reader = _READERS.get(format)
    if reader is None:
        raise InvalidInputError(f"import format must be one of {sorted(_READERS)}, not {format!r}")
    check_on_conflict(on_conflict)
    if keep_empty is not None and not isinstance(keep_empty, bool):
        raise InvalidInputError(f"keep_empty must be True, False or None, not {keep_empty!r}")
    keep = format != "sharegpt" if keep_empty is None else keep_empty
    with reading(source) as stream:
        return import_entries(
            store,
            reader(stream),
            batch_size=batch_size,
            message_limit=message_limit,
            on_error=on_error,
            on_conflict=on_conflict,
            keep_empty=keep,
            progress=progress,
        )


def _counted(items: Iterable[StoredConversation], progress: Callable[[int], None]) -> Iterator[StoredConversation]:
    for count, item in enumerate(items, 1):
        yield item
        progress(count)  # runs when the writer asks for the next one: this one is written


__all__ = [
    "CSV_COLUMNS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FORMULA_TRIGGERS",
    "ON_CONFLICT_CHOICES",
    "SHAREGPT_EPOCH",
    "SHAREGPT_NAMESPACE",
    "CsvFormulas",
    "ExportFormat",
    "ImportFormat",
    "ImportFormatError",
    "ImportReport",
    "OnConflict",
    "OnError",
    "export_to",
    "import_entries",
    "import_into",
    "read_json",
    "read_jsonl",
    "read_sharegpt",
    "write_csv",
    "write_json",
    "write_jsonl",
    "write_markdown",
]
