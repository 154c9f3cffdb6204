"""Browsing on a real terminal: the real ``qv-sessions`` in an 80x24 pseudo-terminal (pexpect).

Checked here: the list fits 80 columns with short ids, a terminal gets styles and a
pipe plain text, long output goes through ``$PAGER`` (unless ``--no-pager``),
``show`` renders Markdown without links or escape sequences of the data, and
hostile text stays escaped in every new output form.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

from qv_session_manager import SessionManager

from hostile import CONVERSATION_ID, SHOWN, hostile_conversation

pytestmark = pytest.mark.slow  # real processes on pseudo-terminals

COMMAND = str(Path(sys.executable).with_name("qv-sessions"))
STYLE = re.compile(rb"\x1b\[[0-9;]*m")
RICH_SEQUENCE = re.compile(rb"\x1b\[(?:\??[0-9;]*[mKAlhG])")
BASE = datetime(2025, 3, 1, 9, 0, 0)
BOX_DRAWING = {chr(code) for code in range(0x2500, 0x2580)}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """30 conversations (every other one untitled, with a long first message) and the hostile one."""
    path = tmp_path / "browse.db"
    with SessionManager(db_path=path) as manager:
        for number in range(30):
            moment = BASE + timedelta(hours=number)
            title = f"A conversation with a rather long title, number {number}" if number % 2 else None
            conversation = Conversation(title=title, model_name="llama3.2:latest", created_at=moment, updated_at=moment)
            conversation.messages = [
                Message(
                    role=MessageRole.USER,
                    content=f"How do I write python code for task {number}?\nmore",
                    created_at=moment,
                ),
                Message(
                    role=MessageRole.ASSISTANT,
                    created_at=moment,
                    content=f"# Answer {number}\n\nUse **bold** and [a link](http://e.vil/x) and `code`.\n\n"
                    "<div>html block</div>\n\n<!-- html comment -->",
                ),
            ]
            manager.save_conversation(conversation)
        manager.save_conversation(hostile_conversation())
    return path


def environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES", "NO_COLOR", "PAGER")}
    return {**env, "TERM": "xterm-256color", **extra}


def on_terminal(store: Path, *args: str, env: dict[str, str] | None = None, rows: int = 24) -> bytes:
    """Everything the real command writes to an 80-column pseudo-terminal of ``rows`` lines."""
    pexpect = pytest.importorskip("pexpect")  # POSIX only
    child = pexpect.spawn(
        COMMAND, ["--url", f"sqlite:///{store}", *args], env=env or environment(), dimensions=(rows, 80), timeout=60
    )
    output: bytes = child.read()
    child.close()
    assert child.exitstatus == 0, (args, output)
    return output


def screen_lines(output: bytes) -> list[str]:
    return STYLE.sub(b"", output).decode("utf-8").replace("\r\n", "\n").splitlines()


def assert_terminal_safe(output: bytes) -> None:
    assert b"\x1b" not in RICH_SEQUENCE.sub(b"", output), output
    assert b"\x1b]" not in output and b"\x1b[2J" not in output  # no title, no hyperlink, no clearing
    assert not any(character in output.decode("utf-8") for character in "\x07\x9b\u202e")


def test_list_fits_80_columns_with_short_ids_and_styles(store: Path) -> None:
    output = on_terminal(store, "list", "-n", "10", rows=40)
    lines = screen_lines(output)
    assert lines[0].split() == ["id", "title", "msgs", "model", "updated"]
    assert len(lines) == 11 and all(len(line) <= 80 for line in lines)
    ids = [line.split()[0] for line in lines[1:]]
    assert all(len(key) >= 8 for key in ids) and len(set(ids)) == 10
    assert all(line.rstrip().endswith(("2025-03-02 14:00", "2025-03-02 13:00")) for line in lines[1:3])
    assert any("How do I write python" in line for line in lines)  # untitled: the first message
    assert b"\x1b[1m" in output  # a terminal gets styles (the bold header)
    assert not BOX_DRAWING & set(output.decode("utf-8"))
    # The short id typed back names the conversation.
    shown = on_terminal(store, "show", ids[0], "--raw", rows=40)
    assert ids[0].encode() in shown and b"A conversation with a rather long title, number 29" in shown


def test_piped_output_is_plain_tab_separated_text(store: Path) -> None:
    finished = subprocess.run(
        [COMMAND, "--url", f"sqlite:///{store}", "list", "-n", "3"],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
        check=True,
    )
    assert "\x1b" not in finished.stdout and not BOX_DRAWING & set(finished.stdout)
    header, first, *_ = finished.stdout.splitlines()
    assert header.split("\t") == ["id", "title", "messages", "model", "updated"]
    assert len(first.split("\t")[0]) == 36  # the whole id, for programs


def pager_script(tmp_path: Path) -> str:
    script = tmp_path / "pager.sh"
    script.write_text("#!/bin/sh\necho PAGER-STARTS\ncat\necho PAGER-ENDS\n", encoding="utf-8")
    script.chmod(0o755)
    return str(script)


def test_long_output_goes_through_the_pager_and_short_output_does_not(store: Path, tmp_path: Path) -> None:
    env = environment(PAGER=pager_script(tmp_path))
    paged = on_terminal(store, "list", "--all", env=env)  # 32 lines on a 24-line screen
    assert paged.startswith(b"PAGER-STARTS") and b"PAGER-ENDS" in paged and b"2025-03-02 14:00" in paged
    assert b"PAGER" not in on_terminal(store, "list", "--all", "--no-pager", env=env)
    assert b"PAGER" not in on_terminal(store, "list", "-n", "5", env=env)  # fits the screen
    assert b"PAGER" not in on_terminal(store, "list", "--all", env=env, rows=60)
    transcript = on_terminal(store, "search", "python", "-n", "15", env=env)  # 31 lines
    assert transcript.startswith(b"PAGER-STARTS")


def test_show_renders_markdown_on_a_terminal_and_raw_text_with_raw(store: Path, tmp_path: Path) -> None:
    first = screen_lines(on_terminal(store, "list", "-n", "1", rows=40))[1].split()[0]
    rendered = on_terminal(store, "show", first, rows=40)
    text = "\n".join(screen_lines(rendered))
    assert "Use bold and a link (http://e.vil/x) and code." in text  # Markdown rendered, link written out
    assert "**bold**" not in text and b"\x1b]8;" not in rendered  # no clickable (hidden) link
    assert "<div>html block</div>" in text and "<!-- html comment -->" in text  # HTML hides nothing
    assert_terminal_safe(rendered)
    raw = "\n".join(screen_lines(on_terminal(store, "show", first, "--raw", rows=40)))
    assert "Use **bold** and [a link](http://e.vil/x) and `code`." in raw and "# Answer 29" in raw


def test_hostile_text_stays_escaped_in_the_new_outputs(store: Path) -> None:
    # The hostile conversation's content also holds rich markup and an OSC title sequence.
    for args in (
        ["show", CONVERSATION_ID],
        ["show", CONVERSATION_ID, "--raw"],
        ["show", CONVERSATION_ID, "--format", "markdown"],
        ["list", "--all", "--no-pager", "-c", "id,title,preview,model,metadata"],
        ["list", "--format", "markdown"],
        ["list", "--format", "csv", "-c", "title,preview"],
        ["search", "hello", "--format", "tsv", "-c", "title,snippet"],
        ["search", "hello"],
    ):
        output = on_terminal(store, *args, rows=60)
        assert_terminal_safe(output)
    lines = screen_lines(on_terminal(store, "show", CONVERSATION_ID, rows=60))
    assert SHOWN in [line.strip() for line in lines]  # the message (wrapped at 80), escaped, markup as written
    assert "".join(line.rstrip() for line in lines).count(SHOWN) >= 3  # title, id, content (lines wrap at 80)


def test_untitled_search_hits_are_headed_by_their_first_message_escaped(store: Path) -> None:
    from hostile import ATTACK

    moment = BASE + timedelta(days=5)
    untitled = Conversation(title=None, model_name="m", created_at=moment, updated_at=moment)
    untitled.messages = [Message(role=MessageRole.USER, content=f"zebra {ATTACK} stripes", created_at=moment)]
    with SessionManager(db_path=store) as manager:
        manager.save_conversation(untitled)
    output = on_terminal(store, "search", "python", "-n", "4", rows=40)
    lines = screen_lines(output)
    # Task 29 is titled, task 28 is not: its heading is its first user message, as in list.
    assert "A conversation with a rather long" in lines[1] and "How do I write python code for tas" in lines[3]
    assert "(untitled)" not in "".join(lines)
    hostile = on_terminal(store, "search", "zebra", rows=40)
    assert_terminal_safe(hostile)
    assert "zebra \\x1b[2J" in screen_lines(hostile)[1]


def test_a_dash_query_on_a_terminal(store: Path) -> None:
    output = on_terminal(store, "search", "-python")
    assert b"only exclusions" in output and b"no matches" in output


def test_search_on_a_terminal_fits_80_columns_in_both_views(store: Path) -> None:
    output = on_terminal(store, "search", "python", "-n", "3", rows=40)
    people = screen_lines(output)
    assert people[0] == "30 conversations match; showing 1-3" and len(people) == 7
    assert all(len(line) <= 80 for line in people) and "How do I write python code for task 29" in people[2]
    assert b"\x1b[1;7mpython\x1b[0m" in output  # the match highlighted
    assert len(people[1].split()[0]) == 8  # a short id
    picked = on_terminal(store, "search", "python", "-n", "3", "-c", "id,updated,title,snippet", rows=40)
    lines = screen_lines(picked)
    assert lines[1].split() == ["id", "updated", "title", "snippet"] and len(lines) == 5
    assert all(len(line) <= 80 for line in lines) and "\ue000" not in "".join(lines)
    assert b"\x1b[1m" in picked and b"2025-03-02 14:00" in picked
