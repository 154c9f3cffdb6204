"""The examples run and print what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>`` in ``workdir``; it must succeed and leave ``workdir`` empty."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert list(workdir.iterdir()) == [], "the example must not write into the working directory"
    return result


def test_basic_usage_runs(tmp_path: Path) -> None:
    result = run_example("basic_usage.py", tmp_path)
    lines = result.stdout.splitlines()
    assert "Loaded: Python Help with 3 messages" in lines
    assert "Tool call kept: get_weather({'city': 'Paris'})" in lines
    assert "resume -> ['Weather in Paris']" in lines
    assert "pyth* OR paris -> ['Weather in Paris', 'Python Help']" in lines
    assert "updated today: 2 conversations" in lines
    assert "remaining: ['Python Help']" in lines


def test_custom_backend_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_backend.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "found: ['Audited chat']"
    assert lines[1].startswith("audit: save ") and lines[1].endswith("(+1 messages)")
    assert lines[2].startswith("audit: delete ") and lines[2].endswith(": True")


# -- examples/ollama_chat.py against the stand-in Ollama server (added with qv_session_manager.ollama) --


def test_ollama_chat_runs_against_the_standin(tmp_path: Path) -> None:
    import os

    from ollama_standin import StandIn, environment

    url = f"sqlite:///{tmp_path / 'chats.db'}"
    with StandIn() as standin:
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "ollama_chat.py"), "--model", "standin-model", "--url", url],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            check=False,
            env={**os.environ, **environment(standin.url)},
        )
        models = {request["model"] for request in standin.requests}
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "stored after a chat: 3 messages" in lines
    assert "assistant (streamed): echo: And the capital of Italy? (4 messages)" in lines
    assert "stored after a tool call: 8 messages" in lines
    assert "assistant (resumed): echo: Thanks! Which cities did we talk about? (9 messages)" in lines
    assert "stored roles: system user assistant user assistant user assistant tool user assistant" in lines
    assert models == {"standin-model"}
    assert [p.name for p in tmp_path.iterdir()] == ["chats.db"], "the example writes only to its store"


def test_ollama_chat_says_when_ollama_is_unreachable(tmp_path: Path) -> None:
    import os

    from ollama_standin import StandIn, environment

    with StandIn() as standin:
        closed = standin.url  # nothing listens here once the stand-in is closed
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "ollama_chat.py"), "--url", f"sqlite:///{tmp_path / 'chats.db'}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
        env={**os.environ, **environment(closed)},
    )
    assert result.returncode == 1
    assert "cannot reach Ollama" in result.stderr


# -- examples/resume_window.py (added with resume windows and forks) --


def test_resume_window_runs(tmp_path: Path) -> None:
    result = run_example("resume_window.py", tmp_path)
    assert result.stdout.splitlines() == [
        "stored: 105 messages",
        "last 2, widened to keep the tool call: system assistant tool assistant",
        "last turn: ['You plan trips.', 'Weather in Rome?', '', '25 degrees', '25 degrees: pack light.']",
        "fork: 'Travel, plan B' with 3 messages",
        "forked from the original: True",
    ]


# -- examples/async_usage.py (added with qv_session_manager.aio) --


def test_async_usage_runs(tmp_path: Path) -> None:
    result = run_example("async_usage.py", tmp_path)
    assert result.stdout.splitlines() == [
        "Loaded: Python lists with 1 message",
        "search: ['Python sets', 'Python tuples']",
        "all: ['Python lists', 'Python sets', 'Python tuples']",
        "deleted: True",
    ]


# -- examples/retention.py (added with retention and expiry) --


def test_retention_runs(tmp_path: Path) -> None:
    result = run_example("retention.py", tmp_path)
    assert result.stdout.splitlines() == [
        "expiry kept after a round trip: True",
        "expired one loads as: None",
        "expired conversations removed: 1",
        "deleted older than 30 days: 2",
        "deleted beyond the newest 2: 1",
        "left: ['Today', 'Yesterday']",
    ]


# -- examples/encryption.py (added with whole-file SQLite encryption) --


def test_encryption_runs(tmp_path: Path) -> None:
    result = run_example("encryption.py", tmp_path)
    assert result.stdout.splitlines() == [
        "whole file: search finds ['Dinner plans']",
        "whole file: plaintext in the file: False",
        "whole file: a wrong key raises EncryptionKeyError",
        "field level: search finds ['Dinner plans']",
        "field level: plaintext in the file: False",
        "field level: the backend holds 'user', 'qvenc1'...",
    ]
    assert result.stderr == "", "a refused key is a typed error, not SQLCipher log lines"
