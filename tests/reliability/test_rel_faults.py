"""Faults of the storage underneath: a full disk, read-only files, damaged files, a restarted server.

Each test states the invariant it proves. The SQLite faults that need privileges
(a small tmpfs, a process that is not root) run in child processes
(``rel_fault_child.py``); the PostgreSQL restart runs against a cluster of its own
(``rel_fault_postgres.py``), never the shared server.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

from qv_session_manager import (
    ConversationFilter,
    CorruptStorageError,
    SessionManager,
    StorageError,
    StorageFullError,
)
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.backends.sqlite.maintenance import integrity_problems
from qv_session_manager.query import parse
from qv_session_manager.records import StoredConversation

import reliability_kit
from rel_fault_child import record
from rel_fault_postgres import PrivateCluster, server_binaries

pytestmark = pytest.mark.slow  # child processes, damaged files and a private PostgreSQL cluster

CHILD = Path(__file__).with_name("rel_fault_child.py")
REQUIRE_SERVERS = os.environ.get("QV_SESSION_MANAGER_REQUIRE_SERVERS") == "1"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dump(store: Any) -> dict[str, StoredConversation | None]:
    """Every conversation of ``store``, loaded."""
    return {r.id: store.load(r.id) for r in store.list(ConversationFilter())}


def save(store: Any, stored: StoredConversation) -> None:
    store.save(stored.conversation, stored.messages)


def run_child(*arguments: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(CHILD), *arguments], capture_output=True, text=True, timeout=300, cwd="/"
    )
    assert completed.returncode == 0, f"child failed ({completed.returncode}):\n{completed.stderr[-4000:]}"
    return json.loads(completed.stdout.strip().splitlines()[-1])


def is_error(seen: dict[str, Any], *names: str) -> bool:
    """Whether a child's outcome is an error whose classes include every one of ``names``."""
    return "error" in seen and set(names) <= set(seen["error"])


# -- disk full ------------------------------------------------------------------------------


def test_a_size_limit_gives_storage_full_and_deleting_frees_room(tmp_path: Path) -> None:
    """Invariant: a save past the size limit raises StorageFullError (an OSError, the sqlite3
    error as its cause), changes nothing and leaves the store usable; deleting through the
    store succeeds at the limit, and the freed pages take new saves.

    The limit is ``PRAGMA max_page_count`` on the store's own connection (a test hook into
    a private attribute: the store offers no size limit of its own). Supersedes
    ``test_sqlite_store.py::test_engine_errors_are_translated``.
    """
    store = SQLiteStore(tmp_path / "limited.db")
    try:
        for index in range(6):
            save(store, record(f"c{index}", f"some words {index} " * 400))
        before = dump(store)
        with store._lock:
            pages = store._db.execute("PRAGMA page_count").fetchone()[0]
            store._db.execute(f"PRAGMA max_page_count = {pages + 2}")
        big = record("big", os.urandom(100_000).hex())
        with pytest.raises(StorageFullError) as caught:
            save(store, big)
        assert isinstance(caught.value, OSError) and not isinstance(caught.value, sqlite3.Error)
        assert isinstance(caught.value.__cause__, sqlite3.Error)
        assert not store._db.in_transaction, "the failed save left its transaction open"
        assert dump(store) == before, "a save that hit the limit changed stored data"
        assert [h.conversation.id for h in store.search(parse("words"), ConversationFilter())], "search broke"
        assert store.delete("c0") is True and store.delete("c1") is True, "deleting at the limit must work"
        small = record("small", "x" * 3000)
        save(store, small)  # fits in the pages the deletes freed
        assert store.load("small") == small and store.get("c0") is None
    finally:
        store.close()


