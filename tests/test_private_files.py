"""New store files and folders are owner-only (0600 / 0700) whatever the umask; existing ones keep their mode.

Every test runs under umask 022, the usual one that makes new files world-readable,
and restores the previous umask afterwards.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from qv_session_manager import SessionManager
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.cli import main
from qv_session_manager.private_files import (
    PRIVATE_FILE_MODE,
    PRIVATE_FOLDER_MODE,
    create_private_file,
    make_private_folders,
    private_temporary_file,
    touch_private_file,
)
from qv_session_manager.testing.contract import conversation, message, minutes

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
KEY = bytes(range(32))


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def fill(store: SQLiteStore) -> None:
    store.save(conversation("c1", updated=minutes(1)), [message("private text", id="m1")])


# -- the helpers ----------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277])
def test_the_helpers_ignore_the_umask(tmp_path: Path, umask: int) -> None:
    os.umask(umask)
    touch_private_file(str(tmp_path / "touched"))
    os.close(create_private_file(str(tmp_path / "created")))
    descriptor, temporary = private_temporary_file(str(tmp_path), ".x.", ".tmp")
    os.close(descriptor)
    make_private_folders(str(tmp_path / "a" / "b" / "c"))
    for name in ("touched", "created", temporary):
        assert mode(tmp_path / name) == PRIVATE_FILE_MODE, name
    for folder in ("a", "a/b", "a/b/c"):
        assert mode(tmp_path / folder) == PRIVATE_FOLDER_MODE, folder


def test_the_helpers_keep_what_exists(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.write_text("kept")
    existing.chmod(0o640)
    with pytest.raises(FileExistsError):
        touch_private_file(str(existing))
    assert (mode(existing), existing.read_text()) == (0o640, "kept")
    descriptor, temporary = private_temporary_file(str(tmp_path), ".x.", ".tmp", like=str(existing))
    os.close(descriptor)
    assert mode(Path(temporary)) == 0o640, "a replacement takes the mode of the file it replaces"
    os.close(create_private_file(str(tmp_path / "other"), like=str(existing)))
    assert mode(tmp_path / "other") == 0o640
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    make_private_folders(str(shared / "inside"))
    assert (mode(shared), mode(shared / "inside")) == (0o755, PRIVATE_FOLDER_MODE)
    (tmp_path / "plain").write_text("")
    with pytest.raises(FileExistsError):
        make_private_folders(str(tmp_path / "plain"))


# -- SQLite ---------------------------------------------------------------------


@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "sqlcipher"])
def test_a_new_sqlite_store_and_its_wal_and_shm_are_owner_only(tmp_path: Path, keyed: bool) -> None:
    if keyed:
        pytest.importorskip("sqlcipher3")
    path = tmp_path / "chats.db"
    store = SQLiteStore(path, key=KEY if keyed else None)
    try:
        fill(store)
        companions = [tmp_path / "chats.db-wal", tmp_path / "chats.db-shm"]
        assert all(companion.exists() for companion in companions), sorted(os.listdir(tmp_path))
        for made in [path, *companions]:
            assert mode(made) == PRIVATE_FILE_MODE, made.name
    finally:
        store.close()
    assert all(mode(tmp_path / name) == PRIVATE_FILE_MODE for name in os.listdir(tmp_path))


def test_an_existing_sqlite_store_keeps_its_mode_and_its_wal_follows_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    SQLiteStore(path).close()
    path.chmod(0o640)
    store = SQLiteStore(path)
    try:
        fill(store)
        assert mode(path) == 0o640
        assert mode(tmp_path / "shared.db-wal") == 0o640, "SQLite copies the database's mode"
    finally:
        store.close()


def test_the_cli_creates_an_owner_only_store_on_import(tmp_path: Path) -> None:
    dump = tmp_path / "in.jsonl"
    dump.write_text('{"format":"qv-session-manager","version":1}\n')
    target = tmp_path / "new.db"
    result = CliRunner().invoke(main, ["--url", f"sqlite:///{target}", "import", str(dump)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert mode(target) == PRIVATE_FILE_MODE


def test_a_store_made_by_a_process_with_umask_022_is_owner_only(tmp_path: Path) -> None:
    """The umask of a fresh process, not only this one's: nothing here depends on test state."""
    path = tmp_path / "child.db"
    code = (
        "import os, sys; os.umask(0o022)\n"
        "from qv_session_manager import SessionManager\n"
        "from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole\n"
        "c = Conversation(title='t'); c.messages = [Message(role=MessageRole.USER, content='x')]\n"
        "with SessionManager(db_path=sys.argv[1]) as m:\n"
        "    m.save_conversation(c)\n"
        "    print(' '.join(oct(os.stat(sys.argv[1] + s).st_mode & 0o777) for s in ('', '-wal', '-shm')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0o600", "0o600", "0o600"]


# -- JSON Lines backend -----------------------------------------------------------


def test_jsonl_folders_and_files_are_owner_only_and_rewrites_keep_the_mode(tmp_path: Path) -> None:
    jsonl = pytest.importorskip("qv_session_manager_jsonl")
    folder = tmp_path / "new" / "chats"
    store = jsonl.JsonlStore(folder)
    try:
        assert (mode(tmp_path / "new"), mode(folder)) == (PRIVATE_FOLDER_MODE, PRIVATE_FOLDER_MODE)
        fill(store)
        (written,) = [folder / name for name in os.listdir(folder)]
        assert mode(written) == PRIVATE_FILE_MODE
        written.chmod(0o640)
        store.save(conversation("c1", updated=minutes(2)), [message("more text", id="m2")])
        assert mode(written) == 0o640, "a conversation file rewritten keeps the mode its owner gave it"
    finally:
        store.close()


def test_an_existing_jsonl_folder_keeps_its_mode(tmp_path: Path) -> None:
    jsonl = pytest.importorskip("qv_session_manager_jsonl")
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o750)
    jsonl.JsonlStore(folder).close()
    assert mode(folder) == 0o750


# -- exports ----------------------------------------------------------------------


@pytest.mark.parametrize("format", ["jsonl", "json", "csv", "markdown"])
def test_exports_are_owner_only_and_an_overwritten_export_keeps_its_mode(tmp_path: Path, format: str) -> None:
    manager = SessionManager(url="memory://")
    manager.import_conversations(
        io.StringIO('[{"id": "a", "conversations": [{"from": "human", "value": "hi"}]}]'), format="sharegpt"
    )
    target = tmp_path / f"out.{format}"
    assert manager.export_conversations(target, format=format) == 1  # type: ignore[arg-type]
    assert mode(target) == PRIVATE_FILE_MODE
    target.chmod(0o644)
    manager.export_conversations(target, format=format)  # type: ignore[arg-type]
    assert mode(target) == 0o644
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []
