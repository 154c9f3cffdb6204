"""CSV exports neutralise spreadsheet formulas (OWASP: a leading ' on trigger cells); raw on request."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from qv_session_manager import InvalidInputError, SessionManager
from qv_session_manager.aio import AsyncSessionManager
from qv_session_manager.cli import main
from qv_session_manager.exchange import CSV_COLUMNS, FORMULA_TRIGGERS, write_csv
from qv_session_manager.exchange.csv_view import neutralized
from qv_session_manager.transfer import iter_stored

from hostile import ATTACK, FORMULAS, hostile_conversation

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def raw_rows(manager: SessionManager) -> list[list[str]]:
    """The cells the CSV view holds for the store, written out independently of csv_view."""
    rows = []
    for stored in iter_stored(manager.store):
        for position, message in enumerate(stored.messages):
            calls = ""
            if message.tool_calls:
                calls = json.dumps(
                    [{"name": call.name, "arguments": call.arguments, "id": call.id} for call in message.tool_calls],
                    ensure_ascii=False,
                    separators=(",", ":"),
                )
            rows.append(
                [
                    stored.conversation.id,
                    stored.conversation.title or "",
                    message.id,
                    str(position),
                    message.role,
                    message.created_at.isoformat(),
                    message.content,
                    calls,
                    message.tool_call_id or "",
                ]
            )
    return rows


def read_file(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as stream:  # keep a CR inside a cell as it is
        return stream.read()


def read_csv(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    return rows[1:]


@pytest.fixture(params=["memory", "sqlite", "jsonl"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionManager]:
    """A store of each kind with one hostile conversation per formula trigger."""
    urls = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path / 'chats.db'}",
        "jsonl": f"jsonl:///{tmp_path / 'chats'}",
    }
    with SessionManager(url=urls[request.param]) as opened:
        for number, formula in enumerate(FORMULAS):
            opened.save_conversation(hostile_conversation(f"{formula}conversation-{number}", formula))
        yield opened


def test_the_triggers_are_owasps() -> None:
    assert FORMULA_TRIGGERS == TRIGGERS


def assert_neutralised(written: list[list[str]], raw: list[list[str]]) -> int:
    """Every written cell is the raw one, with a ' in front exactly when it starts with a trigger."""
    assert len(written) == len(raw)
    guarded = 0
    for written_row, raw_row in zip(written, raw):  # both in the order of iter_stored
        for cell, original in zip(written_row, raw_row, strict=True):
            if original.startswith(TRIGGERS):
                assert cell == "'" + original, (cell, original)
                guarded += 1
            else:
                assert cell == original
    return guarded


def test_every_trigger_cell_gets_a_quote_in_front(manager: SessionManager, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    assert manager.export_conversations(target, format="csv") == len(FORMULAS)
    written = read_csv(read_file(target))
    raw = raw_rows(manager)
    guarded = assert_neutralised(written, raw)
    # Ids, titles, message ids, content and tool-call ids start with each trigger.
    assert guarded >= 5 * len(FORMULAS)
    assert not any(cell.startswith(TRIGGERS) for row in written for cell in row)


def test_raw_keeps_every_cell_as_stored(manager: SessionManager, tmp_path: Path) -> None:
    target = tmp_path / "raw.csv"
    manager.export_conversations(target, format="csv", csv_formulas="raw")
    written = read_csv(read_file(target))
    assert sorted(written) == sorted(raw_rows(manager))
    assert any(cell.startswith("=HYPERLINK") for row in written for cell in row)


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
def test_the_cli_neutralises_unless_csv_raw(kind: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chats.db'}" if kind == "sqlite" else f"jsonl:///{tmp_path / 'chats'}"
    with SessionManager(url=url) as manager:
        for number, formula in enumerate(FORMULAS):
            manager.save_conversation(hostile_conversation(f"{formula}conversation-{number}", formula))
        raw_cells = raw_rows(manager)
    runner = CliRunner()
    escaped = runner.invoke(main, ["--url", url, "export", str(tmp_path / "cli.csv"), "--format", "csv"])
    assert escaped.exit_code == 0, escaped.output
    assert assert_neutralised(read_csv(read_file(tmp_path / "cli.csv")), raw_cells) >= 5 * len(FORMULAS)
    raw = runner.invoke(main, ["--url", url, "export", "-", "--format", "csv", "--csv-raw"])
    assert raw.exit_code == 0, raw.output
    assert sorted(read_csv(raw.stdout)) == sorted(raw_cells)


def test_csv_raw_with_another_format_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--url", "memory://", "export", "-", "--format", "jsonl", "--csv-raw"])
    assert result.exit_code == 2 and "--csv-raw applies to --format csv only" in result.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "csv", "csv_formulas": "off"}, "csv_formulas must be 'escape' or 'raw'"),
        ({"format": "jsonl", "csv_formulas": "raw"}, "csv_formulas applies to format='csv' only"),
    ],
)
def test_bad_csv_formulas_is_refused_before_anything_is_written(
    options: dict[str, str], message: str, tmp_path: Path
) -> None:
    with SessionManager(url="memory://") as manager:
        manager.save_conversation(hostile_conversation())
        with pytest.raises(InvalidInputError, match=message):
            manager.export_conversations(tmp_path / "x", **options)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_write_csv_takes_the_option_too() -> None:
    with SessionManager(url="memory://") as manager:
        manager.save_conversation(hostile_conversation())
        stored = list(iter_stored(manager.store))
    escaped, raw = io.StringIO(), io.StringIO()
    write_csv(stored, escaped)
    write_csv(stored, raw, formulas="raw")
    assert "'=HYPERLINK" in escaped.getvalue() and "'=HYPERLINK" not in raw.getvalue()
    assert ATTACK in raw.getvalue()  # a data format: control characters are kept, for a program to read
    with pytest.raises(InvalidInputError):
        write_csv(stored, io.StringIO(), formulas="none")  # type: ignore[arg-type]


def test_the_async_manager_passes_the_option(tmp_path: Path) -> None:
    async def export(option: str) -> str:
        async with AsyncSessionManager(url="memory://") as manager:
            await manager.save_conversation(hostile_conversation())
            await manager.export_conversations(tmp_path / f"{option}.csv", format="csv", csv_formulas=option)  # type: ignore[arg-type]
        return read_file(tmp_path / f"{option}.csv")

    assert "'=HYPERLINK" in asyncio.run(export("escape")) and "'=HYPERLINK" not in asyncio.run(export("raw"))


@given(st.text())
def test_a_neutralised_cell_never_starts_with_a_trigger_and_keeps_its_text(cell: str) -> None:
    guarded = neutralized(cell)
    assert not guarded.startswith(TRIGGERS)
    assert guarded == (("'" + cell) if cell.startswith(TRIGGERS) else cell)
