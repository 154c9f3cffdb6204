"""No stored or given text drives the terminal: every command, hostile text in every field.

The CliRunner tests check every command's output for any control character the
data brought (output to a pipe carries no styles, so there must be none at all).
The pseudo-terminal tests run the real ``qv-sessions`` on a terminal, where rich
adds its own styles: no escape sequence but rich's styling may appear, no BEL, C1
or bidi control at all, and in tmux the screen still shows what was there before
and the window title is unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from qv_session_manager import SessionManager
from qv_session_manager.cli import main
from qv_session_manager.safe_text import UNSAFE

from hostile import (
    ATTACK,
    CONVERSATION_ID,
    FILE_ATTACK,
    SHOWN,
    TITLE_SHOWN,
    hostile_conversation,
)

pytestmark = pytest.mark.slow  # pseudo-terminals, tmux and real processes for every command

COMMAND = str(Path(sys.executable).with_name("qv-sessions"))
#: The escape sequences rich writes for styles, tables and the progress bar.
RICH_SEQUENCE = re.compile(rb"\x1b\[(?:\??[0-9;]*[mKAlhG])")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.db"
    with SessionManager(db_path=path) as manager:
        manager.save_conversation(hostile_conversation())
    return path


@pytest.fixture
def bad_import(tmp_path: Path) -> Path:
    """An export whose second record is broken in a way the error message quotes."""
    path = tmp_path / "bad.jsonl"
    header = json.dumps({"format": "qv-session-manager", "version": 1})
    broken = json.dumps({"id": ATTACK, "title": ATTACK, "messages": ATTACK})
    path.write_text(f"{header}\n{broken}\n", encoding="utf-8")
    return path


def commands(store: Path, tmp_path: Path, bad_import: Path) -> list[list[str]]:
    """Every command, with the hostile store, hostile ids and hostile file names."""
    url = f"sqlite:///{store}"
    hostile_file = str(tmp_path / f"file{FILE_ATTACK}.md")
    return [
        ["--url", url, "list"],
        ["--url", url, "list", "--json"],
        ["--url", url, "show", CONVERSATION_ID],
        ["--url", url, "show", CONVERSATION_ID, "--json"],
        ["--url", url, "show", f"missing{ATTACK}"],
        ["--url", url, "search", "hello"],
        ["--url", url, "search", "hello", "--recent"],
        ["--url", url, "search", "hello", "--json"],
        ["--url", url, "search", f"x{ATTACK}"],
        ["--url", url, "search", "hello", "--mode", "hybrid", "--embedder", f"x{ATTACK}"],
        ["--url", url, "embed", "--embedder", f"x{ATTACK}"],
        ["--url", url, "list", "--meta", f"key{ATTACK}=value{ATTACK}"],
        ["--url", url, "list", "--meta", f"bad{ATTACK}"],
        ["--url", url, "export", hostile_file, "--format", "markdown"],
        ["--url", url, "export", str(tmp_path / f"missing{FILE_ATTACK}" / "x.csv"), "--format", "csv"],
        ["--url", url, "import", str(tmp_path / f"missing{FILE_ATTACK}.jsonl")],
        ["--url", url, "import", str(bad_import), "--skip-bad-lines"],
        ["--url", url, "import", str(bad_import)],
        ["--url", url, "delete", f"missing{ATTACK}"],
        ["--url", url, "prune", "--keep-newest", "0", "--dry-run"],
        ["--url", url, "prune", "--before", f"when{ATTACK}"],
        ["--url", url, "stats"],
        ["--url", url, "doctor"],
        ["backends"],
        ["--url", url, "list", f"extra{ATTACK}"],  # a usage error quoting the argument
        ["--url", f"sqlite:///{tmp_path / f'nothing{FILE_ATTACK}.db'}", "list"],
        ["--url", f"nosuch{ATTACK}://x", "list"],
        ["--url", f"sqlite:/{ATTACK}", "stats"],
        ["copy", url, f"sqlite:///{tmp_path / f'copy{FILE_ATTACK}.db'}"],
        ["copy", f"sqlite:///{tmp_path / f'nothing{FILE_ATTACK}.db'}", "memory://"],
        ["--url", url, "prune", "--keep-newest", "0", "--yes"],
    ]


def run(args: list[str]) -> Result:
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_no_command_lets_a_control_character_of_the_data_through(store: Path, tmp_path: Path, bad_import: Path) -> None:
    showed_attack = 0
    for args in commands(store, tmp_path, bad_import):
        result = run(args)
        assert result.exit_code in (0, 1, 2), (args, result.output)
        for stream in (result.stdout, result.stderr):
            found = UNSAFE.search(stream)
            assert found is None, (args, stream)
        showed_attack += any(shown in result.output for shown in TITLE_SHOWN)
    assert showed_attack >= 18  # the hostile text was shown (escaped), not dropped (some commands never show it)


def test_the_transcript_shows_every_field_escaped_and_markup_literally(store: Path) -> None:
    output = run(["--url", f"sqlite:///{store}", "show", CONVERSATION_ID]).stdout
    assert (
        f"title{SHOWN}  id{SHOWN}" in output
        and f'result of tool call =HYPERLINK("http://e.vil","x")call{SHOWN}' in output
    )
    assert f"model{SHOWN}" in output and f"hello {SHOWN} world" in output and f"→ tool call tool{SHOWN}(" in output
    assert "result of tool call =HYPERLINK" in output and "[link=http://e.vil]y[/link]" in output


def test_show_keeps_newlines_and_tabs(tmp_path: Path) -> None:
    path = tmp_path / "lines.db"
    conversation = hostile_conversation("lines")
    conversation.messages[0].content = f"line one{ATTACK}\n\tline two\n\nline four"
    with SessionManager(db_path=path) as manager:
        manager.save_conversation(conversation)
    output = run(["--url", f"sqlite:///{path}", "show", "lines"]).stdout
    lines = output.splitlines()
    first = next(index for index, line in enumerate(lines) if line.startswith("line one"))
    assert lines[first] == f"line one{SHOWN}"
    assert lines[first + 1].strip() == "line two" and lines[first + 1].startswith(" ")  # the tab, expanded
    assert lines[first + 2] == "" and lines[first + 3] == "line four"


def test_json_output_escapes_the_characters_and_keeps_the_data(store: Path) -> None:
    output = run(["--url", f"sqlite:///{store}", "show", CONVERSATION_ID, "--json"]).stdout
    assert not UNSAFE.search(output) and "\\u009b" in output and "\\u202e" in output
    assert json.loads(output)["title"].endswith(ATTACK)


def test_an_export_to_a_pipe_stays_exact(store: Path) -> None:
    result = run(["--url", f"sqlite:///{store}", "export", "-", "--format", "csv", "--csv-raw"])
    assert ATTACK in result.stdout  # data for a program: not altered


# -- the real command on a pseudo-terminal ---------------------------------------------


def on_terminal(args: list[str], env: dict[str, str]) -> bytes:
    """The bytes the real command writes to a 250x60 pseudo-terminal (stdout and stderr both)."""
    pexpect = pytest.importorskip("pexpect")  # POSIX only
    assert Path(COMMAND).exists(), f"{COMMAND} is not installed (pip install -e .)"
    child = pexpect.spawn(COMMAND, args, env=env, dimensions=(60, 250), timeout=60)
    output: bytes = child.read()
    child.close()
    assert child.exitstatus in (0, 1, 2), (args, output)
    return output


def assert_terminal_safe(args: list[str], output: bytes) -> None:
    text = output.decode("utf-8")
    leftover = RICH_SEQUENCE.sub(b"", output)
    assert b"\x1b" not in leftover, (args, output)
    assert not any(character in text for character in "\x07\x9b\u202e"), (args, output)
    assert b"\x1b[2J" not in output and b"\x1b]" not in output, (args, output)


def test_every_command_on_a_real_terminal(store: Path, tmp_path: Path, bad_import: Path) -> None:
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "250", "LINES": "60"}
    env.pop("NO_COLOR", None)
    url = f"sqlite:///{store}"
    extra = [
        ["--url", url, "export", "-", "--format", "markdown"],
        ["--url", url, "export", "-", "--format", "csv"],
        ["--url", url, "export", "-", "--format", "jsonl"],
        ["--url", url, "export", "-", "--format", "json"],
    ]
    escaped_somewhere = 0
    # The CliRunner test above runs them all; here one of each kind keeps the processes few.
    repeated = {"--recent", "--meta", "--yes", "--before", "--json"}
    for args in [*(args for args in commands(store, tmp_path, bad_import) if not repeated & set(args)), *extra]:
        output = on_terminal(args, env)
        assert_terminal_safe(args, output)
        escaped_somewhere += any(shown.encode() in output for shown in TITLE_SHOWN)
    assert escaped_somewhere >= 14
    # A terminal shows the export escaped; the CSV's line ends are plain newlines there.
    csv_output = on_terminal(["--url", url, "export", "-", "--format", "csv"], env)
    assert f"hello {SHOWN} world".encode() in csv_output


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """tmux on a private server of this test's own, killed afterwards."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    socket = f"qv-test-{uuid.uuid4().hex[:12]}"

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", socket, *args], check=False, capture_output=True, text=True, timeout=30)

    yield call
    call("kill-server")