def _namespace_wrapper() -> tuple[str, ...] | None:
    """The command prefix giving a child a private mount namespace, or None when impossible."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    wrapper = (unshare, "-m") if os.geteuid() == 0 else (unshare, "-r", "-m")
    probe = subprocess.run([*wrapper, "true"], capture_output=True)
    return wrapper if probe.returncode == 0 else None


def test_a_full_disk_gives_storage_full_keeps_data_and_recovers_once_space_is_freed(tmp_path: Path) -> None:
    """Invariant on a real full file system (a 1 MiB tmpfs filled by a ballast file):

    - a save raises StorageFullError; every acknowledged conversation still loads equal,
      the rejected one is absent, search still works;
    - deleting through the store also raises StorageFullError and changes nothing: in WAL
      mode SQLite must append the delete to the WAL before it frees anything, so space
      cannot be won back through the store (the exact behaviour on SQLite 3.40);
    - once the ballast is removed, another connection gets the write lock at once (no
      transaction was left open), saves and deletes work again;
    - after closing, the file passes ``integrity_check`` and holds exactly the
      acknowledged conversations.
    """
    wrapper = _namespace_wrapper()
    if wrapper is None:
        pytest.skip("needs `unshare -m` (root) or unprivileged user namespaces to mount a small tmpfs")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    rounds = reliability_kit.budget(1, 5)
    script = 'mount -t tmpfs -o size=1m tmpfs "$1" || exit 97; shift; exec "$@"'
    completed = subprocess.run(
        [
            *wrapper,
            "sh",
            "-c",
            script,
            "sh",
            str(mount_point),
            sys.executable,
            str(CHILD),
            "disk-full",
            str(mount_point),
            str(rounds),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if completed.returncode == 97:
        pytest.skip(f"cannot mount a tmpfs here: {completed.stderr.strip()}")
    assert completed.returncode == 0, completed.stderr[-4000:]
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    assert len(seen["rounds"]) == rounds
    for number, turn in enumerate(seen["rounds"]):
        where = f"round {number}: {turn}"
        assert is_error(turn["save"], "StorageFullError", "StorageError", "OSError"), where
        assert turn["intact_after_save"] and turn["rejected_absent"], where
        assert turn["searchable_while_full"] == {"ok": turn["acknowledged"]}, where
        assert is_error(turn["delete"], "StorageFullError"), where
        assert turn["intact_after_delete"], where
        assert turn["lock_free"] is True, where
        assert turn["save_after_freeing"] == {"ok": None}, where
        assert turn["delete_after_freeing"] == {"ok": True}, where
    assert seen["integrity"] == "ok"
    assert seen["all_acknowledged_after_reopen"] and seen["listed_after_reopen"] == seen["expected_ids"]


# -- read-only files and directories --------------------------------------------------------


@pytest.fixture
def shared_directory() -> Iterator[Path]:
    """A directory a demoted child can reach (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="qvrel-ro-"))
    directory.chmod(0o755)
    yield directory
    directory.chmod(0o755)
    shutil.rmtree(directory, ignore_errors=True)


def _reader_account() -> tuple[int, int, tuple[str, ...]]:
    """(uid, gid, extra child arguments) of the reader: ``nobody`` when we are root, else ourselves.

    Root ignores file permissions, so a root test has the child drop privileges.
    """
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid(), ()
    account = pwd.getpwnam("nobody")
    return account.pw_uid, account.pw_gid, ("nobody",)


KEPT = record("kept", "readable one", "readable two")


def _populate(path: Path) -> dict[str, StoredConversation | None]:
    store = SQLiteStore(path)
    save(store, KEPT)
    contents = dump(store)
    store.close()
    return contents


def _assert_reads_work_and_writes_are_refused(seen: dict[str, Any]) -> None:
    assert seen["open"] == {"ok": True}, seen
    assert seen["load"] == {"ok": ["readable one", "readable two"]}, seen
    assert seen["listed"] == {"ok": ["kept"]} and seen["search"] == {"ok": ["kept"]}, seen
    assert seen["window"] == {"ok": 1}, seen
    for write in ("save", "append", "delete_message", "delete"):
        assert is_error(seen[write], "ReadOnlyStorageError", "PermissionError", "StorageError"), (write, seen)
    assert seen["load_after"] == seen["load"], seen
    assert seen["close"] == {"ok": None}, seen
    assert seen["unchanged"], "the database file changed"


