"""A coverage-guided (atheris/libFuzzer) harness for the query compiler.

Each input is decoded into an arbitrary string (lone surrogates included), parsed
with :func:`qv_session_manager.query.parse` and compiled with
:func:`~qv_session_manager.backends.sqlite.matching.to_fts5`. The compiled expression must be accepted
by SQLite FTS5 and select exactly the documents the parsed query's own matcher
selects, over a few short documents indexed as the SQLite backend indexes them
(:func:`~qv_session_manager.text.index_text`, ``ascii`` tokenizer). Any exception
or difference is a crash, which libFuzzer reports with the input that caused it.

Run it directly (``python fuzz_query_atheris.py -runs=100000``; other libFuzzer
flags work too), or through the long reliability run, which starts it in a
subprocess when atheris is installed.
"""

from __future__ import annotations

import sqlite3
import sys

import atheris

with atheris.instrument_imports():
    from qv_session_manager.backends.sqlite.matching import to_fts5
    from qv_session_manager.query import parse
    from qv_session_manager.text import index_text, tokens

#: Short words, so that mutated inputs often match something.
DOCUMENTS = [
    "a b c",
    "ab abc abcd",
    "b a",
    "東京 の 天気",
    "Résumé straße",
    "x-y z_1 C++",
    "a a a b",
    "",
    "q",
]
TOKENIZED = [tokens(document) for document in DOCUMENTS]


def _index() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE docs USING fts5 (body, tokenize = 'ascii')")
    db.executemany(
        "INSERT INTO docs (rowid, body) VALUES (?, ?)", [(row, index_text(text)) for row, text in enumerate(DOCUMENTS)]
    )
    return db


DB = _index()


def check_one_input(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicode(len(data))
    query = parse(text)
    wanted = {row for row, document in enumerate(TOKENIZED) if query.matches(document)}
    if query.is_empty:
        assert not wanted, f"an empty query matched documents {wanted} for {text!r}"
        return
    expression = to_fts5(query)
    found = {row for (row,) in DB.execute("SELECT rowid FROM docs WHERE docs MATCH ?", (expression,))}
    assert found == wanted, f"FTS5 found {found}, the reference {wanted}, for {text!r} compiled to {expression!r}"


def main() -> None:
    atheris.Setup(sys.argv, check_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
