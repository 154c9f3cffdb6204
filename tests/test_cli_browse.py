"""Browsing and reading from the command line (issue 17, points 1 and 2), through CliRunner.

Output here goes to a pipe: plain, machine-readable, never paged. The terminal side
(widths, colours, the pager, Markdown) is in ``test_cli_browse_terminal.py``.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st
from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

from qv_session_manager import SessionManager
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.cli import main
from qv_session_manager.cli.formats import render_rows
from qv_session_manager.cli.ids import matching_ids, resolve_id, short_ids
from qv_session_manager.cli.searching import search_command
from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.records import ConversationRecord

BASE = datetime(2025, 2, 1, 8, 0, 0)
BOX_DRAWING = {chr(code) for code in range(0x2500, 0x2580)}


def chat(
    key: str,
    day: int,
    *,
    title: str | None = None,
    model: str = "llama3",
    user: str = "",
    answer: str = "",
    metadata: dict[str, Any] | None = None,
) -> Conversation:
    moment = BASE + timedelta(days=day)
    conversation = Conversation(
        id=key, title=title, model_name=model, created_at=moment, updated_at=moment, metadata=metadata or {}
    )
    conversation.messages = [
        Message(role=MessageRole.USER, content=user or f"question {key}", created_at=moment),
        Message(role=MessageRole.ASSISTANT, content=answer or f"answer {key}", created_at=moment),
        Message(role=MessageRole.USER, content=f"follow-up {key}", created_at=moment),
        Message(role=MessageRole.ASSISTANT, content=f"last word {key}", created_at=moment),
    ]
    return conversation


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Five conversations with ids that share prefixes, one untitled, varied models, roles and metadata."""
    path = tmp_path / "browse.db"
    with SessionManager(db_path=path) as manager:
        manager.save_conversation(
            chat(
                "abcdef0011",
                0,
                title="Rust lifetimes",
                user="why rust lifetimes",
                answer="python has none",
                metadata={"topic": "rust"},
            )
        )
        manager.save_conversation(
            chat(
                "abcdef0022",
                1,
                title="Python typing",
                model="qwen",
                user="python typing",
                answer="use mypy",
                metadata={"topic": "python"},
            )
        )
        manager.save_conversation(
            chat("abcdef0022x", 2, title='=HYPERLINK("http://e.vil")|pipe', user="spreadsheet python", answer="cells")
        )
        manager.save_conversation(
            chat("ffff000001", 3, user="How do I\nsort a dict in python?", answer="sorted(d.items())")
        )
        manager.save_conversation(chat("99990000aa", 4, title="Java streams", user="java streams", answer="map"))
    return path


def run(db: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--url", f"sqlite:///{db}", *args], catch_exceptions=False)


def ok(db: Path, *args: str) -> Result:
    result = run(db, *args)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return result


def one_line_error(result: Result, code: int, fragment: str) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def tsv(result: Result) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(result.stdout), delimiter="\t", quoting=csv.QUOTE_NONE))


def stored_rows(db: Path) -> list[dict[str, Any]]:
    with SessionManager(db_path=db) as manager:
        return manager.list_conversations()


# -- id prefixes -------------------------------------------------------------------


def test_short_ids_are_the_shortest_unique_prefixes_of_at_least_eight() -> None:
    ids = sorted(["abcdef0011", "abcdef0022", "abcdef0022x", "ffff000001", "abc", "abcdefgh"])
    shown = short_ids(ids, ids)
    assert shown["ffff000001"] == "ffff0000"  # unique at once: the minimum
    assert shown["abcdef0011"] == "abcdef001"  # one more than it shares with abcdef0022
    assert shown["abcdef0022"] == "abcdef0022"  # a prefix of abcdef0022x: given whole
    assert shown["abcdef0022x"] == "abcdef0022x"
    assert shown["abc"] == "abc" and shown["abcdefgh"] == "abcdefgh"  # never longer than the id


@given(st.sets(st.text("0123abc", min_size=1, max_size=12), min_size=1, max_size=30))
def test_every_short_id_names_its_conversation(id_set: set[str]) -> None:
    ids = sorted(id_set)
    for key, short in short_ids(ids, ids).items():
        assert key.startswith(short) and len(short) >= min(8, len(key))
        # Typed back: the exact id wins, else the prefix is unique.
        assert short == key or matching_ids(ids, short) == [key]


