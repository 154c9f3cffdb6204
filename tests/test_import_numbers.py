"""Integers too long for Python to convert are a typed import error in every import format.

Python refuses ``int()`` of more than ``sys.get_int_max_str_digits()`` digits with a bare
ValueError; an import file holding one (in metadata, in tool-call arguments, as a
ShareGPT id) must give ImportFormatError naming its line, be skipped under
``on_error="skip"``, and give one error line (exit 1) in the CLI.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from qv_session_manager import SessionManager
from qv_session_manager.cli import main
from qv_session_manager.errors import ImportFormatError

HUGE = "9" * (sys.get_int_max_str_digits() + 700)
WHEN = "2025-01-20T12:00:00+00:00"
HEADER = '{"format":"qv-session-manager","version":1}'


def _conversation(conversation_id: str, *, metadata: str = "{}", arguments: str = "{}") -> str:
    """One conversation object of the exchange format, on one line, with raw JSON spliced in."""
    tool_call = '{"name":"f","arguments":' + arguments + ',"id":null}'
    message = (
        '{"id":"m1","role":"assistant","content":"hi","created_at":"' + WHEN + '","tool_calls":[' + tool_call + "]}"
    )
    times = f'"created_at":"{WHEN}","updated_at":"{WHEN}"'
    return '{"id":"' + conversation_id + '",' + times + ',"metadata":' + metadata + ',"messages":[' + message + "]}"


def _bad_conversations() -> dict[str, str]:
    return {
        "metadata": _conversation("bad", metadata='{"n":' + HUGE + "}"),
        "negative in a list": _conversation("bad", metadata='{"n":[1,-' + HUGE + "]}"),
        "tool-call arguments": _conversation("bad", arguments='{"x":' + HUGE + "}"),
    }


def _jsonl(bad: str) -> str:
    return "\n".join([HEADER, _conversation("before"), bad, _conversation("after")]) + "\n"


def _json(bad: str) -> str:
    items = ",\n".join([_conversation("before"), bad, _conversation("after")])
    return HEADER[:-1] + ',"conversations":[\n' + items + "\n]}\n"


def _sharegpt_item(original: str) -> str:
    return '{"id":' + original + ',"conversations":[{"from":"human","value":"hello"}]}'


def _sharegpt(bad: str) -> str:
    return "[\n" + ",\n".join([_sharegpt_item('"before"'), bad, _sharegpt_item('"after"')]) + "\n]\n"


def _cases() -> list[tuple[str, str, str]]:
    """(format, case name, file text) with the bad item on line 3."""
    cases = []
    for name, bad in _bad_conversations().items():
        cases.append(("jsonl", name, _jsonl(bad)))
        cases.append(("json", name, _json(bad)))
    cases.append(("sharegpt", "id", _sharegpt(_sharegpt_item(HUGE))))
    cases.append(("sharegpt", "negative id", _sharegpt(_sharegpt_item("-" + HUGE))))
    cases.append(("sharegpt", "extra key", _sharegpt('{"id":"x","n":' + HUGE + ',"conversations":[]}')))
    return cases


CASES = _cases()
IDS = [f"{format}-{name}" for format, name, _ in CASES]


def test_the_limit_is_really_exceeded() -> None:
    with pytest.raises(ValueError, match="Exceeds the limit"):
        json.loads(HUGE)


@pytest.mark.parametrize(("format", "name", "text"), CASES, ids=IDS)
def test_a_too_long_integer_raises_import_format_error_with_its_line(format: str, name: str, text: str) -> None:
    manager = SessionManager(url="memory://")
    with pytest.raises(ImportFormatError) as caught:
        manager.import_conversations(io.StringIO(text), format=format, batch_size=1)  # type: ignore[arg-type]
    assert caught.value.line == 3
    assert "digits" in caught.value.reason and HUGE not in str(caught.value)
    assert len(manager.list_conversations()) == 1, "the conversation before the bad line is saved"


@pytest.mark.parametrize(("format", "name", "text"), CASES, ids=IDS)
def test_a_too_long_integer_is_skipped_on_request(format: str, name: str, text: str) -> None:
    manager = SessionManager(url="memory://")
    report = manager.import_conversations(io.StringIO(text), format=format, on_error="skip")  # type: ignore[arg-type]
    assert report.imported == 2
    assert [line for line, _ in report.skipped] == [3]
    assert "digits" in report.skipped[0][1]
    assert len(manager.list_conversations()) == 2


@pytest.mark.parametrize(("format", "name", "text"), CASES, ids=IDS)
def test_a_too_long_integer_is_one_error_line_in_the_cli(format: str, name: str, text: str, tmp_path: Path) -> None:
    source = tmp_path / "hostile.json"
    source.write_text(text)
    result = CliRunner().invoke(
        main, ["--url", "memory://", "import", str(source), "--format", format], catch_exceptions=False
    )
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "line 3" in lines[-1]
    assert "Traceback" not in result.output and HUGE not in result.output
    skipping = CliRunner().invoke(
        main,
        ["--url", "memory://", "import", str(source), "--format", format, "--skip-bad-lines"],
        catch_exceptions=False,
    )
    assert skipping.exit_code == 0, skipping.output
    assert "skipped line 3:" in skipping.stderr


@settings(max_examples=25)
@given(
    extra=st.integers(1, 3000),
    negative=st.booleans(),
    format=st.sampled_from(["jsonl", "json", "sharegpt"]),
    where=st.sampled_from(["metadata", "arguments", "id"]),
)
def test_any_integer_over_the_limit_anywhere_is_a_typed_error(
    extra: int, negative: bool, format: str, where: str
) -> None:
    literal = ("-" if negative else "") + "1" * (sys.get_int_max_str_digits() + extra)
    if format == "sharegpt":
        bad = _sharegpt_item(literal) if where == "id" else '{"id":"x","n":[' + literal + '],"conversations":[]}'
        text = _sharegpt(bad)
    else:
        bad = (
            _conversation("bad", metadata='{"n":{"deep":[' + literal + "]}}")
            if where != "arguments"
            else (_conversation("bad", arguments='{"x":' + literal + "}"))
        )
        text = (_jsonl if format == "jsonl" else _json)(bad)
    report = SessionManager(url="memory://").import_conversations(
        io.StringIO(text),
        format=format,
        on_error="skip",  # type: ignore[arg-type]
    )
    assert report.imported == 2 and [line for line, _ in report.skipped] == [3]


def test_ordinary_integers_still_import_exactly() -> None:
    text = _jsonl(_conversation("fits", metadata='{"n":9223372036854775807,"m":-12,"z":0}'))
    manager = SessionManager(url="memory://")
    assert manager.import_conversations(io.StringIO(text)).imported == 3
    stored = manager.store.load("fits")
    assert stored is not None and stored.conversation.metadata == {"n": 2**63 - 1, "m": -12, "z": 0}


def test_a_long_integer_within_the_limit_is_refused_by_the_records_not_the_parser() -> None:
    """Up to the limit the parser converts; the records then refuse what no engine stores."""
    limit = "7" * sys.get_int_max_str_digits()
    with pytest.raises(ImportFormatError, match="64-bit") as caught:
        text = _jsonl(_conversation("x", metadata='{"n":' + limit + "}"))
        SessionManager(url="memory://").import_conversations(io.StringIO(text))
    assert caught.value.line == 3
