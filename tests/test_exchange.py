"""Export and import: lossless JSONL/JSON round trips, error lines, ShareGPT, views, bounded memory."""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import tracemalloc
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qv_session_manager import SessionManager
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.errors import ImportFormatError, InvalidInputError, StorageError
from qv_session_manager.exchange import (
    CSV_COLUMNS,
    SHAREGPT_EPOCH,
    SHAREGPT_NAMESPACE,
    ImportReport,
    import_into,
    read_json,
    read_jsonl,
    read_sharegpt,
    write_csv,
    write_json,
    write_jsonl,
    write_markdown,
)
from qv_session_manager.exchange.sharegpt import sharegpt_entries
from qv_session_manager.protocol import Capability, ConversationFilter, ConversationStore, SaveItem
from qv_session_manager.records import ConversationRecord, MessageRecord, StoredConversation, ToolCallRecord
from qv_session_manager.testing import strategies as gen
from qv_session_manager.transfer import iter_stored

UTC = timezone.utc
PLUS2 = timezone(timedelta(hours=2))
NAIVE = datetime(2025, 1, 20, 12, 0, 0, 123456)


# -- helpers ------------------------------------------------------------------


def same(got: Sequence[StoredConversation], want: Sequence[StoredConversation]) -> bool:
    """Equal records, and equal reprs: == alone would accept another offset or 1 for 1.0."""
    return list(got) == list(want) and repr(list(got)) == repr(list(want))


class Chunked(io.StringIO):
    """A stream that hands out at most ``size`` characters per read: values cross chunk edges."""

    def __init__(self, text: str, size: int = 5) -> None:
        super().__init__(text)
        self.size = size

    def read(self, n: int | None = -1) -> str:
        return super().read(self.size)


def jsonl_text(*lines: str, header: str = '{"format":"qv-session-manager","version":1}') -> str:
    return "\n".join((header, *lines)) + "\n"


def line_of(stored: StoredConversation) -> str:
    buffer = io.StringIO()
    write_jsonl([stored], buffer)
    return buffer.getvalue().splitlines()[1]


def rich_conversations() -> list[StoredConversation]:
    """Everything a record can carry: tool calls, both image kinds, naive and aware times, nested metadata."""
    first = StoredConversation(
        ConversationRecord(
            id=str(uuid.UUID(int=1)),
            created_at=NAIVE,
            updated_at=NAIVE + timedelta(minutes=5),
            title="Weather\nin Berlin",
            model_name="llama3",
            metadata={"topic": "weather", "nested": {"list": [1, 1.0, -0.0, None, True, "ü"]}, "n": 2**53},
        ),
        (
            MessageRecord("m-system", "system", "Be brief.", NAIVE),
            MessageRecord(
                "m-user", "user", "Weather? \x00 東京 \u2028 end", NAIVE, images=("aGVsbG8=", b"\x00\xffpng")
            ),
            MessageRecord(
                "m-call",
                "assistant",
                "",
                NAIVE + timedelta(seconds=1),
                tool_calls=(
                    ToolCallRecord("get_weather", {"city": "Berlin", "days": [1, 2]}, "call-1"),
                    ToolCallRecord("noop", {}, None),
                ),
            ),
            MessageRecord("m-tool", "tool", '{"temp": 3}', NAIVE + timedelta(seconds=2), tool_call_id="call-1"),
            MessageRecord(
                "m-answer",
                "assistant",
                "3 °C, cloudy.",
                NAIVE + timedelta(seconds=2),
                metadata={"tokens": 12},
                images=(),
            ),
        ),
    )
    aware = datetime(2025, 1, 21, 9, 30, 0, 1, tzinfo=PLUS2)
    second = StoredConversation(
        ConversationRecord(id="not-a-uuid", created_at=aware, updated_at=aware.astimezone(UTC)),
        (MessageRecord("only", "user", "hi", aware),),
    )
    empty = StoredConversation(
        ConversationRecord(
            id="empty", created_at=NAIVE - timedelta(days=1), updated_at=NAIVE - timedelta(days=1), title=""
        ),
        (),
    )
    return [first, second, empty]