def test_a_read_only_file_reads_but_refuses_writes(shared_directory: Path) -> None:
    """Invariant: a database file the process may not write (mode 0444, directory writable)
    opens; load, list, search and windows work; every write raises ReadOnlyStorageError
    (a PermissionError); the file is byte-identical afterwards and holds the same data."""
    uid, gid, as_user = _reader_account()
    path = shared_directory / "store.db"
    before = _populate(path)
    path.chmod(0o444)
    os.chown(shared_directory, uid, gid)
    seen = run_child("read-only", str(path), *as_user)
    assert seen["uid"] == uid
    _assert_reads_work_and_writes_are_refused(seen)
    path.chmod(0o644)
    with SessionManager(db_path=path) as manager:
        assert dump(manager.store) == before


def test_a_read_only_directory_without_wal_files_refuses_to_open(shared_directory: Path) -> None:
    """Invariant (SQLite's own limit, https://www.sqlite.org/wal.html#readonly): a WAL
    database whose directory is read-only and which has no ``-wal``/``-shm`` files cannot
    be read, since SQLite must create the ``-shm`` file first. Opening raises
    ReadOnlyStorageError (a PermissionError) naming the path, even though the file itself
    is writable; nothing is created or changed."""
    uid, gid, as_user = _reader_account()
    path = shared_directory / "store.db"
    _populate(path)
    os.chown(path, uid, gid)
    path.chmod(0o644)
    shared_directory.chmod(0o555)
    seen = run_child("read-only", str(path), *as_user)
    assert is_error(seen["open"], "ReadOnlyStorageError", "PermissionError"), seen
    assert str(path) in seen["open"]["message"]
    assert seen["unchanged"] and seen["files"] == ["store.db"], seen


def test_a_read_only_directory_is_readable_while_a_writer_holds_the_wal(shared_directory: Path) -> None:
    """Invariant: while a writer keeps the store open (its ``-wal``/``-shm`` exist), a
    process that may write neither the directory nor the files reads the writer's latest
    saves and gets ReadOnlyStorageError for every write; the writer keeps working."""
    _uid, _gid, as_user = _reader_account()
    path = shared_directory / "store.db"
    writer = SQLiteStore(path)
    try:
        save(writer, KEPT)
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        assert all(f.exists() for f in files)
        for f in files:
            f.chmod(0o444)
        shared_directory.chmod(0o555)
        seen = run_child("read-only", str(path), *as_user)
        _assert_reads_work_and_writes_are_refused(seen)
        shared_directory.chmod(0o755)
        for f in files:
            f.chmod(0o644)
        later = record("later", "after the reader left")
        save(writer, later)
        assert writer.load("later") == later and writer.load("kept") == KEPT
    finally:
        shared_directory.chmod(0o755)
        writer.close()


# -- damaged files -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sound_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a closed, populated store (about 120 pages)."""
    path = tmp_path_factory.mktemp("sound") / "sound.db"
    store = SQLiteStore(path)
    for index in range(30):
        stored = record(f"c{index}", *(f"content number {index} part {part} " * 60 for part in range(3)))
        save(store, stored)
    store.close()
    return path.read_bytes()


def _side_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name and p.name.startswith(path.name))


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "one byte": lambda sound: sound[:1],
    "the SQLite magic only": lambda sound: sound[:16],
    "the 100-byte header only": lambda sound: sound[:100],
    "garbage header": lambda sound: bytes(range(100)) + sound[100:],
    "random bytes": lambda sound: os.urandom(len(sound)),
    "a text file": lambda sound: b"root:x:0:0:root:/root:/bin/bash\n" * 200,
}
TRUNCATION: dict[str, Callable[[bytes], bytes]] = {
    "first page only": lambda sound: sound[:4096],
    "half": lambda sound: sound[: len(sound) // 2],
    "half plus 123 bytes": lambda sound: sound[: len(sound) // 2 + 123],
    "all but the last page": lambda sound: sound[:-4096],
}
OPENERS: dict[str, Callable[[Path], Any]] = {
    "SessionManager(db_path)": lambda path: SessionManager(db_path=path),
    "SessionManager(url)": lambda path: SessionManager(url=f"sqlite:///{path}"),
}


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_file_that_is_not_a_database_is_refused_untouched(
    tmp_path: Path, sound_file: bytes, damage: str, opener: str
) -> None:
    """Invariant: opening a tiny, garbage or foreign file raises CorruptStorageError (an
    OSError); the file stays byte-identical and nothing is created beside it.

    Any non-empty file without the SQLite header is refused, although SQLite itself
    would take a 1-byte file for an empty database and overwrite it. Only a zero-length
    file, which holds nothing to lose, becomes a new store (the next test).
    """
    path = tmp_path / "damaged.db"
    path.write_bytes(DAMAGE[damage](sound_file))
    before = digest(path)
    with pytest.raises(CorruptStorageError) as caught:
        OPENERS[opener](path).close()
    assert isinstance(caught.value, OSError) and "damaged.db" in str(caught.value)
    assert digest(path) == before, "the file was changed"
    assert _side_files(path) == [], "files were created beside it"


@pytest.mark.parametrize("opener", OPENERS)
def test_a_zero_length_file_becomes_a_new_store_in_place(tmp_path: Path, opener: str) -> None:
    """Invariant: a zero-length file (``mkstemp``, ``touch``) is an empty database, as to
    sqlite3: it opens as a new, empty store that takes saves and keeps them, in the same
    file (inode and permissions unchanged), with nothing left beside it once closed."""
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    path.chmod(0o600)
    before = os.stat(path)
    manager = OPENERS[opener](path)
    try:
        assert dump(manager.store) == {}
        save(manager.store, KEPT)
    finally:
        manager.close()
    after = os.stat(path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert _side_files(path) == []
    with SessionManager(db_path=path) as reopened:
        assert dump(reopened.store) == {KEPT.conversation.id: KEPT}


def test_a_read_only_zero_length_file_is_refused_and_stays_empty(shared_directory: Path) -> None:
    """Invariant: a zero-length file the process may not write cannot become a store:
    opening raises ReadOnlyStorageError (a PermissionError) and the file stays empty, with
    nothing created beside it."""
    uid, gid, as_user = _reader_account()
    path = shared_directory / "store.db"
    path.write_bytes(b"")
    path.chmod(0o444)
    os.chown(shared_directory, uid, gid)
    seen = run_child("read-only", str(path), *as_user)
    assert seen["uid"] == uid
    assert is_error(seen["open"], "ReadOnlyStorageError", "PermissionError"), seen
    assert seen["unchanged"] and seen["files"] == ["store.db"], seen
    assert path.stat().st_size == 0


@pytest.mark.parametrize("damage", TRUNCATION)
def test_a_truncated_database_is_reported_and_left_untouched(tmp_path: Path, sound_file: bytes, damage: str) -> None:
    """Invariant: a database cut short raises CorruptStorageError when opened or read, or
    the integrity check names the damage; reads never change the file and leave nothing
    beside it once closed."""
    path = tmp_path / "truncated.db"
    path.write_bytes(TRUNCATION[damage](sound_file))
    before = digest(path)
    problems: list[str] = []
    try:
        store = SQLiteStore(path)
        try:
            try:
                problems = integrity_problems(store)
                dump(store)
            except CorruptStorageError as exc:
                problems.append(str(exc))
        finally:
            store.close()
    except CorruptStorageError as exc:
        problems.append(str(exc))
    assert problems, "a truncated file went unnoticed"
    assert digest(path) == before and _side_files(path) == []


@pytest.mark.parametrize("where", [b'CREATE TABLE "conversations"', b"title c7", b"content number 7 part 0"])
def test_text_that_is_not_utf8_is_reported_as_corruption(tmp_path: Path, sound_file: bytes, where: bytes) -> None:
    """A byte that breaks UTF-8 inside the schema, a title or a message (found by the long
    run's random damage: the driver raised UnicodeDecodeError) gives CorruptStorageError."""
    damaged = bytearray(sound_file)
    start = damaged.index(where)
    damaged[start + 2] = 0x80  # a lone continuation byte
    path = tmp_path / "damaged.db"
    path.write_bytes(bytes(damaged))
    before = digest(path)
    with pytest.raises(CorruptStorageError):
        store = SQLiteStore(path)
        try:
            store.list(ConversationFilter())
            store.load("c7")
        finally:
            store.close()
    assert digest(path) == before, "a damaged file must be left as it was"


_serial = itertools.count()


@settings(max_examples=reliability_kit.budget(20, 400))
@given(
    cut=st.one_of(st.none(), st.floats(0.0, 1.0)),
    overwrite=st.lists(st.tuples(st.floats(0.0, 1.0), st.binary(min_size=1, max_size=3000)), max_size=3),
)
def test_any_damage_gives_results_or_storage_errors_never_anything_else(
    tmp_path: Path, sound_file: bytes, cut: float | None, overwrite: list[tuple[float, bytes]]
) -> None:
    """Property: after any truncation and overwrites of a sound file, every call gives a
    result or a StorageError (never a sqlite3 error or anything else); opening and reading
    never change the file; a refused open leaves nothing beside it. A file cut to nothing
    is the one exception: it is an empty database and opens as a new, empty store."""
    damaged = bytearray(sound_file)
    for where, garbage in overwrite:
        start = int(where * len(damaged))
        damaged[start : start + len(garbage)] = garbage
    if cut is not None:
        del damaged[int(cut * len(damaged)) :]
    path = tmp_path / f"fuzzed{next(_serial)}.db"
    path.write_bytes(bytes(damaged))
    try:
        _check_damaged(path)
    finally:
        for leftover in path.parent.glob(f"{path.name}*"):
            leftover.unlink()


def _check_damaged(path: Path) -> None:
    if path.stat().st_size == 0:  # nothing left to keep: a new store (see the zero-length test)
        store = SQLiteStore(path)
        assert store.list(ConversationFilter()) == []
        store.close()
        return
    before = digest(path)
    try:
        store = SQLiteStore(path)
    except StorageError:
        assert digest(path) == before and _side_files(path) == []
        return
    reads: list[Callable[[], object]] = [
        lambda: store.list(ConversationFilter()),
        lambda: store.load("c7"),
        lambda: store.load_window("c29", last_messages=2),
        lambda: store.search(parse("content number"), ConversationFilter(), order="relevance"),
        lambda: integrity_problems(store),
    ]
    for read in reads:
        try:
            read()
        except StorageError:
            pass
    store.close()
    assert digest(path) == before, "reading a damaged file changed it"
    store = SQLiteStore(path)
    writes: list[Callable[[], object]] = [
        lambda: save(store, record("new", "fresh words")),
        lambda: store.delete("c3"),
        lambda: store.append("c5", list(record("x", "appended").messages)),
    ]
    for write in writes:
        try:
            write()
        except StorageError:
            pass
    store.close()


# -- PostgreSQL restarted mid-run ---------------------------------------------------------------


@pytest.fixture
def private_cluster() -> Iterator[PrivateCluster]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'qv-session-manager-postgres')")
    binaries = server_binaries()
    if binaries is None:
        message = "no PostgreSQL server binaries (initdb, pg_ctl) to run a private cluster"
        if REQUIRE_SERVERS:
            pytest.fail(f"{message} (QV_SESSION_MANAGER_REQUIRE_SERVERS=1)")
        pytest.skip(message)
    try:
        cluster = PrivateCluster(binaries)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"could not start a private PostgreSQL cluster: {exc.stderr!r}")
    yield cluster
    cluster.remove()


class _Writer:
    """One thread appending a message per turn to its own conversation through a SessionManager."""

    def __init__(self, manager: SessionManager, name: str) -> None:
        self.manager = manager
        self.conversation = Conversation(id=uuid.uuid5(uuid.NAMESPACE_URL, name), title=name, model_name="llama3")
        self.attempted: list[str] = []
        self.acknowledged: list[str] = []
        self.failures: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name)

    def _run(self) -> None:
        for turn in itertools.count():
            if self.stop.is_set():
                return
            message_id = uuid.uuid5(self.conversation.id, str(turn))
            message = Message(
                role=MessageRole.USER, content=f"turn {turn}", id=message_id, created_at=datetime(2025, 1, 1, 12, 0, 0)
            )
            self.attempted.append(str(message_id))
            try:
                self.manager.save_conversation(self.conversation, [message])
                self.acknowledged.append(str(message_id))
            except Exception as exc:  # noqa: BLE001 - every failure is kept and checked by the test
                self.failures.append(exc)
            time.sleep(0.01)