class CountingStore(MemoryStore):
    """A memory store that counts the calls prefix resolution makes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def get(self, conversation_id: str) -> ConversationRecord | None:
        self.calls.append("get")
        return super().get(conversation_id)

    def list(self, filter: ConversationFilter, **kwargs: Any) -> list[ConversationRecord]:  # type: ignore[override]
        self.calls.append("list")
        return super().list(filter, **kwargs)


def test_an_exact_id_wins_at_the_cost_of_one_get_even_when_it_prefixes_others() -> None:
    store = CountingStore()
    manager = SessionManager(store=store)
    for key, day in (("abcdef0022", 0), ("abcdef0022x", 1), ("zz", 2)):
        manager.save_conversation(chat(key, day))
    store.calls.clear()
    assert resolve_id(manager, "abcdef0022") == "abcdef0022"
    assert store.calls == ["get"]
    store.calls.clear()
    assert resolve_id(manager, "abcdef0022x") == "abcdef0022x" and store.calls == ["get"]
    store.calls.clear()
    assert resolve_id(manager, "z") == "zz"  # a prefix: the get misses, then one listing
    assert store.calls == ["get", "list"]


def test_prefix_errors() -> None:
    manager = SessionManager(store=MemoryStore())
    for key, day in (("abcdef0011", 0), ("abcdef0022", 1)):
        manager.save_conversation(chat(key, day))
    with pytest.raises(click.ClickException, match=r"ambiguous: 2 conversations .*abcdef0011, abcdef0022"):
        resolve_id(manager, "abc")
    with pytest.raises(click.ClickException, match="no conversation 'nope'"):
        resolve_id(manager, "nope")
    assert resolve_id(manager, "nope", missing_ok=True) is None
    with pytest.raises(click.BadParameter):
        resolve_id(manager, "")


def test_every_id_argument_takes_a_unique_prefix(db: Path) -> None:
    assert json.loads(ok(db, "show", "ffff", "--json").stdout)["id"] == "ffff000001"
    assert json.loads(ok(db, "show", "FFFF", "--json").stdout)["id"] == "ffff000001"  # in upper case too
    assert json.loads(ok(db, "show", "abcdef0022", "--json").stdout)["id"] == "abcdef0022"  # exact beats prefix
    after = ok(db, "list", "--after", "9999", "--json")  # list --after
    assert json.loads(after.stdout)[0]["id"] == "ffff000001"
    ok(db, "delete", "9999")
    assert "99990000aa" not in {row["id"] for row in stored_rows(db)}


def test_an_ambiguous_or_unknown_prefix_is_a_one_line_error_that_changes_nothing(db: Path) -> None:
    before = stored_rows(db)
    result = run(db, "show", "abcdef")
    one_line_error(result, 1, "ambiguous: 3 conversations start with it (abcdef0011, abcdef0022, abcdef0022x)")
    assert len(result.stderr.strip().splitlines()) == 1
    one_line_error(run(db, "delete", "ffff", "abcdef"), 1, "ambiguous")
    one_line_error(run(db, "show", "0000"), 1, "no conversation '0000'")
    one_line_error(run(db, "show", ""), 2, "empty id")
    assert stored_rows(db) == before  # the ambiguous delete deleted nothing, not even ffff


# -- list ------------------------------------------------------------------------------


def test_list_shows_the_newest_twenty_unless_told(tmp_path: Path) -> None:
    path = tmp_path / "many.db"
    with SessionManager(db_path=path) as manager:
        manager.save_many(chat(f"id{number:04d}", number) for number in range(25))
    assert len(json.loads(ok(path, "list", "--json").stdout)) == 20
    assert json.loads(ok(path, "list", "--json").stdout)[0]["id"] == "id0024"
    assert len(json.loads(ok(path, "list", "-n", "3", "--json").stdout)) == 3
    assert len(json.loads(ok(path, "list", "--all", "--json").stdout)) == 25
    assert len(tsv(ok(path, "list", "--all"))) == 25
    one_line_error(run(path, "list", "--all", "-n", "2"), 2, "either --limit or --all")


def test_list_piped_is_tab_separated_with_title_or_preview_count_model_and_time(db: Path) -> None:
    rows = tsv(ok(db, "list"))
    assert list(rows[0]) == ["id", "title", "messages", "model", "updated"]
    by_id = {row["id"]: row for row in rows}  # full ids: for programs
    assert (
        by_id["ffff000001"]["title"] == "How do I sort a dict in python?"
    )  # untitled: the first user message, one line
    assert by_id["abcdef0022"] == {
        "id": "abcdef0022",
        "title": "Python typing",
        "messages": "4",
        "model": "qwen",
        "updated": "2025-02-02T08:00:00",
    }
    assert [row["id"] for row in rows] == [row["id"] for row in stored_rows(db)]  # newest first


def test_list_formats_and_columns(db: Path) -> None:
    assert json.loads(ok(db, "list", "--format", "json").stdout) == stored_rows(db)  # the library's dicts
    picked = json.loads(ok(db, "list", "--format", "json", "-c", "id,messages", "-c", "preview").stdout)
    assert picked[1] == {"id": "ffff000001", "messages": 4, "preview": "How do I sort a dict in python?"}
    lines = ok(db, "list", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [row["id"] for row in stored_rows(db)]
    cells = list(csv.reader(io.StringIO(ok(db, "list", "--format", "csv", "-c", "id,title").stdout)))
    assert cells[0] == ["id", "title"] and ["abcdef0022x", '\'=HYPERLINK("http://e.vil")|pipe'] in cells
    markdown = ok(db, "list", "--format", "markdown", "-c", "title,model").stdout.splitlines()
    assert markdown[:2] == ["| title | model |", "| --- | --- |"]
    assert '| \'=HYPERLINK("http://e.vil")\\|pipe | llama3 |' in markdown
    table = ok(db, "list", "--format", "table").stdout
    assert not BOX_DRAWING & set(table) and "ffff0000 " in table and "ffff000001" not in table  # short ids
    assert "abcdef001 " in table and "abcdef0022x" in table


def test_list_usage_errors(db: Path, tmp_path: Path) -> None:
    one_line_error(run(db, "list", "-c", "id,nope"), 2, "unknown column 'nope'")
    one_line_error(run(db, "list", "--json", "--format", "csv"), 2, "contradict")
    one_line_error(run(db, "list", "--since", "yesterday"), 1, "--since 'yesterday' is not a date")
    one_line_error(run(db, "list", "--until", "soon"), 1, "--until 'soon' is not a date")
    empty = tmp_path / "empty.db"
    SessionManager(db_path=empty).close()
    assert ok(empty, "list", "--format", "table").stdout == "no conversations\n"
    assert ok(empty, "list").stdout == "id\ttitle\tmessages\tmodel\tupdated\n"


def test_machine_formats_escape_control_characters_and_formulas() -> None:
    rows = [{"title": "-1+1\x1b[2J\tx\ny", "n": None, "tags": ["a"]}]
    assert render_rows(rows, ["title", "n", "tags"], "tsv") == 'title\tn\ttags\n\'-1+1\\x1b[2J x y\t\t["a"]\n'
    assert "\\u001b[2J" in render_rows(rows, ["title"], "json") and "\x1b" not in render_rows(rows, ["title"], "jsonl")


# -- show ------------------------------------------------------------------------------


def test_show_windows(db: Path) -> None:
    last = ok(db, "show", "ffff", "--last", "1").stdout
    assert "last word ffff000001" in last and "follow-up" not in last and "showing the last 1 message" in last
    turns = ok(db, "show", "ffff", "--turns", "1").stdout
    assert "follow-up ffff000001" in turns and "last word" in turns and "sort a dict" not in turns
    assert len(json.loads(ok(db, "show", "ffff", "--turns", "1", "--json").stdout)["messages"]) == 2
    whole = ok(db, "show", "ffff").stdout
    assert "sort a dict" in whole and "4 messages" in whole and "showing" not in whole
    one_line_error(run(db, "show", "ffff", "--last", "1", "--turns", "1"), 2, "either --last or --turns")
    one_line_error(run(db, "show", "ffff", "--last", "0"), 2, "--last")


def test_show_raw_and_markdown(db: Path) -> None:
    raw = ok(db, "show", "ffff", "--raw").stdout
    assert "How do I\nsort a dict in python?" in raw and "\x1b" not in raw
    markdown = ok(db, "show", "abcdef0022x", "--format", "markdown").stdout
    assert markdown.startswith("## =HYPERLINK") and "### user" in markdown and "- messages: 4" in markdown


# -- search ----------------------------------------------------------------------------


def test_search_counts_every_match_and_shows_snippets(db: Path) -> None:
    result = ok(db, "search", "python", "-n", "2")
    assert result.stderr == "4 conversations match\n"
    rows = tsv(result)
    assert len(rows) == 2 and all("**python**" in row["snippet"].lower() for row in rows)
    people = ok(db, "search", "python", "-n", "2", "--format", "table").stdout
    assert people.startswith("4 conversations match; showing 1-2\n")


def test_search_filters(db: Path) -> None:
    def found(*args: str) -> list[str]:
        return [row["id"] for row in tsv(ok(db, "search", *args, "--recent"))]

    assert found("python") == ["ffff000001", "abcdef0022x", "abcdef0022", "abcdef0011"]
    assert found("python", "--since", "2025-02-02", "--until", "2025-02-03") == ["abcdef0022x", "abcdef0022"]
    assert found("python", "--model", "qwen") == ["abcdef0022"]
    assert found("python", "--role", "assistant") == ["abcdef0011"]  # "python has none"
    assert found("python", "--role", "user") == ["ffff000001", "abcdef0022x", "abcdef0022"]
    assert found("typing", "--role", "user") == ["abcdef0022"]
    assert found("python", "--metadata", "topic=python") == ["abcdef0022"]
    role_hit = tsv(ok(db, "search", "python", "--role", "assistant", "-c", "message_id,snippet"))[0]
    assert role_hit["snippet"] == "**python** has none" and role_hit["message_id"]


def test_search_bad_input(db: Path) -> None:
    one_line_error(run(db, "search", "x", "--since", "yesterday"), 1, "--since 'yesterday' is not a date")
    one_line_error(run(db, "search", "x", "--until", "soon"), 1, "--until 'soon' is not a date")
    one_line_error(run(db, "search", "x", "--role", "robot"), 2, "robot")
    one_line_error(run(db, "search"), 2, "QUERY")


@pytest.mark.parametrize("args", [["-python"], ["--", "-python"], ["-python", "-java", "--recent"]])
def test_a_query_of_exclusions_alone_says_it_matches_nothing(db: Path, args: list[str]) -> None:
    result = ok(db, "search", *args)
    assert "only exclusions" in result.stderr and "0 conversations match" in result.stderr
    assert tsv(result) == []


def test_query_words_may_start_with_a_dash(db: Path) -> None:
    both = [row["id"] for row in tsv(ok(db, "search", "python", "-rust", "--recent"))]
    assert both == ["ffff000001", "abcdef0022x", "abcdef0022", "abcdef0011"]  # the answer of 0011 has no "rust"
    excluded = [row["id"] for row in tsv(ok(db, "search", "streams", "-java"))]
    assert excluded == []
    assert [row["id"] for row in tsv(ok(db, "search", "--recent", "-n", "1", "python", "-typing"))] == ["ffff000001"]


def test_words_last_keeps_options_and_their_values() -> None:
    context = click.Context(search_command)
    words_last = search_command.words_last  # type: ignore[attr-defined]
    assert words_last(context, ["-python", "-n", "5", "rust"]) == ["-n", "5", "--", "-python", "rust"]
    assert words_last(context, ["--limit=3", "-n3", "--recent", "-x"]) == ["--limit=3", "-n3", "--recent", "--", "-x"]
    assert words_last(context, ["a", "--", "-n", "--recent"]) == ["--", "a", "-n", "--recent"]
    assert words_last(context, ["--model", "-weird", "q"]) == ["--model", "-weird", "--", "q"]


@given(
    st.lists(st.dictionaries(st.sampled_from(["a", "b"]), st.one_of(st.none(), st.integers(), st.text())), max_size=4)
)
def test_every_format_keeps_control_characters_and_formulas_out(rows: list[dict[str, Any]]) -> None:
    from qv_session_manager.exchange.csv_view import FORMULA_TRIGGERS
    from qv_session_manager.safe_text import UNSAFE

    for output_format in ("json", "jsonl", "csv", "tsv", "markdown"):
        text = render_rows(rows, ["a", "b"], output_format)
        assert UNSAFE.search(text) is None, output_format
        if output_format == "tsv":  # one line a row, every cell safe in a spreadsheet
            lines = text.splitlines()
            assert len(lines) == len(rows) + 1
            assert not any(cell.startswith(FORMULA_TRIGGERS) for line in lines[1:] for cell in line.split("\t"))
    assert [row.get("a") for row in json.loads(render_rows(rows, ["a"], "json"))] == [row.get("a") for row in rows]