@st.composite
def stored_lists(draw: st.DrawFn) -> list[StoredConversation]:
    ids = draw(st.lists(gen.ids, max_size=4, unique=True))
    return [StoredConversation(draw(gen.conversations(id=i)), tuple(draw(gen.message_lists()))) for i in ids]


def all_stored(store: ConversationStore) -> list[StoredConversation]:
    return sorted(iter_stored(store), key=lambda stored: stored.conversation.id)


# -- lossless round trips -------------------------------------------------------


@given(stored_lists())
def test_jsonl_round_trip_is_lossless(conversations: list[StoredConversation]) -> None:
    buffer = io.StringIO()
    assert write_jsonl(conversations, buffer) == len(conversations)
    buffer.seek(0)
    read = list(read_jsonl(buffer))
    assert [line for line, _ in read] == list(range(2, 2 + len(conversations)))
    assert same([stored for _, stored in read], conversations)


@given(stored_lists(), st.integers(1, 50))
def test_json_round_trip_is_lossless_across_chunk_edges(conversations: list[StoredConversation], size: int) -> None:
    buffer = io.StringIO()
    assert write_json(conversations, buffer) == len(conversations)
    text = buffer.getvalue()
    assert json.loads(text)["version"] == 1, "the document is plain JSON"
    read = list(read_json(Chunked(text, size)))
    assert [line for line, _ in read] == list(range(2, 2 + len(conversations)))
    assert same([stored for _, stored in read], conversations)


def test_rich_conversations_round_trip_in_both_formats() -> None:
    conversations = rich_conversations()
    for write, read in ((write_jsonl, read_jsonl), (write_json, read_json)):
        buffer = io.StringIO()
        write(conversations, buffer)
        buffer.seek(0)
        assert same([stored for _, stored in read(buffer)], conversations)  # type: ignore[operator]


def test_jsonl_lines_follow_the_documented_shape() -> None:
    buffer = io.StringIO()
    write_jsonl(rich_conversations()[:1], buffer)
    header, line = buffer.getvalue().splitlines()  # no Unicode line break stays raw
    assert json.loads(header) == {"format": "qv-session-manager", "version": 1}
    value = json.loads(line)
    assert list(value) == ["id", "title", "model_name", "created_at", "updated_at", "metadata", "messages"]
    assert value["created_at"] == NAIVE.isoformat()
    user = value["messages"][1]
    assert list(user) == ["id", "role", "content", "created_at", "metadata", "images", "tool_calls", "tool_call_id"]
    assert user["images"] == ["aGVsbG8=", {"$bytes": "AP9wbmc="}]
    assert value["messages"][2]["tool_calls"][0] == {
        "name": "get_weather",
        "arguments": {"city": "Berlin", "days": [1, 2]},
        "id": "call-1",
    }


def test_optional_keys_may_be_left_out() -> None:
    line = '{"id":"c","created_at":"2025-01-20T12:00:00","updated_at":"2025-01-20T12:00:00+02:00","messages":[{"id":"m","role":"user","content":"x","created_at":"2025-01-20T12:00:00"}]}'
    [(_, stored)] = list(read_jsonl(io.StringIO(jsonl_text(line))))
    assert stored.conversation.title is None and stored.conversation.metadata == {}
    assert stored.conversation.updated_at.utcoffset() == timedelta(hours=2)
    assert stored.messages[0].images is None and stored.messages[0].tool_calls is None


def _stores(tmp_path: Path) -> Iterator[tuple[str, ConversationStore]]:
    yield "sqlite", SQLiteStore(tmp_path / "target.db")
    yield "memory", MemoryStore()
    jsonl = pytest.importorskip("qv_session_manager_jsonl")
    yield "jsonl", jsonl.JsonlStore(tmp_path / "jsonl-store")


