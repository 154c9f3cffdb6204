"""Export from memory, import into PostgreSQL: every load identical (skipped without a server)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from qv_session_manager import SessionManager
from qv_session_manager.errors import ImportFormatError
from qv_session_manager.records import ConversationRecord, MessageRecord, StoredConversation, ToolCallRecord
from qv_session_manager.transfer import iter_stored

NAIVE = datetime(2025, 1, 20, 12, 0, 0, 123456)
AWARE = datetime(2025, 1, 21, 9, 30, 0, 1, tzinfo=timezone(timedelta(hours=-9, minutes=-30)))


def conversations() -> list[StoredConversation]:
    return [
        StoredConversation(
            ConversationRecord(
                "c-naive",
                NAIVE,
                NAIVE,
                title="t",
                model_name="llama3",
                metadata={"nested": {"a": [1, 1.0, None, True]}, "n": 2**53},
            ),
            (
                MessageRecord("u", "user", "NUL \x00 and 東京", NAIVE, images=("aGk=", b"\x00\xff")),
                MessageRecord("a", "assistant", "", NAIVE, tool_calls=(ToolCallRecord("f", {"x": [1]}, "call"),)),
                MessageRecord("t", "tool", "42", NAIVE, tool_call_id="call", metadata={"k": "v"}),
            ),
        ),
        StoredConversation(ConversationRecord("c-aware", AWARE, AWARE), (MessageRecord("m", "user", "hi", AWARE),)),
        StoredConversation(ConversationRecord("c-empty", NAIVE, NAIVE, title=""), ()),
    ]


@pytest.mark.parametrize("format", ["jsonl", "json"])
def test_memory_export_imports_identically_into_postgres(make_store: Callable[..., object], format: str) -> None:
    with SessionManager(url="memory://") as source:
        for stored in conversations():
            source.store.save(stored.conversation, stored.messages)
        exported = io.StringIO()
        assert source.export_conversations(exported, format=format) == 3  # type: ignore[arg-type]
        expected = list(iter_stored(source.store))
    target = SessionManager(store=make_store())  # type: ignore[arg-type]
    report = target.import_conversations(io.StringIO(exported.getvalue()), format=format, batch_size=2)  # type: ignore[arg-type]
    assert report.imported == 3 and report.skipped == []
    loaded = list(iter_stored(target.store))
    assert loaded == expected and repr(loaded) == repr(expected), "ids, order, tool calls, images, offsets"
    again = io.StringIO()
    target.export_conversations(again, format=format)  # type: ignore[arg-type]
    assert again.getvalue() == exported.getvalue()


def test_a_bad_line_keeps_earlier_conversations_in_postgres(make_store: Callable[..., object]) -> None:
    good = io.StringIO()
    with SessionManager(url="memory://") as source:
        stored = conversations()[0]
        source.store.save(stored.conversation, stored.messages)
        source.export_conversations(good)
    text = good.getvalue() + '{"id": "bad", "messages": 5}\n'
    target = SessionManager(store=make_store())  # type: ignore[arg-type]
    with pytest.raises(ImportFormatError) as caught:
        target.import_conversations(io.StringIO(text))
    assert caught.value.line == 3
    assert [s.conversation.id for s in iter_stored(target.store)] == ["c-naive"]


def test_csv_export_from_postgres_neutralises_formulas_unless_raw(make_store: Callable[..., object]) -> None:
    hostile = StoredConversation(
        ConversationRecord("=cmd|' /C calc'!A0", NAIVE, NAIVE, title="+SUM(1)"),
        (
            MessageRecord("@m", "user", '=HYPERLINK("http://e.vil")', NAIVE),
            MessageRecord("-m", "assistant", "\tx", NAIVE, tool_calls=(ToolCallRecord("f", {"a": "=1"}, "\r=c"),)),
            MessageRecord("t", "tool", "fine", NAIVE, tool_call_id="\r=c"),
        ),
    )
    with SessionManager(store=make_store()) as manager:  # type: ignore[arg-type]
        manager.store.save(hostile.conversation, hostile.messages)
        escaped, raw = io.StringIO(), io.StringIO()
        manager.export_conversations(escaped, format="csv")
        manager.export_conversations(raw, format="csv", csv_formulas="raw")
    escaped_rows = list(csv.reader(io.StringIO(escaped.getvalue(), newline="")))[1:]
    raw_rows = list(csv.reader(io.StringIO(raw.getvalue(), newline="")))[1:]
    assert [row[0] for row in raw_rows] == ["=cmd|' /C calc'!A0"] * 3
    for escaped_row, raw_row in zip(escaped_rows, raw_rows, strict=True):
        for cell, original in zip(escaped_row, raw_row, strict=True):
            assert cell == ("'" + original if original[:1] in ("=", "+", "-", "@", "\t", "\r") else original)
    assert {row[2] for row in escaped_rows} == {"'@m", "'-m", "t"}
    assert escaped_rows[1][6] == "'\tx" and escaped_rows[2][8] == "'\r=c" and escaped_rows[0][1] == "'+SUM(1)"