@pytest.mark.server_restart
def test_writers_keep_saving_through_server_restarts(private_cluster: PrivateCluster) -> None:
    """Invariant across PostgreSQL stops (``immediate``: a crash recovered from the WAL;
    ``fast``: a clean shutdown) with writers saving throughout:

    - writers whose pool waits long enough (timeout 60 s) never fail: a save cut by the
      outage runs again, whole, once the server is back;
    - writers whose pool gives up after 0.5 s fail during the outage, only with
      StorageError (no psycopg or pool exception escapes), and save again afterwards;
    - no acknowledged save is lost: a fresh store afterwards loads, per conversation,
      every acknowledged message, only attempted ones, in the order they were saved.

    One restart in the bounded run, four (alternating modes) in the long run.
    """
    from qv_session_manager_postgres import PostgresStore

    from rel_report import report

    url = private_cluster.url
    patient = SessionManager(store=PostgresStore(url, schema="restart", max_size=2, timeout=60))
    impatient = SessionManager(store=PostgresStore(url, schema="restart", max_size=2, timeout=0.5))
    writers = [_Writer(patient, f"patient{i}") for i in range(2)] + [
        _Writer(impatient, f"impatient{i}") for i in range(2)
    ]
    restarts = reliability_kit.budget(1, 4)
    outage = 1.5
    recovery_seconds: list[float] = []
    for writer in writers:
        writer.thread.start()
    try:
        time.sleep(0.5)
        for number in range(restarts):
            mode = "immediate" if number % 2 == 0 else "fast"
            private_cluster.stop(mode)  # type: ignore[arg-type]
            time.sleep(outage)
            private_cluster.start()
            back = time.monotonic()
            marks = [len(w.acknowledged) for w in writers]
            deadline = back + 60
            while any(len(w.acknowledged) < mark + 5 for w, mark in zip(writers, marks)):
                assert time.monotonic() < deadline, f"writers did not recover after restart {number} ({mode})"
                time.sleep(0.05)
            recovery_seconds.append(round(time.monotonic() - back, 2))
    finally:
        for writer in writers:
            writer.stop.set()
        for writer in writers:
            writer.thread.join(timeout=120)
    patient.close()
    impatient.close()

    for writer in writers[:2]:
        assert writer.failures == [], f"a patient writer failed: {writer.failures[:3]!r}"
    outage_failures = [exc for writer in writers[2:] for exc in writer.failures]
    assert outage_failures, "the impatient writers never saw the outage: the test proved nothing"
    for exc in outage_failures:
        assert isinstance(exc, StorageError), f"an outage error is not a StorageError: {exc!r}"
        assert type(exc).__module__.startswith("qv_session_manager"), repr(exc)
    with SessionManager(store=PostgresStore(url, schema="restart")) as fresh:
        for writer in writers:
            loaded = fresh.load_conversation(str(writer.conversation.id))
            stored = [str(m.id) for m in loaded.messages] if loaded else []
            assert set(writer.acknowledged) <= set(stored), f"{writer.thread.name}: an acknowledged save was lost"
            assert set(stored) <= set(writer.attempted), f"{writer.thread.name}: a message nobody saved"
            position = {message_id: index for index, message_id in enumerate(writer.attempted)}
            assert stored == sorted(stored, key=position.__getitem__), f"{writer.thread.name}: order changed"
    report(
        "postgres_restart",
        {
            "restarts": restarts,
            "outage_seconds": outage,
            "recovery_seconds": recovery_seconds,
            "acknowledged": {w.thread.name: len(w.acknowledged) for w in writers},
            "failed_during_outage": {w.thread.name: len(w.failures) for w in writers},
        },
    )