@pytest.mark.parametrize("format", ["jsonl", "json"])
def test_export_from_memory_imports_identically_into_every_backend(tmp_path: Path, format: str) -> None:
    conversations = rich_conversations()
    with SessionManager(url="memory://") as source:
        for stored in conversations:
            source.store.save(stored.conversation, stored.messages)
        path = tmp_path / f"export.{format}"
        assert source.export_conversations(path, format=format) == 3  # type: ignore[arg-type]
        expected = all_stored(source.store)
    assert same(expected, sorted(conversations, key=lambda s: s.conversation.id))
    for name, store in _stores(tmp_path):
        with SessionManager(store=store) as target:
            report = target.import_conversations(path, format=format)  # type: ignore[arg-type]
            assert report == ImportReport(3, [], empty=1), "the conversation without messages is stored"
            assert same(all_stored(target.store), expected), name
            again = io.StringIO()
            target.export_conversations(again, format=format)  # type: ignore[arg-type]
            assert again.getvalue() == path.read_text(encoding="utf-8"), f"{name}: a re-export is byte-identical"


# -- bad lines ------------------------------------------------------------------

GOOD_BEFORE = StoredConversation(ConversationRecord("before", NAIVE, NAIVE), (MessageRecord("m", "user", "a", NAIVE),))
GOOD_AFTER = StoredConversation(ConversationRecord("after", NAIVE, NAIVE), (MessageRecord("m", "user", "b", NAIVE),))
BAD_MESSAGE = '{"id":"m1","role":"user","content":"x","created_at":"2025-01-20T12:00:00"}'


def bad(**changes: Any) -> str:
    conversation = {
        "id": "bad",
        "title": None,
        "model_name": None,
        "created_at": "2025-01-20T12:00:00",
        "updated_at": "2025-01-20T12:00:00",
        "metadata": {},
        "messages": [json.loads(BAD_MESSAGE)],
    }
    conversation.update(changes)
    return json.dumps(conversation)


BAD_LINES = {
    "invalid JSON": '{"id": "bad", "messages": [',
    "wrong type": bad(title=5),
    "wrong message type": bad(messages=[{**json.loads(BAD_MESSAGE), "content": ["x"]}]),
    "lone surrogate": bad().replace('"content": "x"', '"content": "a\\ud800b"'),
    "duplicate message ids": bad(messages=[json.loads(BAD_MESSAGE), json.loads(BAD_MESSAGE)]),
    "unknown key": bad(extra=1),
    "unknown message key": bad(messages=[{**json.loads(BAD_MESSAGE), "name": "x"}]),
    "missing key": bad().replace('"created_at": "2025-01-20T12:00:00", "updated', '"updated'),
    "duplicate JSON key": bad().replace('"title": null', '"title": null, "title": "x"'),
    "NaN": bad().replace('"metadata": {}', '"metadata": {"x": NaN}'),
    "bad timestamp": bad(created_at="yesterday"),
    "bad role": bad(messages=[{**json.loads(BAD_MESSAGE), "role": "robot"}]),
    "bad base64": bad(messages=[{**json.loads(BAD_MESSAGE), "images": [{"$bytes": "!!"}]}]),
    "bad tool call": bad(messages=[{**json.loads(BAD_MESSAGE), "tool_calls": [{"name": "f"}]}]),
    "not an object": "[1, 2]",
    "extra data": bad() + " {}",
}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_a_bad_line_raises_with_its_number_and_keeps_what_came_before(kind: str) -> None:
    assert kind in BAD_LINES
    text = jsonl_text(line_of(GOOD_BEFORE), "", BAD_LINES[kind], line_of(GOOD_AFTER))
    with pytest.raises(ImportFormatError, match=r"^line 4: ") as caught:
        list(read_jsonl(io.StringIO(text)))
    assert caught.value.line == 4 and isinstance(caught.value, InvalidInputError)
    store = MemoryStore()
    with pytest.raises(ImportFormatError) as caught:
        import_into(store, io.StringIO(text), batch_size=10)
    assert caught.value.line == 4
    assert [s.conversation.id for s in all_stored(store)] == ["before"], "before saved, bad and after not"


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_skip_reports_bad_lines_and_imports_the_rest(kind: str) -> None:
    text = jsonl_text(line_of(GOOD_BEFORE), BAD_LINES[kind], BAD_LINES["wrong type"], line_of(GOOD_AFTER))
    store = MemoryStore()
    report = SessionManager(store=store).import_conversations(io.StringIO(text), on_error="skip", batch_size=1)
    assert report.imported == 2
    assert [line for line, _ in report.skipped] == [3, 4]
    assert all(reason and not reason.startswith("line") for _, reason in report.skipped)
    assert [s.conversation.id for s in all_stored(store)] == ["after", "before"]


