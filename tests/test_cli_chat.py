"""``qv-sessions chat`` on a real terminal: the real command in a pseudo-terminal (pexpect),
talking HTTP to the stand-in Ollama server of ``ollama_standin.py`` run by this process.

What the store holds afterwards is read back through a SessionManager on the same
file, as another process would see it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ollama
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import PydanticSerializationError
from qv_ollama_sdk.client import OllamaChatClient
from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

from qv_session_manager import SessionManager
from qv_session_manager.cli import main
from qv_session_manager.cli.turns import ReplyPrinter, SaveShield, take_turn
from qv_session_manager.errors import StorageError
from qv_session_manager.ollama import autosave
from qv_session_manager.safe_text import terminal_safe

from ollama_standin import (
    FAIL_MIDWAY,
    HELD_CHUNK,
    HOLD,
    HOSTILE,
    HOSTILE_REPLY,
    MISSING_MODEL,
    StandIn,
    environment,
    route_ollama,
)

pexpect = pytest.importorskip("pexpect")  # POSIX only

COMMAND = str(Path(sys.executable).with_name("qv-sessions"))
RICH_SEQUENCE = re.compile(rb"\x1b\[(?:\??[0-9;]*[mKAlhG])")
PROMPT = "> "
#: Real processes on pseudo-terminals (the quick tier deselects them).
terminal = pytest.mark.slow
BASE = datetime(2025, 3, 1, 9, 0, 0)
#: How the hostile reply looks on the terminal: every control character escaped, markup as written.
HOSTILE_SHOWN = "start \\x1b[2J \\x1b]0;PWNED\\x07 \\x9b31m\\u202e[red]x[/red] end"


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "chats.db"


def terminal_env(url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("COLUMNS", "LINES", "NO_COLOR", "PAGER", "QV_SESSION_MANAGER_URL", "OLLAMA_MODEL")
    }
    return {**env, **environment(url), "TERM": "xterm-256color"}


def spawn(db: Path, url: str, *args: str) -> Any:
    """The real ``qv-sessions --url <db> chat ARGS`` on an 80x24 pseudo-terminal, talking to ``url``."""
    assert Path(COMMAND).exists(), f"{COMMAND} is not installed (pip install -e .)"
    return pexpect.spawn(
        COMMAND, ["--url", f"sqlite:///{db}", "chat", *args], env=terminal_env(url), dimensions=(24, 80), timeout=30
    )


def say_line(child: Any, text: str) -> None:
    """Wait for the prompt, then type ``text`` and Enter."""
    child.expect_exact(PROMPT)
    child.sendline(text)


def finish(child: Any) -> bytes:
    """Everything the child printed after the last match, once it has exited."""
    child.expect(pexpect.EOF)
    child.close()
    return bytes(child.before)


def rows(db: Path, conversation_id: str | None = None) -> list[tuple[str, str]]:
    """(role, content) of the one stored conversation (or of ``conversation_id``)."""
    with SessionManager(db_path=db) as manager:
        key = conversation_id or only_id(manager)
        conversation = manager.load_conversation(key)
    assert conversation is not None
    return [(m.role.value, m.content) for m in conversation.messages]


def only_id(manager: SessionManager) -> str:
    listed = manager.list_conversations()
    assert len(listed) == 1, listed
    return str(listed[0]["id"])


def seed(db: Path, name: str, turns: int, moment: datetime) -> str:
    """A stored conversation of ``turns`` turns ("<name> question N" / "<name> answer N"); its id."""
    conversation = Conversation(model_name="standin-model", created_at=moment, updated_at=moment)
    for number in range(turns):
        conversation.messages += [
            Message(role=MessageRole.USER, content=f"{name} question {number}", created_at=moment),
            Message(role=MessageRole.ASSISTANT, content=f"{name} answer {number}", created_at=moment),
        ]
    with SessionManager(db_path=db) as manager:
        manager.save_conversation(conversation)
    return str(conversation.id)


def real(db: Path, *args: str) -> str:
    """Standard output of the real command run with a pipe (plain text)."""
    finished = subprocess.run(
        [COMMAND, "--url", f"sqlite:///{db}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=terminal_env("http://127.0.0.1:9"),
    )
    return finished.stdout


def assert_terminal_safe(output: bytes) -> None:
    assert b"\x1b" not in RICH_SEQUENCE.sub(b"", output), output
    assert b"\x1b]" not in output and b"\x1b[2J" not in output
    assert not any(character in output.decode("utf-8") for character in "\x07\x9b\u202e"), output


# -- new chats -------------------------------------------------------------------------


@terminal
def test_a_new_chat_streams_saves_every_turn_and_shows_in_list_and_show(standin: StandIn, db: Path) -> None:
    child = spawn(db, standin.url, "--model", "standin-model", "--system", "Be brief.")
    say_line(child, "hello")
    child.expect_exact("echo: hello (2 messages)")
    say_line(child, "again")
    child.expect_exact("echo: again (4 messages)")
    child.expect_exact(PROMPT)
    child.sendeof()  # Ctrl-D
    child.expect(r"saved as ([0-9a-f-]{36}); continue with `qv-sessions chat ([0-9a-f]{8})`")
    conversation_id, short = (group.decode() for group in child.match.groups())
    finish(child)
    assert child.exitstatus == 0

    assert rows(db) == [
        ("system", "Be brief."),
        ("user", "hello"),
        ("assistant", "echo: hello (2 messages)"),
        ("user", "again"),
        ("assistant", "echo: again (4 messages)"),
    ]
    assert [request["model"] for request in standin.requests] == ["standin-model"] * 2
    assert all(request["stream"] for request in standin.requests)  # replies are streamed
    listed = real(db, "list").splitlines()
    assert listed[1].split("\t")[:4] == [conversation_id, "hello", "5", "standin-model"]
    assert "echo: again (4 messages)" in real(db, "show", short, "--raw")


@terminal
def test_a_new_chat_uses_ollama_model_when_no_model_is_given(standin: StandIn, db: Path) -> None:
    env = {**terminal_env(standin.url), "OLLAMA_MODEL": "from-the-environment"}
    child = pexpect.spawn(COMMAND, ["--url", f"sqlite:///{db}", "chat"], env=env, dimensions=(24, 80), timeout=30)
    say_line(child, "hi")
    child.expect_exact("echo: hi (1 messages)")
    say_line(child, "/exit")
    finish(child)
    assert child.exitstatus == 0
    assert standin.requests[-1]["model"] == "from-the-environment"


@terminal
def test_leaving_before_the_first_turn_stores_nothing(standin: StandIn, db: Path) -> None:
    child = spawn(db, standin.url, "-m", "standin-model")
    say_line(child, "/exit")
    output = finish(child)
    assert child.exitstatus == 0 and b"saved as" not in output
    with SessionManager(db_path=db) as manager:
        assert manager.list_conversations() == []


# -- resuming ----------------------------------------------------------------------------


@terminal
def test_resume_by_prefix_shows_the_last_turns_and_continues_the_history(standin: StandIn, db: Path) -> None:
    conversation_id = seed(db, "old", 5, BASE)
    with SessionManager(db_path=db) as manager:
        earlier = [str(m.id) for m in manager.load_conversation(conversation_id).messages]  # type: ignore[union-attr]
    child = spawn(db, standin.url, conversation_id[:8].upper(), "--turns", "2")
    child.expect_exact(PROMPT)
    shown = bytes(child.before).decode()
    assert "showing the last 2 turns" in shown
    assert all(f"old question {n}" in shown and f"old answer {n}" in shown for n in (3, 4))
    assert not any(f"old question {n}" in shown for n in (0, 1, 2))  # only the window
    assert f"continuing {conversation_id}" in shown
    child.sendline("more")
    child.expect_exact("echo: more (11 messages)")  # the whole history went to the model
    say_line(child, "/exit")
    finish(child)
    assert child.exitstatus == 0
    assert [m["content"] for m in standin.requests[-1]["messages"][:2]] == ["old question 0", "old answer 0"]
    with SessionManager(db_path=db) as manager:
        conversation = manager.load_conversation(conversation_id)
    assert conversation is not None and [str(m.id) for m in conversation.messages][:10] == earlier
    assert [m.content for m in conversation.messages][10:] == ["more", "echo: more (11 messages)"]


@terminal
def test_last_resumes_the_most_recently_updated_conversation(standin: StandIn, db: Path) -> None:
    older = seed(db, "older", 2, BASE)
    newer = seed(db, "newer", 2, BASE + timedelta(hours=1))
    child = spawn(db, standin.url, "--last")
    child.expect_exact(PROMPT)
    shown = bytes(child.before).decode()
    assert "newer answer 1" in shown and "older" not in shown
    child.sendline("next")
    child.expect_exact("echo: next (5 messages)")
    say_line(child, "/exit")
    finish(child)
    assert child.exitstatus == 0
    assert rows(db, newer)[-2:] == [("user", "next"), ("assistant", "echo: next (5 messages)")]
    assert len(rows(db, older)) == 4


@terminal
def test_model_on_resume_switches_the_model_and_records_it(standin: StandIn, db: Path) -> None:
    conversation_id = seed(db, "old", 1, BASE)
    child = spawn(db, standin.url, conversation_id[:10], "--model", "other-model")
    say_line(child, "hi")
    child.expect_exact("echo: hi (3 messages)")
    say_line(child, "/exit")
    finish(child)
    assert standin.requests[-1]["model"] == "other-model"
    with SessionManager(db_path=db) as manager:
        conversation = manager.load_conversation(conversation_id)
    assert conversation is not None and conversation.model_name == "other-model"


@terminal
def test_resuming_a_conversation_stored_without_a_model_uses_the_default_and_records_it(
    standin: StandIn, db: Path, tmp_path: Path
) -> None:
    # ShareGPT imports store no model: the chat must not ask Ollama for model None.
    sharegpt = tmp_path / "sharegpt.json"
    sharegpt.write_text('[{"id": "a", "conversations": [{"from": "human", "value": "old question"}]}]')
    real(db, "import", str(sharegpt))
    env = {**terminal_env(standin.url), "OLLAMA_MODEL": "from-the-environment"}
    child = pexpect.spawn(
        COMMAND, ["--url", f"sqlite:///{db}", "chat", "--last"], env=env, dimensions=(24, 80), timeout=30
    )
    child.expect_exact(PROMPT)
    assert b"with from-the-environment;" in bytes(child.before) and b"None" not in bytes(child.before)
    child.sendline("hi")
    child.expect_exact("echo: hi (2 messages)")
    say_line(child, "/exit")
    finish(child)
    assert child.exitstatus == 0
    assert standin.requests[-1]["model"] == "from-the-environment"
    with SessionManager(db_path=db) as manager:
        conversation = manager.load_conversation(only_id(manager))
    assert conversation is not None and conversation.model_name == "from-the-environment"


# -- Ctrl-C and errors -------------------------------------------------------------------


@terminal
def test_ctrl_c_mid_stream_drops_the_partial_reply_and_the_chat_goes_on(standin: StandIn, db: Path) -> None:
    child = spawn(db, standin.url, "-m", "standin-model")
    say_line(child, "hello")
    child.expect_exact("echo: hello (1 messages)")
    say_line(child, HOLD)
    child.expect_exact(f"echo: {HELD_CHUNK}")  # the reply has started; the stand-in holds the rest
    child.sendintr()
    child.expect_exact("stopped: the partial reply is dropped; your message is saved")
    # The store is consistent at once: the user message alone, no partial reply.
    assert rows(db) == [("user", "hello"), ("assistant", "echo: hello (1 messages)"), ("user", HOLD)]
    say_line(child, "after")
    child.expect_exact("echo: after (4 messages)")  # the stopped message went as history
    child.expect_exact(PROMPT)
    child.sendintr()  # Ctrl-C at the prompt ends the chat cleanly
    finish(child)
    assert child.exitstatus == 0
    assert rows(db) == [
        ("user", "hello"),
        ("assistant", "echo: hello (1 messages)"),
        ("user", HOLD),
        ("user", "after"),
        ("assistant", "echo: after (4 messages)"),
    ]


@terminal
def test_an_unreachable_server_gives_one_error_line_and_the_chat_goes_on(db: Path) -> None:
    with StandIn() as gone:
        url = gone.url  # a port that nothing serves once closed
    child = spawn(db, url, "-m", "standin-model")
    say_line(child, "anyone there?")
    child.expect(r"error: ([^\r\n]*)\r\n")
    line = child.match.group(1).decode()
    assert line == (
        f"cannot reach Ollama at {url}: start it (`ollama serve`) or point OLLAMA_HOST at it; "
        "your message is saved, type another message or /exit"
    )
    child.expect_exact(PROMPT)  # the chat goes on
    assert b"Traceback" not in bytes(child.before)
    child.sendeof()
    output = finish(child)
    assert b"Traceback" not in output
    assert child.exitstatus == 1  # the last turn failed
    assert rows(db) == [("user", "anyone there?")]  # autosave's rule: the unanswered message is kept


@terminal
def test_a_model_not_pulled_says_how_to_pull_it(standin: StandIn, db: Path) -> None:
    child = spawn(db, standin.url, "--model", MISSING_MODEL)
    say_line(child, "hi")
    child.expect(r"error: ([^\r\n]*)\r\n")
    assert f"run `ollama pull {MISSING_MODEL}` or choose another with --model" in child.match.group(1).decode()
    say_line(child, "/exit")
    finish(child)
    assert child.exitstatus == 1


@terminal
def test_a_stream_failing_midway_saves_the_message_alone_and_the_next_turn_works(standin: StandIn, db: Path) -> None:
    child = spawn(db, standin.url, "-m", "standin-model")
    say_line(child, FAIL_MIDWAY)
    child.expect(r"error: Ollama failed in the middle of the reply: [^\r\n]*\r\n")
    assert rows(db) == [("user", FAIL_MIDWAY)]
    say_line(child, "retry")
    child.expect_exact("echo: retry (2 messages)")
    say_line(child, "/exit")
    finish(child)
    assert child.exitstatus == 0  # the last turn went well
    assert rows(db) == [("user", FAIL_MIDWAY), ("user", "retry"), ("assistant", "echo: retry (2 messages)")]


# -- hostile model output ----------------------------------------------------------------


@terminal
def test_hostile_model_output_stays_escaped_live_and_on_resume(standin: StandIn, db: Path) -> None:
    child = spawn(db, standin.url, "-m", "standin-model")
    say_line(child, HOSTILE)
    child.expect_exact(HOSTILE_SHOWN)
    say_line(child, "/exit")
    output = bytes(child.before) + bytes(child.after)
    output += finish(child)
    assert child.exitstatus == 0
    assert rows(db)[-1] == ("assistant", HOSTILE_REPLY)  # the store keeps the exact text

    with SessionManager(db_path=db) as manager:
        conversation_id = only_id(manager)
    resumed = spawn(db, standin.url, conversation_id, "--turns", "1")
    resumed.expect_exact(PROMPT)
    shown = bytes(resumed.before)
    resumed.sendline("/exit")
    finish(resumed)
    for captured in (output, shown):
        assert_terminal_safe(captured)
    assert b"[red]x[/red]" in shown and b"\\x1b]0;PWNED\\x07" in shown


@given(
    st.lists(
        st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("\x1b\x07\x9b\u202e\ud800\udfff\r\n\t[]/")),
        max_size=8,
    )
)
def test_chunks_are_escaped_as_the_whole_reply_would_be(chunks: list[str]) -> None:
    """Property: however a reply is cut, what is printed is terminal_safe of the whole (no escape is split)."""

    class Sink:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> int:
            self.text += text
            return len(text)

        def flush(self) -> None:
            pass

    sink = Sink()
    printer = ReplyPrinter(sink)  # type: ignore[arg-type]
    for chunk in chunks:
        printer.write(chunk)
    whole = terminal_safe("".join(chunks))
    assert sink.text == whole
    printer.end()
    assert sink.text == whole + ("\n" if whole and not whole.endswith("\n") else "")


# -- saves and Ctrl-C, in this process ---------------------------------------------------


def test_a_ctrl_c_during_a_save_waits_for_the_save_to_end(
    standin: StandIn, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    route_ollama(monkeypatch, standin.url)
    with SessionManager(db_path=db) as manager:
        client = OllamaChatClient(model_name="standin-model")
        saver = autosave(client, manager)
        shield = SaveShield()
        shield.protect(saver)
        save = manager.save_conversation

        def interrupted_save(*args: Any, **kwargs: Any) -> None:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the save
            save(*args, **kwargs)

        monkeypatch.setattr(manager, "save_conversation", interrupted_save)
        with shield.active(), pytest.raises(KeyboardInterrupt):
            for _ in client.stream_chat("hello"):
                pass
        assert saver.pending() == []
    assert rows(db) == [("user", "hello"), ("assistant", "echo: hello (1 messages)")]


def test_a_failing_save_is_one_problem_and_the_next_turn_catches_up(
    standin: StandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    route_ollama(monkeypatch, standin.url)
    with SessionManager(url="memory://") as manager:
        client = OllamaChatClient(model_name="standin-model")
        saver = autosave(client, manager)
        assert take_turn(client, saver, "hello", sys.stdout).problem is None

        def broken_append(*args: Any, **kwargs: Any) -> bool:
            raise StorageError("disk on fire")

        with monkeypatch.context() as patch:
            patch.setattr(manager.store, "append", broken_append)
            outcome = take_turn(client, saver, "lost?", sys.stdout)
        assert outcome.answered and not outcome.stopped
        assert outcome.problem == "saving failed: disk on fire; the unsaved messages go with the next turn"
        assert [m.content for m in saver.pending()] == ["lost?", "echo: lost? (3 messages)"]

        assert take_turn(client, saver, "back", sys.stdout).problem is None
        stored = manager.load_conversation(saver.conversation_id)
        assert stored is not None and [m.id for m in stored.messages] == [m.id for m in client.conversation.messages]
    assert "echo: back (5 messages)" in capsys.readouterr().out


@terminal
def test_a_conversation_deleted_meanwhile_stops_the_chat(standin: StandIn, db: Path) -> None:
    conversation_id = seed(db, "old", 1, BASE)
    child = spawn(db, standin.url, conversation_id, "--turns", "0")
    child.expect_exact(PROMPT)
    with SessionManager(db_path=db) as manager:
        assert manager.delete_conversation(conversation_id)
    child.sendline("still there?")
    child.expect(r"error: ([^\r\n]*)\r\n")
    assert child.match.group(1).decode() == (
        f"conversation {conversation_id} was deleted from the store meanwhile; the chat stops"
    )
    assert b"error:" not in finish(child)  # one line, nothing more
    assert child.exitstatus == 1
    with SessionManager(db_path=db) as manager:
        assert manager.load_conversation(conversation_id) is None  # not recreated


@pytest.mark.parametrize(
    "raised",
    [
        # What a Ctrl-C while the ollama client serializes the request becomes (seen on a terminal).
        PydanticSerializationError("Error calling function `serialize_sequence_via_list`: KeyboardInterrupt: "),
        KeyboardInterrupt(),
        ValueError("something\nunexpected"),
    ],
)
def test_an_interrupt_or_error_before_the_first_chunk_keeps_the_message_and_the_chat(
    standin: StandIn, monkeypatch: pytest.MonkeyPatch, raised: BaseException
) -> None:
    route_ollama(monkeypatch, standin.url)
    with SessionManager(url="memory://") as manager:
        client = OllamaChatClient(model_name="standin-model")
        saver = autosave(client, manager)

        def failing_chat(*args: Any, **kwargs: Any) -> Any:
            raise raised

        with monkeypatch.context() as patch:
            patch.setattr(ollama, "chat", failing_chat)
            outcome = take_turn(client, saver, "hello", sys.stdout)
        if type(raised) is ValueError:
            assert outcome.problem == (
                "the turn failed unexpectedly (ValueError: something); "
                "your message is saved, type another message or /exit"
            )
            assert not outcome.stopped
        else:
            assert outcome.stopped and outcome.problem is None
        assert not outcome.answered and outcome.saved
        stored = manager.load_conversation(saver.conversation_id)
        assert stored is not None and [m.content for m in stored.messages] == ["hello"]
        assert take_turn(client, saver, "again", sys.stdout).answered  # the chat goes on


# -- usage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["chat", "abc", "--last"], 2, "give either ID or --last"),
        (["chat", "abc", "--system", "x"], 2, "--system is for a new chat"),
        (["chat", "--model", " "], 2, "an empty name names no model"),
        (["chat", "--last"], 1, "error: no conversation to continue: the store is empty"),
        (["chat", "nosuch"], 1, "error: no conversation 'nosuch'"),
    ],
)
def test_usage_and_user_errors(db: Path, args: list[str], code: int, says: str) -> None:
    with SessionManager(db_path=db):
        pass  # an empty store
    result = CliRunner().invoke(main, ["--url", f"sqlite:///{db}", *args], input="")
    assert result.exit_code == code, result.output
    assert says in result.output
