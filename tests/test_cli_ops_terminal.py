"""The real ``qv-sessions`` on a pseudo-terminal and as another user: progress, Ctrl-C, read-only stores.

Progress is drawn on standard error when it is a terminal and never when it is a
pipe. Ctrl-C during an import keeps the batches saved before it, whole. A store the
user cannot write (a 0444 file in a 0555 directory, the command run as ``nobody``)
is read by every reading command, and doctor calls it read-only, not damaged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from qv_session_manager import SessionManager
from qv_session_manager.exchange import write_jsonl
from qv_session_manager.records import StoredConversation
from qv_session_manager.testing.contract import BASE, conversation, message
from qv_session_manager.transfer import iter_stored

pytestmark = pytest.mark.slow  # real processes on pseudo-terminals

COMMAND = str(Path(sys.executable).with_name("qv-sessions"))
SITE = next(path for path in sys.path if path.endswith("site-packages"))


def many(count: int) -> list[StoredConversation]:
    return [
        StoredConversation(
            conversation(f"c{number:05d}", title=f"chat {number}", updated=BASE + timedelta(minutes=number)),
            (message(f"question {number} about python", id=f"m{number}"),),
        )
        for number in range(count)
    ]


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    path = tmp_path / "dump.jsonl"
    with path.open("w", encoding="utf-8") as stream:
        write_jsonl(many(300), stream)
    return path


@pytest.fixture
def store(tmp_path: Path, dump: Path) -> Path:
    path = tmp_path / "chats.db"
    result = subprocess.run(
        [COMMAND, "--url", str(path), "import", str(dump)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return path


def environment() -> dict[str, str]:
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    env.pop("NO_COLOR", None)
    return env


def on_terminal(args: list[str]) -> tuple[bytes, int]:
    """What the real command writes to a 120x40 pseudo-terminal, and its exit status."""
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(COMMAND, args, env=environment(), dimensions=(40, 120), timeout=120)
    output: bytes = child.read()
    child.close()
    return output, child.exitstatus


def piped(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMMAND, *args], capture_output=True, text=True, env=environment(), check=False, timeout=120)


def test_progress_on_a_terminal_and_none_when_piped(store: Path, dump: Path, tmp_path: Path) -> None:
    cases = [
        # (arguments, what only the progress display shows)
        (["--url", str(tmp_path / "a.db"), "import", str(dump)], [b"importing", b"ETA", b"KiB"]),
        (["--url", str(store), "export", str(tmp_path / "out.jsonl")], [b"exporting", b"300/300", b"ETA"]),
        (["copy", str(store), str(tmp_path / "copy.db")], [b"copying", b"300/300"]),
        (["--url", str(store), "doctor"], [b"checking the file's integrity", b"comparing the search indexes"]),
        (
            ["--url", str(tmp_path / "a.db"), "prune", "--keep-newest", "100", "--yes"],
            [b"deleting 200 conversations", b"purging deleted text"],
        ),
    ]
    for args, marks in cases:
        output, status = on_terminal(args)
        assert status == 0, (args, output)
        for mark in marks:
            assert mark in output, (args, mark, output)
    for number, (args, marks) in enumerate(cases):
        args = [
            part.replace("a.db", f"p{number}.db").replace("copy.db", "pcopy.db").replace("out.jsonl", "p.jsonl")
            for part in args
        ]
        if "prune" in args:
            args = ["--url", str(store), "prune", "--keep-newest", "100", "--yes"]
        result = piped(args)
        assert result.returncode == 0, (args, result.stderr)
        assert "\x1b" not in result.stderr and "ETA" not in result.stderr, (args, result.stderr)
        for mark in marks:
            assert mark.decode() not in result.stderr, (args, result.stderr)


def test_an_export_shown_on_the_terminal_draws_no_bar_over_itself(store: Path) -> None:
    output, status = on_terminal(["--url", str(store), "export", "-"])
    assert status == 0 and b"exported 300 conversations to standard output" in output
    assert b"exporting" not in output and "━".encode() not in output


def test_an_import_from_a_pipe_shows_a_count(tmp_path: Path, dump: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    command = f"cat {dump} | {COMMAND} --url {tmp_path / 'x.db'} import - --batch-size 100"
    child = pexpect.spawn("/bin/sh", ["-c", command], env=environment(), dimensions=(40, 120), timeout=120)
    output = child.read()
    child.close()
    assert child.exitstatus == 0 and b"importing" in output and b"300 done" in output, output


def test_ctrl_c_during_an_import_keeps_whole_batches(tmp_path: Path, dump: Path) -> None:
    """The import reads a FIFO the test writes: after 150 conversations it waits for more, and Ctrl-C arrives then."""
    pexpect = pytest.importorskip("pexpect")
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    target = tmp_path / "interrupted.db"
    lines = dump.read_text(encoding="utf-8").splitlines(keepends=True)
    child = pexpect.spawn(
        "/bin/sh",
        ["-c", f"exec {COMMAND} --url {target} import - --batch-size 50 < {fifo}"],
        env=environment(),
        dimensions=(40, 120),
        timeout=120,
    )
    with fifo.open("w", encoding="utf-8") as feed:
        feed.write("".join(lines[:151]))  # the header and 150 conversations: three whole batches
        feed.flush()
        child.expect(rb"150 done")  # the third batch is saved; the import waits for the next line
        child.sendintr()
        child.expect(rb"interrupted: 150 conversations saved before")
        child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    with SessionManager(db_path=target) as manager:
        stored = {item.conversation.id: item for item in iter_stored(manager.store)}
    source = {item.conversation.id: item for item in many(300)}
    assert len(stored) == 150 and all(stored[key].messages == source[key].messages for key in stored)
    doctor = subprocess.run([COMMAND, "--url", str(target), "doctor"], capture_output=True, text=True, check=False)
    assert doctor.returncode == 0 and "no problems found" in doctor.stdout, doctor.stdout + doctor.stderr
    again = subprocess.run(
        [COMMAND, "--url", str(target), "import", str(dump)], capture_output=True, text=True, check=False
    )
    assert "imported 150 conversations, skipped 150" in again.stderr, again.stderr  # the same import finishes it


# -- as a user who cannot write the store ----------------------------------------------


def as_nobody(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The CLI run by the system's python as user ``nobody``, with this environment's packages."""
    program = (
        f"import site, sys; site.addsitedir({SITE!r}); sys.argv[0] = 'qv-sessions'; "
        "from qv_session_manager.cli import main; main()"
    )
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SYSTEM_PYTHON, "-c", program, *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120, cwd="/")


SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"


@pytest.fixture
def locked(store: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the store, 0444, in a 0555 directory that ``nobody`` can reach but not write."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the command as another user")
    probe = as_nobody(["--version"])
    if probe.returncode != 0:
        pytest.skip(f"the command does not run as nobody here: {probe.stderr[-300:]}")
    shelf = Path(f"/tmp/qv-readonly-{os.getpid()}-{tmp_path.name}")
    shelf.mkdir()
    copy = shelf / "chats.db"
    shutil.copyfile(store, copy)
    copy.chmod(0o444)
    shelf.chmod(0o555)
    yield copy
    shelf.chmod(0o755)
    shutil.rmtree(shelf)


def test_every_reading_command_works_for_a_user_who_cannot_write(locked: Path, tmp_path: Path) -> None:
    before = locked.read_bytes()
    listing = as_nobody(["list", "--all", "--json", "--url", str(locked)])
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert len(rows) == 300
    for args in (
        ["show", rows[0]["id"]],
        ["search", "python"],
        ["stats"],
        ["export", "-"],
        ["doctor"],
        ["doctor", "--json"],
        ["stats", "--json"],
    ):
        result = as_nobody([*args, "--url", str(locked)])
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "readonly database" not in result.stdout + result.stderr, args
    doctor = as_nobody(["doctor", "--url", str(locked)]).stdout
    assert "access: read-only" in doctor and "search indexes: consistent" in doctor and "INCONSISTENT" not in doctor
    assert json.loads(as_nobody(["doctor", "--json", "--url", str(locked)]).stdout)["read_only"] is True
    refused = as_nobody(["delete", rows[0]["id"], "--url", str(locked)])
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "cannot write the store" in refused.stderr
    assert locked.read_bytes() == before and sorted(path.name for path in locked.parent.iterdir()) == ["chats.db"]