def screen_after(tmux: Callable[..., subprocess.CompletedProcess[str]], script: Path) -> tuple[str, str]:
    """Run ``script`` in a fresh 250x60 tmux pane; the visible screen and the pane title once it is done."""
    script.write_text("unset COLUMNS LINES\n" + script.read_text(encoding="utf-8"), encoding="utf-8")
    assert (
        tmux("new-session", "-d", "-x", "250", "-y", "60", "-s", "safety", f"sh {shlex.quote(str(script))}").returncode
        == 0
    )
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-t", "safety").stdout
        if "ALL-DONE" in screen:
            return screen, tmux("display-message", "-p", "-t", "safety", "#{pane_title}").stdout.strip()
        time.sleep(0.2)
    # An escape sequence left open swallows the rest of the output, the end marker included.
    raise AssertionError(f"no end marker on the screen (cleared, or swallowed by an escape sequence): {screen!r}")


def test_the_screen_is_unchanged_in_a_real_terminal(store: Path, tmp_path: Path, tmux: Callable[..., object]) -> None:
    url = shlex.quote(f"sqlite:///{store}")
    ident = shlex.quote(CONVERSATION_ID)
    script = tmp_path / "show.sh"
    script.write_text(
        "printf 'BEFORE-MARKER\\n'\n"
        f"{shlex.quote(COMMAND)} --url {url} show {ident}\n"
        f"{shlex.quote(COMMAND)} --url {url} search hello\n"
        f"{shlex.quote(COMMAND)} --url {url} list\n"
        f"{shlex.quote(COMMAND)} --url {url} show missing{shlex.quote(ATTACK)}\n"
        "printf 'ALL-DONE\\n'\nsleep 30\n",
        encoding="utf-8",
    )
    screen, title = screen_after(tmux, script)  # type: ignore[arg-type]
    assert "BEFORE-MARKER" in screen  # not cleared
    assert "PWNED" not in title  # not retitled
    assert "\\x1b]0;PWNED\\x07" in screen and "\\u202e" in screen and "[red]x[/red]" in screen
    assert "hello \\x1b[2J" in screen and "error: no conversation 'missing\\x1b[2J" in screen


def test_the_tmux_check_sees_an_attack(tmp_path: Path, tmux: Callable[..., object]) -> None:
    """The check above would catch raw output: printed as it is, the attack clears and retitles."""
    script = tmp_path / "raw.sh"
    script.write_text(
        f"printf 'BEFORE-MARKER\\n'\nprintf '%s\\n' {shlex.quote(ATTACK)}\nprintf 'ALL-DONE\\n'\nsleep 30\n",
        encoding="utf-8",
    )
    screen, title = screen_after(tmux, script)  # type: ignore[arg-type]
    assert "BEFORE-MARKER" not in screen and "PWNED" in title
