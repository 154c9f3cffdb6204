"""``qv-sessions embed`` and ``search --mode`` as real processes: on a pseudo-terminal (pexpect) and piped.

The test embedders are registered only in a process that asks for them, so these
tests run ``tests/qv_sessions_test_embedders.py``, which registers them (and the
``gated`` embedder, a slow ``hash`` to press Ctrl-C during) and then runs the
command's own ``main``, as the installed ``qv-sessions`` script does. The
environment is not changed for anyone else: no entry point, no ``sitecustomize``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from qv_session_manager import SessionManager
from qv_session_manager.cli.embed import EMBEDDER_VARIABLE
from qv_session_manager.protocol import SaveItem
from qv_session_manager.testing import embedders as test_embedders
from qv_session_manager.testing.contract import BASE, conversation, message
from qv_session_manager.testing.embedders import HashEmbedder
from qv_session_manager.vector_records import VectorSpace

from hostile import hostile_conversation

pytestmark = pytest.mark.slow  # real processes on pseudo-terminals

WRAPPER = str(Path(__file__).with_name("qv_sessions_test_embedders.py"))
STYLE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
HASH_SPACE = "hash/blake2b-tokens-64/64"


def many(count: int) -> list[SaveItem]:
    """``count`` conversations of three messages each."""
    return [
        (
            conversation(f"c{number:04d}", title=f"chat {number}", updated=BASE + timedelta(minutes=number)),
            (
                message(f"question {number} about python", id=f"q{number}"),
                message(f"answer {number} about lists", id=f"a{number}"),
                message(f"thanks {number}", id=f"t{number}"),
            ),
        )
        for number in range(count)
    ]


def seed(path: Path, items: list[SaveItem]) -> Path:
    with SessionManager(db_path=path) as manager:
        manager.store.save_many(items)
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """100 conversations, 300 messages, with no vector yet."""
    return seed(tmp_path / "chats.db", many(100))


@pytest.fixture(autouse=True)
def _in_this_process() -> Iterator[None]:
    test_embedders.install()  # to read the vectors back here
    yield
    test_embedders.uninstall()


def environment(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("COLUMNS", "LINES", "NO_COLOR", "PAGER", EMBEDDER_VARIABLE)
    }
    return {**env, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40", **extra}


def spawn(*args: str, env: dict[str, str] | None = None) -> Any:
    pexpect = pytest.importorskip("pexpect")  # POSIX only
    return pexpect.spawn(sys.executable, [WRAPPER, *args], env=env or environment(), dimensions=(40, 120), timeout=60)


def on_terminal(*args: str, env: dict[str, str] | None = None) -> tuple[bytes, int]:
    """What the command writes to a 120x40 pseudo-terminal, and its exit status."""
    child = spawn(*args, env=env)
    output: bytes = child.read()
    child.close()
    return output, child.exitstatus


def piped(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, WRAPPER, *args], capture_output=True, text=True, env=env or environment(), timeout=60
    )


def counts(path: Path) -> tuple[int, int]:
    with SessionManager(db_path=path) as manager:
        return manager.store.embedding_counts(VectorSpace.of(HashEmbedder()))


def test_embed_progress_on_a_terminal_and_none_when_piped(store: Path, tmp_path: Path) -> None:
    output, status = on_terminal("--url", str(store), "embed", "--embedder", "hash", "--batch-size", "50")
    assert status == 0, output
    for mark in (b"embedding", b"300/300", b"ETA"):
        assert mark in output, (mark, output)
    assert f"embedded 300 messages, 0 pending, in {HASH_SPACE}".encode() in output
    assert counts(store) == (300, 0)
    other = seed(tmp_path / "piped.db", many(100))
    result = piped("--url", str(other), "embed", "--batch-size", "50", env=environment(**{EMBEDDER_VARIABLE: "hash"}))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == f"embedded 300 messages, 0 pending, in {HASH_SPACE}\n"


def test_ctrl_c_during_embed_keeps_the_batches_done(store: Path) -> None:
    """``gated:3`` embeds three batches of 50, then waits in the fourth: Ctrl-C arrives then."""
    pexpect = pytest.importorskip("pexpect")
    child = spawn("--url", str(store), "embed", "--embedder", "gated:3", "--batch-size", "50")
    child.expect(rb"150/300")
    child.sendintr()
    child.expect(rb"interrupted: 150 messages embedded before, and kept; run qv-sessions embed --embedder gated:3")
    child.expect(pexpect.EOF)
    rest = bytes(child.before)
    child.close()
    assert child.exitstatus == 130, rest
    assert b"Traceback" not in rest
    assert counts(store) == (150, 150), "the three whole batches stay, and nothing else"
    again = piped("--url", str(store), "embed", "--embedder", "hash")
    assert again.stderr == f"embedded 150 messages, 0 pending, in {HASH_SPACE}\n", "the same space goes on"


def test_semantic_search_on_a_terminal_finds_a_synonym_and_escapes_text(tmp_path: Path) -> None:
    path = seed(
        tmp_path / "meaning.db",
        [
            (conversation("garage", title="garage", updated=BASE), (message("my car will not start", id="g1"),)),
            (
                conversation("kitchen", title="kitchen", updated=BASE + timedelta(minutes=1)),
                (message("a recipe for bread", id="k1"),),
            ),
        ],
    )
    with SessionManager(db_path=path) as manager:
        manager.save_conversation(hostile_conversation())
    assert piped("--url", str(path), "embed", "--embedder", "synonyms").returncode == 0
    output, status = on_terminal(
        "--url", str(path), "search", "--mode", "semantic", "--embedder", "synonyms", "automobile ignition"
    )
    assert status == 0, output
    lines = STYLE.sub(b"", output).decode("utf-8").replace("\r\n", "\n").splitlines()
    assert lines[0] == "3 conversations match", lines
    assert "garage" in lines[1] and lines[2].strip() == "my car will not start", lines
    for raw in (b"\x07", b"\x1b]", b"\x1b[2J", "\u202e".encode(), b"\xc2\x9b"):
        assert raw not in output, (raw, output)
    text = piped("--url", str(path), "search", "--json", "automobile ignition")
    assert text.returncode == 0 and text.stdout == "[]\n", "no word of the query is stored"


def test_the_fallback_note_on_a_terminal_and_piped(store: Path) -> None:
    args = ("--url", str(store), "search", "--mode", "hybrid", "--embedder", "hash", "python", "-n", "1")
    output, status = on_terminal(*args)
    assert status == 0, output
    shown = b" ".join(STYLE.sub(b"", output).split())
    assert (
        f"note: searched by words, not by meaning (hybrid was asked): no conversation passing the filter has a vector of {HASH_SPACE} yet".encode()
        in shown
    )
    assert b"note: 300 messages not embedded yet: run qv-sessions embed --embedder hash" in shown
    assert b"100 conversations match; showing 1-1" in shown
    result = piped(*args, "--format", "tsv")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[:2] == [
        f"note: searched by words, not by meaning (hybrid was asked): no conversation passing the filter has a vector of {HASH_SPACE} yet",
        "note: 300 messages not embedded yet: run qv-sessions embed --embedder hash",
    ]
    assert len(result.stdout.splitlines()) == 2 and "\x1b" not in result.stdout + result.stderr
