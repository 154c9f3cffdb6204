"""The qv-sessions command line: every command through CliRunner, a few as real processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st
from qv_ollama_sdk.domain.models import Conversation, Function, Message, MessageRole, ToolCall

from qv_session_manager import SessionManager, open_store
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore, maintenance
from qv_session_manager.backends.sqlite import schema as sqlite_schema
from qv_session_manager.cli import admin, common, copying, files, main, progress
from qv_session_manager.cli.common import parse_meta
from qv_session_manager.cli.render import conversation_dict, highlighted
from qv_session_manager.cli.sizes import human_size
from qv_session_manager.manager import URL_VARIABLE
from qv_session_manager.records import StoredConversation
from qv_session_manager.safe_text import terminal_safe
from qv_session_manager.testing import strategies
from qv_session_manager.transfer import iter_stored

BASE = datetime(2025, 1, 20, 12, 0, 0)
REPO = Path(__file__).resolve().parents[1]


def make_conversation(title: str, day: int, *, metadata: dict[str, Any] | None = None, text: str = "") -> Conversation:
    moment = BASE + timedelta(days=day)
    conversation = Conversation(
        title=title, model_name="llama3", created_at=moment, updated_at=moment, metadata=metadata or {}
    )
    conversation.messages = [
        Message(role=MessageRole.USER, content=text or f"question about {title}", created_at=moment),
        Message(role=MessageRole.ASSISTANT, content=f"answer about {title}", created_at=moment),
    ]
    return conversation


def tool_conversation() -> Conversation:
    """One conversation with every kind of message: tool call, tool result, images, markup-like text."""
    moment = BASE + timedelta(days=10)
    call = ToolCall(function=Function(name="get_weather", arguments={"city": "Berlin"}), id="call-1")
    messages = [
        Message(role=MessageRole.SYSTEM, content="be brief", created_at=moment),
        Message(
            role=MessageRole.USER, content="weather [bold]now[/bold]?", images=["aGk=", b"\x00\x01"], created_at=moment
        ),
        Message(role=MessageRole.ASSISTANT, content="", tool_calls=[call], created_at=moment),
        Message(role=MessageRole.TOOL, content="sunny, 21 C", tool_call_id="call-1", created_at=moment),
        Message(role=MessageRole.ASSISTANT, content="It is sunny.", created_at=moment),
    ]
    return Conversation(
        title="Weather",
        model_name="gemma3:1b",
        messages=messages,
        created_at=moment,
        updated_at=moment,
        metadata={"topic": "weather", "n": 1},
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """An SQLite file with four conversations (updated on days 0, 1, 2 and 10)."""
    path = tmp_path / "chats.db"
    with SessionManager(db_path=path) as manager:
        manager.save_conversation(make_conversation("Python lists", 0, metadata={"topic": "python", "n": 1}))
        manager.save_conversation(make_conversation("Rust ownership", 1, metadata={"topic": "rust", "n": "1"}))
        manager.save_conversation(
            make_conversation("Python dicts", 2, metadata={"topic": "python"}, text="python python dicts")
        )
        manager.save_conversation(tool_conversation())
    return path


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"  # tmp_path is absolute: four slashes in all


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)


def on(db: Path, *args: str, input: str | None = None) -> Result:
    return run("--url", url_of(db), *args, input=input)


def listed(db: Path, *args: str) -> list[dict[str, Any]]:
    result = on(db, "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def titles(rows: list[dict[str, Any]]) -> list[str]:
    return [row["title"] for row in rows]


def assert_user_error(result: Result, fragment: str = "") -> None:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert fragment.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr + result.stdout


def everything(url: str) -> list[StoredConversation]:
    store = open_store(url)
    try:
        return sorted(iter_stored(store), key=lambda stored: stored.conversation.id)
    finally:
        store.close()


# -- list -----------------------------------------------------------------------


def test_list_shows_a_table_newest_first(db: Path) -> None:
    result = on(db, "list")
    assert result.exit_code == 0
    out = result.stdout
    for column in ("id", "title", "model", "updated"):
        assert column in out
    assert out.index("Weather") < out.index("Python dicts") < out.index("Rust ownership") < out.index("Python lists")
    assert "gemma3:1b" in out and "2025-01-30T12:00:00" in out


def test_list_json_is_the_conversation_dicts(db: Path) -> None:
    with SessionManager(db_path=db) as manager:
        expected = manager.list_conversations()
    assert listed(db) == expected


def test_list_paging(db: Path) -> None:
    assert titles(listed(db, "--limit", "2")) == ["Weather", "Python dicts"]
    assert titles(listed(db, "--limit", "2", "--offset", "1")) == ["Python dicts", "Rust ownership"]
    first = listed(db, "--limit", "1")[0]["id"]
    assert titles(listed(db, "--after", first, "--limit", "1")) == ["Python dicts"]


def test_list_after_a_missing_id_is_a_user_error(db: Path) -> None:
    assert_user_error(on(db, "list", "--after", "nope"), "nope")


def test_list_time_filters(db: Path) -> None:
    assert titles(listed(db, "--since", "2025-01-21", "--until", "2025-01-22")) == ["Python dicts", "Rust ownership"]
    assert titles(listed(db, "--until", "2025-01-20")) == ["Python lists"]
    assert titles(listed(db, "--since", "2025-01-25")) == ["Weather"]


def test_list_meta_values_are_json_when_they_parse(db: Path) -> None:
    assert titles(listed(db, "--meta", "topic=python")) == ["Python dicts", "Python lists"]
    assert titles(listed(db, "--meta", "n=1")) == ["Weather", "Python lists"]  # the number 1
    assert titles(listed(db, "--meta", 'n="1"')) == ["Rust ownership"]  # the string "1"
    assert titles(listed(db, "--meta", "topic=python", "--meta", "n=1")) == ["Python lists"]


def test_list_bad_date_and_bad_meta_are_user_errors(db: Path) -> None:
    assert_user_error(on(db, "list", "--since", "yesterday"), "yesterday")
    assert_user_error(on(db, "list", "--meta", "topic"), "KEY=VALUE")


def test_list_on_memory_and_from_the_environment(db: Path) -> None:
    assert json.loads(run("--url", "memory://", "list", "--json").stdout) == []
    result = run("list", "--json", env={URL_VARIABLE: url_of(db)})
    assert len(json.loads(result.stdout)) == 4


def test_parse_meta() -> None:
    assert parse_meta(()) is None
    assert parse_meta(("a=1", "b=true", "c=null", "d=x=y", "e=", 'f={"k": [1]}')) == {
        "a": 1,
        "b": True,
        "c": None,
        "d": "x=y",
        "e": "",
        "f": {"k": [1]},
    }


# -- show -----------------------------------------------------------------------


def weather_id(db: Path) -> str:
    return listed(db, "--limit", "1")[0]["id"]


def test_show_prints_a_readable_transcript(db: Path) -> None:
    result = on(db, "show", weather_id(db))
    assert result.exit_code == 0
    out = result.stdout
    assert "Weather" in out and "gemma3:1b" in out and "5 messages" in out
    for role in ("system", "user", "assistant", "tool"):
        assert role in out
    assert 'get_weather({"city": "Berlin"})' in out and "id call-1" in out
    assert "result of tool call call-1" in out and "sunny, 21 C" in out
    assert "[2 images]" in out
    assert "weather [bold]now[/bold]?" in out  # user text is never read as markup
    assert "2025-01-30T12:00:00" in out
    assert out.index("be brief") < out.index("weather [bold]") < out.index("get_weather") < out.index("It is sunny.")


def test_show_json_is_the_whole_conversation(db: Path) -> None:
    key = weather_id(db)
    data = json.loads(on(db, "show", key, "--json").stdout)
    with SessionManager(db_path=db) as manager:
        conversation = manager.load_conversation(key)
    assert conversation is not None
    assert data["metadata"] == {"topic": "weather", "n": 1}
    assert [m["role"] for m in data["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert data["messages"][1]["images"] == ["aGk=", {"base64": "AAE="}]
    assert data["messages"][2]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Berlin"}}, "id": "call-1"}
    ]
    assert data["messages"][3]["tool_call_id"] == "call-1"
    expected = json.loads(json.dumps(conversation_dict(conversation), default=common._jsonable))
    assert data == expected


def test_show_accepts_any_spelling_of_the_id(db: Path) -> None:
    key = weather_id(db)
    assert on(db, "show", key.upper().replace("-", "")).exit_code == 0


def test_show_missing_id_is_a_user_error(db: Path) -> None:
    assert_user_error(on(db, "show", "no-such-id"), "no-such-id")


# -- search ---------------------------------------------------------------------


def test_search_ranks_by_relevance_and_highlights(db: Path) -> None:
    hits = json.loads(on(db, "search", "python", "--json").stdout)
    assert titles(hits) == ["Python dicts", "Python lists"]  # "python" three times beats once
    assert all("score" in hit and "**" in hit["snippet"].lower() for hit in hits)
    assert "**python**" in hits[0]["snippet"].lower()


def test_search_recent_and_limit(db: Path) -> None:
    assert titles(json.loads(on(db, "search", "about", "--recent", "--json").stdout)) == [
        "Python dicts",
        "Rust ownership",
        "Python lists",
    ]
    assert len(json.loads(on(db, "search", "about", "--limit", "1", "--json").stdout)) == 1


def test_search_output_for_people(db: Path) -> None:
    result = on(db, "search", "ownership", "--format", "table")
    assert result.exit_code == 0
    assert "Rust ownership" in result.stdout and "\ue000" not in result.stdout and "**" not in result.stdout
    assert "no matches" in on(db, "search", "zebra", "--format", "table").stdout


def test_search_filters_on_metadata(db: Path) -> None:
    assert titles(json.loads(on(db, "search", "about", "--meta", "topic=rust", "--json").stdout)) == ["Rust ownership"]


@given(st.lists(st.tuples(strategies.text, st.booleans()), max_size=6))
def test_highlighted_keeps_the_text_and_styles_exactly_the_marked_parts(parts: list[tuple[str, bool]]) -> None:
    mark = ("\ue000", "\ue001")
    parts = [(piece.replace(mark[0], "").replace(mark[1], ""), marked) for piece, marked in parts]
    snippet = "".join(f"{mark[0]}{piece}{mark[1]}" if marked else piece for piece, marked in parts)
    text = highlighted(snippet, mark)
    # Control characters are shown escaped, so stored text cannot drive the terminal.
    assert text.plain == terminal_safe("".join(piece for piece, _ in parts))
    styled = "".join(text.plain[span.start : span.end] for span in text.spans)
    assert styled == terminal_safe("".join(piece for piece, marked in parts if marked))


# -- delete and prune -----------------------------------------------------------


def test_delete_removes_conversations(db: Path) -> None:
    rows = listed(db)
    result = on(db, "delete", rows[0]["id"], rows[1]["id"])
    assert result.exit_code == 0 and "deleted 2" in result.stderr
    assert titles(listed(db)) == ["Rust ownership", "Python lists"]
    assert json.loads(on(db, "search", "dicts", "--json").stdout) == []


def test_delete_of_a_missing_id_deletes_the_others_and_fails(db: Path) -> None:
    first = listed(db)[0]["id"]
    result = on(db, "delete", "missing-one", first)
    assert_user_error(result, "missing-one")
    assert "deleted 1" in result.stderr
    assert len(listed(db)) == 3


def test_prune_dry_run_lists_and_keeps(db: Path) -> None:
    result = on(db, "prune", "--before", "2025-01-22", "--dry-run")
    assert result.exit_code == 0
    assert "Python lists" in result.stdout and "Rust ownership" in result.stdout and "Python dicts" not in result.stdout
    assert "would delete 2" in result.stderr
    assert len(listed(db)) == 4


def test_prune_asks_and_a_no_keeps_everything(db: Path) -> None:
    result = on(db, "prune", "--before", "2025-01-22", input="n\n")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert len(listed(db)) == 4


def test_prune_deletes_after_a_yes(db: Path) -> None:
    result = on(db, "prune", "--before", "2025-01-22", input="y\n")
    assert result.exit_code == 0 and "deleted 2" in result.stderr
    assert titles(listed(db)) == ["Weather", "Python dicts"]


def test_prune_before_is_strict(db: Path) -> None:
    # "Rust ownership" was updated at exactly 2025-01-21T12:00:00: it is not before that moment.
    result = on(db, "prune", "--before", "2025-01-21T12:00:00", "--yes")
    assert result.exit_code == 0 and "deleted 1" in result.stderr
    assert titles(listed(db)) == ["Weather", "Python dicts", "Rust ownership"]
    assert "nothing to prune" in on(db, "prune", "--before", "2020-01-01", "--yes").stderr


def test_prune_with_an_aware_date(db: Path) -> None:
    # 2025-01-20T13:00+02:00 is 11:00 UTC, before the naive 12:00 of "Python lists".
    assert on(db, "prune", "--before", "2025-01-20T13:00:00+02:00", "--yes").stderr.startswith("nothing")


def test_prune_bad_or_missing_date(db: Path) -> None:
    assert_user_error(on(db, "prune", "--before", "soon", "--yes"), "soon")
    assert_user_error(on(db, "prune", "--before", " ", "--yes"), "date")
    assert on(db, "prune", "--yes").exit_code == 2  # a usage error


def test_prune_keep_newest_lists_then_deletes_the_rest(db: Path) -> None:
    dry = on(db, "prune", "--keep-newest", "2", "--dry-run")
    assert dry.exit_code == 0 and "would delete 2" in dry.stderr
    assert "Rust ownership" in dry.stdout and "Python lists" in dry.stdout and "Weather" not in dry.stdout
    result = on(db, "prune", "--keep-newest", "2", "--yes")
    assert result.exit_code == 0 and "deleted 2" in result.stderr
    assert titles(listed(db)) == ["Weather", "Python dicts"]
    assert "nothing to prune" in on(db, "prune", "--keep-newest", "2", "--yes").stderr


@pytest.fixture
def many(tmp_path: Path) -> Path:
    """An SQLite file with 30 conversations, "number 00" (oldest) to "number 29" (newest)."""
    path = tmp_path / "many.db"
    with SessionManager(db_path=path) as manager:
        manager.save_many([make_conversation(f"number {n:02d}", n) for n in range(30)])
    return path


def test_prune_shows_the_first_rows_and_says_how_many_more(many: Path) -> None:
    # --keep-newest 2 on 30: 28 go; the table shows the newest 20 of them, then the count of the rest.
    dry = on(many, "prune", "--keep-newest", "2", "--dry-run")
    assert dry.exit_code == 0
    assert [n for n in range(30) if f"number {n:02d}" in dry.stdout] == list(range(8, 28))
    assert "… and 8 more (--all lists them)" in dry.stderr
    assert dry.stderr.rstrip().endswith("would delete 28 conversations (dry run)")
    everything = on(many, "prune", "--keep-newest", "2", "--dry-run", "--all")
    assert [n for n in range(30) if f"number {n:02d}" in everything.stdout] == list(range(28))
    assert "more" not in everything.stderr and "would delete 28" in everything.stderr
    asked = on(many, "prune", "--keep-newest", "2", input="n\n")  # the question comes after the same short table
    assert (
        "number 07" not in asked.stdout
        and "… and 8 more" in asked.stderr
        and "delete 28 conversations?" in asked.stderr
    )
    assert len(listed(many, "--all")) == 30


@pytest.mark.parametrize("output_format", ["json", "jsonl", "tsv", "csv", "markdown"])
def test_prune_with_a_format_prints_every_row_in_it(many: Path, output_format: str) -> None:
    dry = on(many, "prune", "--keep-newest", "2", "--dry-run", "--format", output_format)
    assert dry.exit_code == 0 and "more" not in dry.stderr and "would delete 28" in dry.stderr
    assert [n for n in range(30) if f"number {n:02d}" in dry.stdout] == list(range(28))
    if output_format == "json":
        assert [row["title"] for row in json.loads(dry.stdout)][::27] == ["number 27", "number 00"]
    if output_format == "jsonl":
        assert len(dry.stdout.splitlines()) == 28 and json.loads(dry.stdout.splitlines()[0])["title"] == "number 27"
    if output_format == "tsv":
        assert dry.stdout.splitlines()[0] == "id\ttitle\tmodel\tupdated" and len(dry.stdout.splitlines()) == 29
    assert (
        on(many, "prune", "--keep-newest", "2", "--dry-run", "--json").stdout
        == on(many, "prune", "--keep-newest", "2", "--dry-run", "--format", "json").stdout
    )
    assert on(many, "prune", "--keep-newest", "2", "--dry-run", "--json", "--format", "csv").exit_code == 2


def test_prune_options_combine_each_conversation_once(db: Path) -> None:
    # --before takes the two oldest, --keep-newest 3 the oldest again: two in all.
    result = on(db, "prune", "--before", "2025-01-22", "--keep-newest", "3", "--yes")
    assert result.exit_code == 0 and "deleted 2" in result.stderr
    assert result.stdout.count("Python lists") == 1
    assert titles(listed(db)) == ["Weather", "Python dicts"]


def test_prune_older_than_days_counts_back_from_now(db: Path) -> None:
    assert "nothing to prune" in on(db, "prune", "--older-than", "36500", "--yes").stderr  # 100 years
    result = on(db, "prune", "--older-than", "1", "--yes")  # everything in the fixture is from January 2025
    assert result.exit_code == 0 and "deleted 4" in result.stderr and listed(db) == []


def test_prune_expired_removes_hidden_conversations_without_asking(db: Path) -> None:
    first = listed(db)[0]["id"]
    with SessionManager(db_path=db) as manager:
        assert manager.set_expiry(first, datetime(2000, 1, 1))
    assert len(listed(db)) == 3

    def stored() -> int:
        connection = sqlite3.connect(db)
        try:
            return int(connection.execute("SELECT count(*) FROM conversations").fetchone()[0])
        finally:
            connection.close()

    dry = on(db, "prune", "--expired", "--dry-run")
    assert dry.exit_code == 0 and "expired conversations would be removed" in dry.stderr and stored() == 4
    result = on(db, "prune", "--expired")
    assert result.exit_code == 0 and "removed 1 expired conversation" in result.stderr, result.stderr
    assert stored() == 3 and len(listed(db)) == 3
    assert "removed 0 expired conversations" in on(db, "prune", "--expired").stderr


def test_prune_usage_errors(db: Path) -> None:
    assert on(db, "prune", "--before", "2025-01-22", "--older-than", "3", "--yes").exit_code == 2
    assert on(db, "prune", "--keep-newest", "-1", "--yes").exit_code == 2
    assert on(db, "prune", "--older-than", "soon", "--yes").exit_code == 2
    assert_user_error(on(db, "prune", "--older-than", "1000000000", "--yes"), "older-than")
    assert len(listed(db)) == 4


# -- stats, backends ------------------------------------------------------------


def test_stats_on_sqlite(db: Path) -> None:
    out = on(db, "stats").stdout
    assert "conversations   4" in out and "messages        11" in out
    assert "oldest updated  2025-01-20T12:00:00" in out and "newest updated  2025-01-30T12:00:00" in out
    assert url_of(db) in out
    assert f"database file   {human_size(os.path.getsize(db))}  {db}" in out and "bytes" not in out


def test_stats_on_an_empty_memory_store() -> None:
    out = run("--url", "memory://", "stats").stdout
    assert "conversations   0" in out and "oldest updated  -" in out and "file size" not in out


@given(st.lists(st.tuples(strategies.conversations(), strategies.message_lists(max_size=3)), max_size=5))
def test_stats_counts_in_sql_agree_with_reading_the_store(items: list[Any]) -> None:
    sqlite_store = SQLiteStore(":memory:")
    memory = MemoryStore()
    try:
        for record, messages in items:
            sqlite_store.save(record, messages, replace=True)
            memory.save(record, messages, replace=True)
        in_sql = maintenance.counts(sqlite_store)
        assert in_sql == admin._count_by_reading(sqlite_store) == admin._count_by_reading(memory)
    finally:
        sqlite_store.close()
        memory.close()


def test_backends_lists_every_installed_backend() -> None:
    result = run("backends")
    assert result.exit_code == 0
    out = result.stdout
    for expected in ("sqlite://", "memory://", "jsonl://", "FTS5", "qv-session-manager-jsonl", "qv-session-manager"):
        assert expected in out


# -- doctor ---------------------------------------------------------------------


def test_doctor_on_a_healthy_store(db: Path) -> None:
    result = on(db, "doctor")
    assert result.exit_code == 0, result.output
    assert f"schema version: {sqlite_schema.LATEST} (current)" in result.stdout
    assert "integrity check: ok" in result.stdout
    assert "search indexes: consistent" in result.stdout
    assert "no problems found" in result.stdout


def break_index(db: Path) -> None:
    """Leave a stale entry in the message index (no message has that row id)."""
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("INSERT INTO message_index (rowid, body) VALUES (999999, 'ghost words')")
    connection.close()


def test_doctor_finds_and_rebuilds_an_inconsistent_index(db: Path) -> None:
    break_index(db)
    assert json.loads(on(db, "search", "ghost", "--json").stdout) == []  # stale rows are not hits, but they are wrong
    result = on(db, "doctor")
    assert result.exit_code == 1
    assert "search indexes: INCONSISTENT" in result.stdout and "message_index" in result.stdout
    assert "error: 1 problem found" in result.stderr
    repaired = on(db, "doctor", "--rebuild-index")
    assert repaired.exit_code == 0, repaired.output
    assert "search indexes: rebuilt" in repaired.stdout and "consistent" in repaired.stdout
    assert on(db, "doctor").exit_code == 0
    assert titles(json.loads(on(db, "search", "python", "--json").stdout)) == ["Python dicts", "Python lists"]


def test_rebuild_restores_missing_index_entries(db: Path) -> None:
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("INSERT INTO message_index (message_index) VALUES ('delete-all')")
    connection.close()
    store = SQLiteStore(db)
    try:
        assert maintenance.schema_version(store) == sqlite_schema.LATEST
        assert maintenance.integrity_problems(store) == []
        problems = maintenance.index_problems(store)
        assert len(problems) == 1 and problems[0].startswith("message_index:")
        maintenance.rebuild_indexes(store)
        assert maintenance.index_problems(store) == []
    finally:
        store.close()
    assert titles(json.loads(on(db, "search", "sunny", "--json").stdout)) == ["Weather"]


def test_doctor_purges_deleted_text(db: Path) -> None:
    with SessionManager(db_path=db) as manager:
        store = manager.store
        assert isinstance(store, SQLiteStore)
        manager.delete_conversation(manager.list_conversations()[0]["id"])
        result = CliRunner().invoke(main, ["--url", url_of(db), "doctor"])
        assert "purge: purged deleted text" in result.stdout
        assert not store.purge()


def test_doctor_on_other_backends_says_what_does_not_apply() -> None:
    result = run("--url", "memory://", "doctor", "--rebuild-index")
    assert result.exit_code == 0
    assert "schema version: not applicable to MemoryStore" in result.stdout
    assert "--rebuild-index/--repair: not applicable" in result.stdout and "purge: not applicable" in result.stdout


# -- copy -----------------------------------------------------------------------


def test_copy_reproduces_the_store_and_a_second_run_changes_nothing(db: Path, tmp_path: Path) -> None:
    destination = url_of(tmp_path / "copy.db")
    first = run("copy", url_of(db), destination)
    assert first.exit_code == 0, first.output
    assert "copied 4" in first.stderr and "verified 4" in first.stderr
    assert everything(destination) == everything(url_of(db))
    second = run("copy", url_of(db), destination)
    assert second.exit_code == 0
    assert everything(destination) == everything(url_of(db))


def test_copy_resumes_and_keeps_what_else_is_in_the_destination(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "partial.db"
    with SessionManager(db_path=target) as partial:
        with SessionManager(db_path=db) as source:
            first = source.load_conversation(source.list_conversations()[0]["id"])
            assert first is not None
            first.messages = first.messages[:2]  # as if interrupted mid-way
            partial.save_conversation(first)
        partial.save_conversation(make_conversation("Only here", 5))
    assert run("copy", url_of(db), url_of(target)).exit_code == 0
    copied = {stored.conversation.id: stored for stored in everything(url_of(target))}
    for stored in everything(url_of(db)):
        assert copied[stored.conversation.id] == stored
    assert len(copied) == 5


def test_copy_to_another_backend(db: Path, tmp_path: Path) -> None:
    destination = f"jsonl:///{tmp_path / 'as-jsonl'}"
    assert run("copy", url_of(db), destination).exit_code == 0
    assert everything(destination) == everything(url_of(db))


class DroppingStore(MemoryStore):
    """Saves every conversation without its last message: a destination that loses data."""

    def save(self, conversation: Any, messages: Any, *, replace: bool = False) -> None:
        super().save(conversation, list(messages)[:-1], replace=replace)


def test_copy_reports_mismatches(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def opener(url: str) -> Any:
        return DroppingStore() if url == "memory://" else open_store(url)

    monkeypatch.setattr(copying, "open_store", opener)
    result = run("copy", url_of(db), "memory://")
    assert result.exit_code == 1
    assert result.stderr.count("mismatch: ") == 4
    assert "has 5 messages in the source, 4 in the destination" in result.stderr
    assert "error: 4 of 4 conversations differ" in result.stderr


def test_verify_names_missing_conversations(db: Path) -> None:
    source = open_store(url_of(db))
    try:
        result = copying.verify(source, MemoryStore())
    finally:
        source.close()
    assert result.checked == 4 and len(result.missing) == 4 and not result.ok


def test_copy_draws_progress_only_on_a_terminal(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = run("copy", url_of(db), url_of(tmp_path / "a.db"))
    assert "copying" not in quiet.stderr
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    monkeypatch.setattr(copying, "stderr_is_terminal", lambda: True)
    drawn = run("copy", url_of(db), url_of(tmp_path / "b.db"))
    assert drawn.exit_code == 0
    assert "copying" in drawn.stderr and "4/4" in drawn.stderr


def test_copy_from_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    assert_user_error(run("copy", url_of(missing), "memory://"), "no database")
    assert not missing.exists()


# -- export and import -------------------------------------------------------------


def export_file(db: Path, path: Path, *args: str) -> Result:
    result = on(db, "export", str(path), *args)
    assert result.exit_code == 0, result.output
    return result


def test_export_then_import_reproduces_the_store(db: Path, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    result = export_file(db, dump)
    assert result.stdout == "" and f"exported 4 conversations to {dump}" in result.stderr
    target = tmp_path / "new.db"  # import creates a missing SQLite file
    imported = run("--url", url_of(target), "import", str(dump))
    assert imported.exit_code == 0, imported.output
    assert "imported 4 conversations" in imported.stderr
    assert everything(url_of(target)) == everything(url_of(db))


def test_export_to_standard_output_and_import_from_standard_input(db: Path, tmp_path: Path) -> None:
    exported = on(db, "export", "--format", "json")
    assert exported.exit_code == 0 and "to standard output" in exported.stderr
    assert "Python lists" in exported.stdout
    imported = run("--url", "memory://", "import", "-", "--format", "json", input=exported.stdout)
    assert imported.exit_code == 0, imported.output
    assert "imported 4 conversations" in imported.stderr


def test_export_views_and_filters(db: Path, tmp_path: Path) -> None:
    markdown = tmp_path / "chats.md"
    export_file(db, markdown, "--format", "markdown", "--meta", "topic=python")
    text = markdown.read_text()
    assert "Python lists" in text and "Python dicts" in text and "Rust ownership" not in text
    table = tmp_path / "chats.csv"
    assert "exported 4" in export_file(db, table, "--format", "csv").stderr
    assert "get_weather" in table.read_text()


def test_import_stops_at_a_bad_line_unless_told_to_skip(db: Path, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    export_file(db, dump)
    lines = dump.read_text().splitlines()
    dump.write_text("\n".join([*lines[:2], "this is not json", *lines[2:]]) + "\n")
    stopped = run("--url", url_of(tmp_path / "a.db"), "import", str(dump))
    assert_user_error(stopped, "line 3")
    skipping = run("--url", url_of(tmp_path / "b.db"), "import", str(dump), "--skip-bad-lines")
    assert skipping.exit_code == 0, skipping.output
    assert "skipped line 3:" in skipping.stderr and "imported 4 conversations, skipped 1" in skipping.stderr


def test_import_of_an_unreadable_file_is_a_user_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    assert_user_error(run("--url", "memory://", "import", str(missing)), str(missing))
    assert_user_error(run("--url", "memory://", "import", str(tmp_path)))  # a directory


def test_export_to_an_unwritable_place_is_a_user_error(db: Path, tmp_path: Path) -> None:
    assert_user_error(on(db, "export", str(tmp_path / "no" / "such" / "dir.jsonl")))


def test_export_draws_progress_only_on_a_terminal(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "exporting" not in export_file(db, tmp_path / "quiet.jsonl").stderr
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    monkeypatch.setattr(files, "stderr_is_terminal", lambda: True)
    drawn = export_file(db, tmp_path / "drawn.jsonl")
    assert "exporting" in drawn.stderr and "4/4" in drawn.stderr


# -- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("nonsense", "no database at nonsense"),  # a bare path is an SQLite file
        ("nosuch://x", "no backend"),
        ("sqlite://host/x.db", "sqlite:///"),
        ("memory://?x=1", "no options"),
    ],
)
def test_bad_urls_are_user_errors(url: str, fragment: str) -> None:
    assert_user_error(run("--url", url, "list"), fragment)


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    assert_user_error(run("--url", url_of(missing), "list"), "no database")
    assert not missing.exists()


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.db"
    garbage.write_text("hello, not sqlite")
    assert_user_error(run("--url", url_of(garbage), "stats"), "not an SQLite database")
    assert garbage.read_text() == "hello, not sqlite"


def test_an_unusable_directory_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert_user_error(run("copy", "memory://", url_of(tmp_path / "file" / "x.db")))


def test_usage_errors_exit_with_2(db: Path) -> None:
    assert on(db, "show").exit_code == 2
    assert on(db, "no-such-command").exit_code == 2
    assert on(db, "list", "--limit", "-1").exit_code == 2


# -- real processes ---------------------------------------------------------------


def cli_process(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != URL_VARIABLE}
    return subprocess.run(
        [sys.executable, "-m", "qv_session_manager.cli", *args],
        input=input,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def test_copy_as_a_process(db: Path, tmp_path: Path) -> None:
    destination = url_of(tmp_path / "process-copy.db")
    finished = cli_process("copy", url_of(db), destination)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == "" and "verified 4" in finished.stderr
    assert "\x1b[" not in finished.stderr  # no progress bar when stderr is a pipe
    assert everything(destination) == everything(url_of(db))


def test_export_and_import_as_processes(db: Path, tmp_path: Path) -> None:
    exported = cli_process("--url", url_of(db), "export", "-")
    assert exported.returncode == 0, exported.stderr
    assert "exported 4" in exported.stderr and "\x1b[" not in exported.stderr
    target = url_of(tmp_path / "from-process.db")
    imported = cli_process("--url", target, "import", "-", input=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert "imported 4" in imported.stderr and imported.stdout == ""
    assert everything(target) == everything(url_of(db))


def test_a_reader_that_goes_away_ends_the_export_quietly(tmp_path: Path) -> None:
    path = tmp_path / "many.db"
    with SessionManager(db_path=path) as manager:
        manager.save_many(make_conversation(f"chat {i}", i % 30) for i in range(2000))
    environment = {key: value for key, value in os.environ.items() if key != URL_VARIABLE}
    process = subprocess.Popen(
        [sys.executable, "-m", "qv_session_manager.cli", "--url", url_of(path), "export", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    errors = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert errors == ""


def test_the_library_works_without_click_and_rich() -> None:
    # None in sys.modules makes an import fail, as if the [cli] extra were not installed.
    code = (
        "import sys; sys.modules.update(click=None, rich=None)\n"
        "from qv_session_manager import SessionManager\n"
        "with SessionManager(url='memory://') as manager: print(manager.list_conversations())"
    )
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert finished.stdout.strip() == "[]", finished.stderr


def test_an_error_in_a_process_is_one_line(tmp_path: Path) -> None:
    finished = cli_process("--url", "nosuch://x", "list")
    assert finished.returncode == 1
    assert finished.stderr.startswith("error: no backend") and len(finished.stderr.strip().splitlines()) == 1