def test_lone_surrogate_and_duplicate_ids_are_named_in_the_reason() -> None:
    for kind, words in (
        ("lone surrogate", "lone surrogate"),
        ("duplicate message ids", "twice"),
        ("unknown key", r"unknown keys \['extra'\]"),
    ):
        with pytest.raises(ImportFormatError, match=words):
            list(read_jsonl(io.StringIO(jsonl_text(BAD_LINES[kind]))))


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ('{"format":"qv-session-manager","version":2}', "version 2"),
        ('{"format":"other","version":1}', "not a qv-session-manager export"),
        ('{"format":"qv-session-manager","version":1,"x":1}', "unknown header keys"),
        ('{"format":"qv-session-manager","version":"1"}', "positive int"),
        ("not json", "invalid JSON"),
    ],
)
def test_a_bad_header_is_line_1_in_both_modes(header: str, words: str) -> None:
    text = jsonl_text(line_of(GOOD_BEFORE), header=header)
    for on_error in ("raise", "skip"):
        store = MemoryStore()
        with pytest.raises(ImportFormatError, match=f"^line 1: .*{words}") as caught:
            import_into(store, io.StringIO(text), on_error=on_error)  # type: ignore[arg-type]
        assert caught.value.line == 1 and not all_stored(store)


def test_a_file_without_header_is_refused() -> None:
    with pytest.raises(ImportFormatError, match="line 1"):
        list(read_jsonl(io.StringIO(line_of(GOOD_BEFORE) + "\n")))
    with pytest.raises(ImportFormatError, match="empty"):
        list(read_jsonl(io.StringIO("")))


def test_invalid_utf8_in_a_file_spoils_only_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    text = jsonl_text(line_of(GOOD_BEFORE), bad().replace('"x"', '"\udcff"'), line_of(GOOD_AFTER))
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    report = SessionManager(url="memory://").import_conversations(path, on_error="skip")
    assert report.imported == 2 and [line for line, _ in report.skipped] == [3]


def test_json_document_errors() -> None:
    good = io.StringIO()
    write_json([GOOD_BEFORE, GOOD_AFTER], good)
    text = good.getvalue()
    cases = {
        "truncated": (text[:-20], None),
        "syntax error in the middle": (text.replace('"before"', '"before" oops', 1), 2),
        "conversations before the header": ('{"conversations":[],"format":"qv-session-manager","version":1}', 1),
        "unknown top-level key": (text.replace('"version":1', '"version":1,"x":2'), 1),
        "newer version": (text.replace('"version":1', '"version":3'), 1),
        "not an object": ("[]", 1),
        "trailing data": (text + "{}", 5),
    }
    for name, (broken, line) in cases.items():
        with pytest.raises(ImportFormatError) as caught:
            list(read_json(Chunked(broken, 11)))
        if line is not None:
            assert caught.value.line == line, name


def test_json_document_skips_bad_conversations_with_their_lines() -> None:
    text = (
        '{"format":"qv-session-manager","version":1,"conversations":[\n'
        + line_of(GOOD_BEFORE)
        + ",\n"
        + BAD_LINES["wrong type"]
        + ",\n"
        + BAD_LINES["duplicate JSON key"]
        + ",\n"
        + line_of(GOOD_AFTER)
        + "\n]}"
    )
    store = MemoryStore()
    report = import_into(store, Chunked(text, 9), format="json", on_error="skip")
    assert report.imported == 2 and [line for line, _ in report.skipped] == [3, 4]
    with pytest.raises(ImportFormatError) as caught:
        import_into(MemoryStore(), io.StringIO(text), format="json")
    assert caught.value.line == 3


# -- import behaviour -------------------------------------------------------------


class RefusingStore(MemoryStore):
    """A bulk-saving store that refuses the conversation ``refused``, as a stricter engine might."""

    def save(
        self, conversation: ConversationRecord, messages: Sequence[MessageRecord], *, replace: bool = False
    ) -> None:
        if conversation.id == "refused":
            raise InvalidInputError("this engine cannot store it")
        super().save(conversation, messages, replace=replace)

    def save_many(self, items: Iterable[SaveItem]) -> int:
        items = list(items)
        if any(conversation.id == "refused" for conversation, _ in items):
            raise InvalidInputError("this engine cannot store one of them")
        return super().save_many(items)


def test_a_conversation_the_store_refuses_is_found_within_its_batch() -> None:
    refused = StoredConversation(ConversationRecord("refused", NAIVE, NAIVE), ())
    text = jsonl_text(line_of(GOOD_BEFORE), line_of(refused), line_of(GOOD_AFTER))
    store = RefusingStore()
    report = import_into(store, io.StringIO(text), on_error="skip")
    assert report.imported == 2 and report.skipped[0][0] == 3 and "cannot store" in report.skipped[0][1]
    with pytest.raises(ImportFormatError) as caught:
        import_into(RefusingStore(), io.StringIO(text))
    assert caught.value.line == 3


class PlainStore:
    """A store without save_many: the importer must save one conversation at a time."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.saves = 0

    def save(
        self, conversation: ConversationRecord, messages: Sequence[MessageRecord], *, replace: bool = False
    ) -> None:
        self.saves += 1
        self.inner.save(conversation, messages, replace=replace)

    def get(self, conversation_id: str) -> ConversationRecord | None:
        return self.inner.get(conversation_id)


def test_stores_without_bulk_saves_get_one_save_per_conversation() -> None:
    buffer = io.StringIO()
    write_jsonl(rich_conversations(), buffer)
    buffer.seek(0)
    store = PlainStore()
    assert import_into(store, buffer, batch_size=2).imported == 3  # type: ignore[arg-type]
    assert store.saves == 3 and same(
        all_stored(store.inner), sorted(rich_conversations(), key=lambda s: s.conversation.id)
    )


def test_import_batches_report_progress_and_reimport_changes_nothing() -> None:
    conversations = [StoredConversation(ConversationRecord(f"c{i}", NAIVE, NAIVE), ()) for i in range(5)]
    buffer = io.StringIO()
    write_jsonl(conversations, buffer)
    manager = SessionManager(url="memory://")
    seen: list[int] = []
    assert (
        manager.import_conversations(io.StringIO(buffer.getvalue()), batch_size=2, progress=seen.append).imported == 5
    )
    assert seen == [2, 4, 5]
    before = all_stored(manager.store)
    again = manager.import_conversations(io.StringIO(buffer.getvalue()))
    assert (again.imported, len(again.skipped)) == (0, 5), "every id is taken: all skipped"
    assert same(all_stored(manager.store), before)


def test_import_arguments_are_checked() -> None:
    manager = SessionManager(url="memory://")
    with pytest.raises(InvalidInputError, match="format"):
        manager.import_conversations(io.StringIO(""), format="xml")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="batch_size"):
        manager.import_conversations(io.StringIO(jsonl_text()), batch_size=0)
    with pytest.raises(InvalidInputError, match="on_error"):
        manager.import_conversations(io.StringIO(jsonl_text()), on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        manager.import_conversations("/nonexistent/dir/file.jsonl")


# -- export behaviour --------------------------------------------------------------


def test_export_to_a_path_is_atomic_and_filters_by_metadata(tmp_path: Path) -> None:
    manager = SessionManager(url="memory://")
    for stored in rich_conversations():
        manager.store.save(stored.conversation, stored.messages)
    path = tmp_path / "out.jsonl"
    seen: list[int] = []
    assert manager.export_conversations(path, metadata={"topic": "weather"}, progress=seen.append) == 1
    assert seen == [1]
    assert [stored.conversation.id for _, stored in read_jsonl(io.StringIO(path.read_text("utf-8")))] == [
        str(uuid.UUID(int=1))
    ]
    before = path.read_bytes()

    def fail(count: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        manager.export_conversations(path, progress=fail)
    assert path.read_bytes() == before, "a failed export leaves the target untouched"
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl"], "and no temporary file behind"
    with pytest.raises(InvalidInputError):
        manager.export_conversations(tmp_path / "x", format="xml")  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()


def test_export_is_newest_first_and_streams_do_not_get_closed() -> None:
    manager = SessionManager(url="memory://")
    for stored in rich_conversations():
        manager.store.save(stored.conversation, stored.messages)
    stream = io.StringIO()
    assert manager.export_conversations(stream) == 3
    assert not stream.closed
    ids = [stored.conversation.id for _, stored in read_jsonl(io.StringIO(stream.getvalue()))]
    assert ids == [record.id for record in manager.store.list(ConversationFilter())]


def test_csv_has_one_row_per_message() -> None:
    buffer = io.StringIO(newline="")
    assert write_csv(rich_conversations(), buffer) == 3
    rows = list(csv.reader(io.StringIO(buffer.getvalue(), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    body = [dict(zip(CSV_COLUMNS, row)) for row in rows[1:]]
    assert len(body) == 6, "5 messages, 1 message, and no row for the empty conversation"
    first = rich_conversations()[0]
    assert [row["message_id"] for row in body[:5]] == [m.id for m in first.messages]
    assert [row["position"] for row in body[:5]] == ["0", "1", "2", "3", "4"]
    assert body[0]["conversation_title"] == "Weather\nin Berlin"
    assert body[1]["content"] == "Weather? \x00 東京 \u2028 end"
    assert json.loads(body[2]["tool_calls"])[0] == {
        "name": "get_weather",
        "arguments": {"city": "Berlin", "days": [1, 2]},
        "id": "call-1",
    }
    assert body[3]["tool_call_id"] == "call-1" and body[3]["role"] == "tool"
    assert body[5]["created_at"] == "2025-01-21T09:30:00.000001+02:00"


def test_markdown_transcript_shows_messages_tool_calls_and_results() -> None:
    buffer = io.StringIO()
    assert write_markdown(rich_conversations(), buffer) == 3
    text = buffer.getvalue()
    first = rich_conversations()[0].conversation
    assert "## Weather in Berlin\n" in text
    assert f"`{first.id}`" in text and "llama3" in text and first.created_at.isoformat() in text
    assert "### system · 2025-01-20T12:00:00.123456" in text and "Be brief." in text
    assert 'Tool call **get_weather** (`call-1`):\n\n```json\n{"city":"Berlin","days":[1,2]}\n```' in text
    assert "Tool call **noop**:" in text
    assert "Result of tool call `call-1`:" in text and '{"temp": 3}' in text
    assert "*2 image(s) attached*" in text
    assert "## Untitled conversation" in text
    assert text.index("Be brief.") < text.index("3 °C, cloudy."), "messages in stored order"


def test_markdown_fences_cannot_be_closed_by_arguments() -> None:
    call = ToolCallRecord("f", {"code": "```rm```"})
    stored = StoredConversation(
        ConversationRecord("c", NAIVE, NAIVE), (MessageRecord("m", "assistant", "", NAIVE, tool_calls=(call,)),)
    )
    buffer = io.StringIO()
    write_markdown([stored], buffer)
    assert "````json\n" in buffer.getvalue()


def test_markdown_shows_control_and_bidi_characters_escaped_and_keeps_lines() -> None:
    attack = "\x1b]0;PWNED\x07 \x9b31m \u202e \r"
    call = ToolCallRecord(f"tool{attack}", {f"arg{attack}": attack}, f"call{attack}")
    stored = StoredConversation(
        ConversationRecord(f"id{attack}", NAIVE, NAIVE, title=f"title{attack}", model_name=f"model{attack}"),
        (
            MessageRecord("m1", "user", f"line one{attack}\n\tindented line two", NAIVE),
            MessageRecord("m2", "assistant", "", NAIVE, tool_calls=(call,)),
            MessageRecord("m3", "tool", "ok", NAIVE, tool_call_id=f"call{attack}"),
        ),
    )
    buffer = io.StringIO()
    write_markdown([stored], buffer)
    text = buffer.getvalue()
    assert not any(character in text for character in "\x1b\x07\x9b\u202e\r")
    shown = "\\x1b]0;PWNED\\x07 \\x9b31m \\u202e \\r"
    # Headings and tool names are one line: whitespace (the CR too) is folded first.
    assert f"## title{shown[:-3]}\n" in text
    for piece in (f"`id{shown}`", f"model{shown}", f"**tool{shown[:-3]}**", f"`call{shown}`"):
        assert piece in text, piece
    assert f"line one{shown}\n\tindented line two" in text  # newlines and tabs kept


# -- ShareGPT ------------------------------------------------------------------------

SHAREGPT = """[
  {"id": "a1", "conversations": [
    {"from": "system", "value": "Be nice."},
    {"from": "human", "value": "hi"},
    {"from": "gpt", "value": "hello"}]},
  {"id": 7, "model": "ignored", "conversations": [{"from": "bing", "value": "searched"}]},
  {"id": "no-turns"},
  {"id": "torn", "conversations": [{"from": "human", "value": "this item is cut of"""


def test_sharegpt_torn_item_is_named_with_its_line(caplog: pytest.LogCaptureFixture) -> None:
    read = [line for line, _ in sharegpt_entries(Chunked(SHAREGPT, 13))]
    assert read == [2, 6, 7]  # "torn" (line 8) is cut inside its text
    assert "the item starting on line 8 is incomplete and was not imported" in caplog.text


def test_sharegpt_torn_array_imports_complete_items(caplog: pytest.LogCaptureFixture) -> None:
    read = list(read_sharegpt(Chunked(SHAREGPT[: SHAREGPT.index('  {"id": "no-turns"')], 13)))
    assert "cut short at line 7 (no closing ']'); every item was read" in caplog.text
    assert [line for line, _ in read] == [2, 6]
    first, second = (stored for _, stored in read)
    conversation_id = uuid.uuid5(SHAREGPT_NAMESPACE, "a1")
    assert first.conversation.id == str(conversation_id)
    assert first.conversation.metadata == {"sharegpt_id": "a1"}
    assert [m.role for m in first.messages] == ["system", "user", "assistant"]
    assert [m.id for m in first.messages] == [str(uuid.uuid5(conversation_id, str(i))) for i in range(3)]
    assert [m.created_at for m in first.messages] == [SHAREGPT_EPOCH + timedelta(seconds=i) for i in range(3)]
    assert (
        first.conversation.created_at == SHAREGPT_EPOCH
        and first.conversation.updated_at == SHAREGPT_EPOCH + timedelta(seconds=2)
    )
    assert second.conversation.id == str(uuid.uuid5(SHAREGPT_NAMESPACE, "7"))
    assert [(m.role, m.content, m.metadata) for m in second.messages] == [
        ("user", "searched", {"sharegpt_from": "bing"})
    ]


def test_sharegpt_import_skips_bad_items_and_is_idempotent() -> None:
    manager = SessionManager(url="memory://")
    report = manager.import_conversations(io.StringIO(SHAREGPT), format="sharegpt", on_error="skip")
    assert report.imported == 2 and [line for line, _ in report.skipped] == [7]
    before = all_stored(manager.store)
    again = manager.import_conversations(io.StringIO(SHAREGPT), format="sharegpt", on_error="skip")
    assert (again.imported, [line for line, _ in again.skipped]) == (0, [2, 6, 7])
    assert same(all_stored(manager.store), before)
    with pytest.raises(ImportFormatError) as caught:
        SessionManager(url="memory://").import_conversations(io.StringIO(SHAREGPT), format="sharegpt")
    assert caught.value.line == 7


def test_sharegpt_complete_array_and_non_arrays() -> None:
    assert [
        stored.conversation.metadata for _, stored in read_sharegpt(io.StringIO('[{"id":"x","conversations":[]}]'))
    ] == [{"sharegpt_id": "x"}]
    for text in (
        '{"id": 1}',
        "",
        '[{"id":"x","conversations":[]}] extra',
        '[{"id": "x" "conversations": []}, {"id": "y"}]',
    ):
        with pytest.raises(ImportFormatError):
            list(read_sharegpt(io.StringIO(text)))


# -- bounded memory ---------------------------------------------------------------


class LazyStream(io.TextIOBase):
    """A text stream producing its lines from a generator: the file never exists whole."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._pending = ""
        self.produced = 0

    def readable(self) -> bool:
        return True

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        if self._pending:
            line, self._pending = self._pending, ""
            return line
        line = next(self._lines, "")
        self.produced += len(line)
        return line

    def read(self, size: int | None = -1) -> str:
        parts: list[str] = []
        total = 0
        while size is None or size < 0 or total < size:
            line = self.readline()
            if not line:
                break
            parts.append(line)
            total += len(line)
        return "".join(parts)


class SinkStore:
    """A bulk-saving store that only counts: what stays in memory is the importer's own."""

    capabilities = frozenset({Capability.BULK_SAVING})

    def __init__(self) -> None:
        self.saved = 0

    def save(
        self, conversation: ConversationRecord, messages: Sequence[MessageRecord], *, replace: bool = False
    ) -> None:
        self.saved += 1

    def save_many(self, items: Iterable[SaveItem]) -> int:
        count = sum(1 for _ in items)
        self.saved += count
        return count

    def get(self, conversation_id: str) -> ConversationRecord | None:
        return None  # every id is free: nothing is kept


def synthetic(count: int) -> Iterator[StoredConversation]:
    for index in range(count):
        yield StoredConversation(
            ConversationRecord(f"conversation-{index}", NAIVE, NAIVE, title=f"title {index}"),
            tuple(
                MessageRecord(f"m{turn}", "user" if turn % 2 == 0 else "assistant", f"text {index} {turn} " * 8, NAIVE)
                for turn in range(4)
            ),
        )


@pytest.mark.slow
@pytest.mark.parametrize("format", ["jsonl", "json"])
def test_import_from_a_generator_stream_stays_in_bounded_memory(format: str) -> None:
    count = 5_000

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        (write_jsonl if format == "jsonl" else write_json)(synthetic(count), buffer)
        # re-split the small per-conversation writes lazily: generate, never hold the whole text
        yield from buffer.getvalue().splitlines(keepends=True)

    def lazy_lines() -> Iterator[str]:
        """The same text as lines() (pieces of it for JSON), made one conversation at a time."""
        yield '{"format":"qv-session-manager","version":1' + ("}\n" if format == "jsonl" else ',"conversations":[')
        for index, stored in enumerate(synthetic(count)):
            text = line_of(stored)
            yield (text + "\n") if format == "jsonl" else ("\n" if index == 0 else ",\n") + text
        if format == "json":
            yield "\n]}\n"

    assert "".join(lazy_lines()) == "".join(lines()), "the lazy stream is a real export"
    stream = LazyStream(lazy_lines())
    store = SinkStore()
    gc.collect()
    tracemalloc.start()
    try:
        report = import_into(store, stream, format=format, batch_size=100)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.imported == count == store.saved
    assert stream.produced > 1_500_000
    assert peak < stream.produced / 5, f"peak {peak} bytes for {stream.produced} characters of input"


@pytest.mark.slow
def test_export_of_a_generator_stays_in_bounded_memory() -> None:
    class Counter(io.TextIOBase):
        written = 0

        def write(self, text: str) -> int:  # type: ignore[override]
            self.written += len(text)
            return len(text)

    sink = Counter()
    gc.collect()
    tracemalloc.start()
    try:
        assert write_jsonl(synthetic(5_000), sink) == 5_000  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < sink.written / 20, f"peak {peak} bytes for {sink.written} characters written"


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Export and import") :]
    code = section[section.index("```python\n") + len("```python\n") : section.index("\n```\n")]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sharegpt.json").write_text(SHAREGPT[: SHAREGPT.index('  {"id": "no-turns"')], encoding="utf-8")
    with SessionManager(url="memory://") as mgr:
        for stored in rich_conversations():
            mgr.store.save(stored.conversation, stored.messages)
        exec(compile(code, "README.md", "exec"), {"mgr": mgr, "print": lambda *args: None})
        assert len(all_stored(mgr.store)) == 5
    assert (tmp_path / "chats.md").read_text(encoding="utf-8") == "", "no conversation has topic work"
    assert len((tmp_path / "backup.jsonl").read_text(encoding="utf-8").splitlines()) == 4
