"""Whole-file encryption of the SQLite backend (SQLCipher): no plaintext on disk, search
still works, keys from code, URL or environment, and every key mistake is a typed
error that leaves the file byte for byte as it was.

The whole StoreContract and the state machine run over a keyed store in
tests/test_conformance.py; this file covers what only encryption promises.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qv_ollama_sdk.domain.models import Conversation, Function, Message, MessageRole, ToolCall

from qv_session_manager import (
    CorruptStorageError,
    EncryptionKeyError,
    InvalidInputError,
    SessionManager,
    StorageBusyError,
    open_store,
)
from qv_session_manager.backends.sqlite import SQLiteStore, cipher, maintenance
from qv_session_manager.cli import main
from qv_session_manager.manager import URL_VARIABLE
from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.query import parse
from qv_session_manager.testing.contract import conversation, message

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
MOMENT = datetime(2025, 3, 1, 12, 0, 0)

#: Distinctive lowercase words (the search index stores them unchanged), one per kind of field.
TITLE = "zanzibarquokka"
CONTENT = "xylophonepretzel"
REPLY = "marzipanlighthouse"
META_KEY = "projectcodename"
META_VALUE = "bluefalconsecret"
MESSAGE_META = "patientrecordnumber"
TOOL_NAME = "lookupsalarybands"
TOOL_ARGUMENT = "quarterlyembezzle"
TOOL_RESULT = "offshoreaccountnine"
PLAINTEXTS = [TITLE, CONTENT, REPLY, META_KEY, META_VALUE, MESSAGE_META, TOOL_NAME, TOOL_ARGUMENT, TOOL_RESULT]
SEARCHABLE = [TITLE, CONTENT, REPLY, TOOL_RESULT]  # titles and message content are what search indexes


def secret_conversation() -> Conversation:
    call = ToolCall(function=Function(name=TOOL_NAME, arguments={"department": TOOL_ARGUMENT}), id="call-7")
    messages = [
        Message(
            role=MessageRole.USER,
            content=f"tell me about {CONTENT} please",
            created_at=MOMENT,
            metadata={"source": MESSAGE_META},
        ),
        Message(role=MessageRole.ASSISTANT, content="", tool_calls=[call], created_at=MOMENT),
        Message(role=MessageRole.TOOL, content=f"result {TOOL_RESULT}", tool_call_id="call-7", created_at=MOMENT),
        Message(role=MessageRole.ASSISTANT, content=f"the answer is {REPLY}", created_at=MOMENT),
    ]
    return Conversation(
        title=f"About {TITLE}",
        model_name="llama3",
        messages=messages,
        created_at=MOMENT,
        updated_at=MOMENT,
        metadata={META_KEY: META_VALUE},
    )


def files_of(path: Path) -> dict[str, bytes]:
    """Every file beside the database whose name starts with it (the file, -wal, -shm), with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir()) if p.name.startswith(path.name)}


def plaintext_in(files: dict[str, bytes], words: list[str]) -> list[tuple[str, str]]:
    """(file, word) for each word found in a file, as UTF-8 or UTF-16 (either byte order)."""
    found = []
    for name, data in files.items():
        for word in words:
            if any(word.encode(encoding) in data for encoding in ("utf-8", "utf-16-le", "utf-16-be")):
                found.append((name, word))
    return found


def encrypted_file(tmp_path: Path, key: cipher.Key = KEY) -> Path:
    """A closed encrypted store holding the secret conversation."""
    path = tmp_path / "secret.db"
    with SessionManager(db_path=path, key=key) as manager:
        manager.save_conversation(secret_conversation())
    return path


def assert_refused_untouched(path: Path, error: type[Exception], **options: object) -> Exception:
    """Opening ``path`` with ``options`` raises ``error`` and changes no byte of any file beside it."""
    before = files_of(path)
    with pytest.raises(error) as raised:
        SQLiteStore(path, **options).close()  # type: ignore[arg-type]
    assert files_of(path) == before, "a refused open must leave every file exactly as it was"
    return raised.value


# -- no plaintext on disk, search works ---------------------------------------------


def test_the_files_hold_none_of_the_plaintext_while_search_finds_it(tmp_path: Path) -> None:
    path = tmp_path / "secret.db"
    manager = SessionManager(db_path=path, key=KEY)
    try:
        secret = secret_conversation()
        manager.save_conversation(secret)
        saved = str(secret.id)
        on_disk = files_of(path)
        assert set(on_disk) == {"secret.db", "secret.db-wal", "secret.db-shm"}
        assert len(on_disk["secret.db-wal"]) > 0, "the WAL must hold the writes for this check to mean anything"
        assert not on_disk["secret.db"].startswith(b"SQLite format 3\x00")
        assert plaintext_in(on_disk, PLAINTEXTS) == []
        for word in SEARCHABLE:
            assert [hit["id"] for hit in manager.search_conversations(word)] == [saved], word
        assert [row["id"] for row in manager.list_conversations(metadata={META_KEY: META_VALUE})] == [saved]
        loaded = manager.load_conversation(saved)
        assert loaded is not None and loaded.messages[1].tool_calls[0].function.arguments == {
            "department": TOOL_ARGUMENT
        }
    finally:
        manager.close()
    after_close = files_of(path)
    assert set(after_close) == {"secret.db"}, "closing checkpoints and removes the WAL"
    assert plaintext_in(after_close, PLAINTEXTS) == []


def test_the_same_data_in_a_plain_store_is_found_in_its_bytes(tmp_path: Path) -> None:
    """The control of the test above: without a key, the check does find every word."""
    path = tmp_path / "plain.db"
    with SessionManager(db_path=path) as manager:
        manager.save_conversation(secret_conversation())
    found = {word for _, word in plaintext_in(files_of(path), PLAINTEXTS)}
    assert found == set(PLAINTEXTS)


def test_deleted_text_and_the_purge_at_close_on_an_encrypted_store(tmp_path: Path) -> None:
    path = encrypted_file(tmp_path)
    with SessionManager(db_path=path, key=KEY) as manager:
        (row,) = manager.list_conversations()
        assert manager.delete_conversation(row["id"])
        assert manager.search_conversations(CONTENT) == []
    store = SQLiteStore(path, key=KEY)
    try:
        assert not store.purge(), "the purge already ran when the store was closed"
        assert maintenance.index_problems(store) == []
    finally:
        store.close()
    assert plaintext_in(files_of(path), PLAINTEXTS) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    secrets=st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=24),
        min_size=3,
        max_size=3,
        unique=True,
    )
)
def test_any_saved_text_stays_out_of_the_files_and_is_found(tmp_path: Path, secrets: list[str]) -> None:
    """Property: whatever is saved as title, content and metadata value is found by
    search (or the metadata filter) and appears in none of the files."""
    path = tmp_path / "property.db"
    store = SQLiteStore(path, key=KEY)
    try:
        title, content, value = secrets
        record = conversation(title=title, metadata={"tag": value})
        store.save(record, [message(f"said {content} here")], replace=True)
        assert plaintext_in(files_of(path), secrets) == []
        for word in (title, content):
            assert [hit.conversation.id for hit in store.search(parse(word), ConversationFilter())] == [record.id]
        assert [c.id for c in store.list(ConversationFilter(metadata={"tag": value}))] == [record.id]
        assert store.delete(record.id)
    finally:
        store.close()


# -- keys ---------------------------------------------------------------------------


def test_a_raw_key_as_bytes_and_in_sqlcipher_notation_open_the_same_file(tmp_path: Path) -> None:
    path = encrypted_file(tmp_path)
    with SessionManager(db_path=path, key=f"x'{KEY.hex().upper()}'") as manager:
        assert [row["title"] for row in manager.list_conversations()] == [f"About {TITLE}"]


def test_a_passphrase_with_quotes_and_unicode_opens_only_with_itself(tmp_path: Path) -> None:
    passphrase = 'it\'s a "long" pass phrase, ключ'
    path = encrypted_file(tmp_path, passphrase)
    assert plaintext_in(files_of(path), PLAINTEXTS) == []
    with SessionManager(db_path=path, key=passphrase) as manager:
        assert len(manager.search_conversations(TITLE)) == 1
    assert_refused_untouched(path, EncryptionKeyError, key=passphrase[:-1])


@pytest.mark.parametrize(
    "key",
    ["", "a\x00b", b"short", bytes(33), 12345, "x'abcd'", "x'" + "g" * 64 + "'", ["k"]],
    ids=["empty", "nul", "short-bytes", "long-bytes", "int", "short-hex", "not-hex", "list"],
)
def test_unusable_keys_are_refused_before_any_file_exists(tmp_path: Path, key: object) -> None:
    with pytest.raises(InvalidInputError) as raised:
        SQLiteStore(tmp_path / "new.db", key=key)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    if isinstance(key, str) and len(key) > 4:
        assert key not in str(raised.value), "an error message must never show the key"


def test_an_in_memory_store_takes_no_key() -> None:
    with pytest.raises(InvalidInputError, match="in-memory"):
        SQLiteStore(":memory:", key=KEY)


# -- wrong key, no key, key for a plain file: typed errors, nothing touched -----------


def test_a_wrong_key_is_refused_and_the_file_is_untouched(tmp_path: Path) -> None:
    path = encrypted_file(tmp_path)
    error = assert_refused_untouched(path, EncryptionKeyError, key=OTHER_KEY)
    assert isinstance(error, CorruptStorageError), "a wrong key and a damaged file look alike"
    assert "key" in str(error) and OTHER_KEY.hex() not in str(error)
    assert_refused_untouched(path, EncryptionKeyError, key="a passphrase instead")
    with SessionManager(db_path=path, key=KEY) as manager:  # still intact for the right key
        assert len(manager.list_conversations()) == 1


def test_a_refused_key_leaves_sqlciphers_log_level_as_it_was(tmp_path: Path) -> None:
    """The log is silenced only for the key check (a wrong key is raised, not logged), then restored."""
    path = encrypted_file(tmp_path)
    probe = cipher.load_driver().connect(":memory:")
    try:
        (before,) = probe.execute("PRAGMA cipher_log_level").fetchone()
        probe.execute("PRAGMA cipher_log_level = ERROR")
        with pytest.raises(EncryptionKeyError):
            SQLiteStore(path, key=OTHER_KEY)
        SQLiteStore(path, key=KEY).close()
        assert probe.execute("PRAGMA cipher_log_level").fetchone() == ("ERROR",)
        probe.execute(f"PRAGMA cipher_log_level = {before}")
    finally:
        probe.close()


def test_an_encrypted_file_opened_without_a_key_is_refused_untouched(tmp_path: Path) -> None:
    path = encrypted_file(tmp_path)
    error = assert_refused_untouched(path, EncryptionKeyError)
    assert "encrypted" in str(error)
    before = files_of(path)
    with pytest.raises(EncryptionKeyError):
        SessionManager(url=f"sqlite:///{path}")
    assert files_of(path) == before


def test_a_plain_file_opened_with_a_key_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    with SessionManager(db_path=path) as manager:
        manager.save_conversation(secret_conversation())
    error = assert_refused_untouched(path, EncryptionKeyError, key=KEY)
    assert not isinstance(error, CorruptStorageError), "a plain file is not damaged: only the key is wrong"
    assert "unencrypted" in str(error)


@pytest.mark.parametrize("data", [b"x", b"hello, not a database", bytes(1000)], ids=["1-byte", "text", "1000-zeros"])
def test_a_file_that_cannot_be_sqlite_is_corrupt_with_or_without_a_key(tmp_path: Path, data: bytes) -> None:
    """A file that is not whole pages is neither plain nor SQLCipher: CorruptStorageError only."""
    path = tmp_path / "junk.db"
    path.write_bytes(data)
    for options in ({}, {"key": KEY}):
        error = assert_refused_untouched(path, CorruptStorageError, **options)
        assert not isinstance(error, EncryptionKeyError)


def test_a_changed_byte_in_an_encrypted_page_fails_instead_of_reading_altered_data(tmp_path: Path) -> None:
    path = tmp_path / "tampered.db"
    store = SQLiteStore(path, key=KEY)
    for n in range(30):
        store.save(conversation(f"c{n}", title=f"title {n}"), [message("words " * 300, id=f"m{n}")])
    store.close()
    data = bytearray(path.read_bytes())
    middle_page = len(data) // 4096 // 2
    data[middle_page * 4096 + 100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptStorageError):
        reopened = SQLiteStore(path, key=KEY)
        try:
            maintenance.integrity_problems(reopened)
        finally:
            reopened.close()


def test_driver_errors_of_an_encrypted_store_are_translated(tmp_path: Path) -> None:
    """SQLCipher's exceptions are not sqlite3's: a lock held elsewhere must still be StorageBusyError."""
    path = encrypted_file(tmp_path)
    holder = SQLiteStore(path, key=KEY)
    waiter = SQLiteStore(path, key=KEY, busy_timeout=0)
    locked, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        with holder._transaction("holding the lock", write=True):
            locked.set()
            release.wait(30)

    thread = threading.Thread(target=hold_the_write_lock)
    thread.start()
    try:
        assert locked.wait(30)
        with pytest.raises(StorageBusyError):
            waiter.save(conversation(), [message()])
    finally:
        release.set()
        thread.join()
        waiter.close()
        holder.close()


# -- URL and environment --------------------------------------------------------------


def test_key_env_in_the_url_reads_the_key_from_that_variable(tmp_path: Path, monkeypatch) -> None:
    path = encrypted_file(tmp_path)
    monkeypatch.setenv("CHATS_KEY", f"x'{KEY.hex()}'")
    store = open_store(f"sqlite:///{path}?key_env=CHATS_KEY")
    try:
        assert [hit.conversation.title for hit in store.search(parse(REPLY), ConversationFilter())] == [
            f"About {TITLE}"
        ]
    finally:
        store.close()


def test_encrypted_1_uses_the_default_variable_also_through_the_url_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(cipher.KEY_VARIABLE, "correct horse battery staple")
    monkeypatch.setenv(URL_VARIABLE, f"sqlite:///{tmp_path / 'env.db'}?encrypted=1&synchronous=normal")
    with SessionManager() as manager:
        manager.save_conversation(secret_conversation())
    assert plaintext_in(files_of(tmp_path / "env.db"), PLAINTEXTS) == []
    monkeypatch.setenv(cipher.KEY_VARIABLE, "a wrong passphrase")
    with pytest.raises(EncryptionKeyError):
        SessionManager()


def test_a_missing_variable_is_a_key_error_and_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(cipher.KEY_VARIABLE, raising=False)
    monkeypatch.setenv("EMPTY_KEY", "")
    for url in (f"sqlite:///{tmp_path / 'a.db'}?encrypted=true", f"sqlite:///{tmp_path / 'a.db'}?key_env=EMPTY_KEY"):
        with pytest.raises(EncryptionKeyError, match="environment variable"):
            open_store(url)
    assert list(tmp_path.iterdir()) == []


def test_a_key_written_into_the_url_is_refused_without_repeating_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as raised:
        open_store(f"sqlite:///{tmp_path / 'a.db'}?key=hunter2secret")
    assert "hunter2secret" not in str(raised.value) and "key_env" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "query, options",
    [
        ("?key_env=A&encrypted=0", {}),
        ("?encrypted=maybe", {}),
        ("?key_env=1BAD", {}),
        ("?key_env=", {}),
        ("?key_env=A", {"key": KEY}),
        ("", {"encrypted": "0", "key": KEY}),
        ("", {"encrypted": 1}),
    ],
)
def test_contradicting_or_malformed_encryption_options_are_refused(
    tmp_path: Path, monkeypatch, query: str, options: dict
) -> None:
    monkeypatch.setenv("A", "some passphrase")
    with pytest.raises(InvalidInputError):
        open_store(f"sqlite:///{tmp_path / 'a.db'}{query}", **options)
    assert list(tmp_path.iterdir()) == []


def test_the_key_as_a_python_option_of_a_url(tmp_path: Path) -> None:
    with SessionManager(url=f"sqlite:///{tmp_path / 'a.db'}", key=KEY) as manager:
        manager.save_conversation(secret_conversation())
    with SessionManager(db_path=tmp_path / "a.db", key=KEY, encrypted=True) as manager:
        assert len(manager.search_conversations(CONTENT)) == 1


# -- the driver is optional -------------------------------------------------------------

_BLOCKED_DRIVER = """
import sys
sys.modules["sqlcipher3"] = None  # an import of it now fails as if it were not installed
sys.modules["sqlcipher3.dbapi2"] = None
from qv_session_manager import InvalidInputError
from qv_session_manager.backends.sqlite import SQLiteStore
plain = SQLiteStore(sys.argv[1] + "/plain.db")
plain.close()
try:
    SQLiteStore(sys.argv[1] + "/secret.db", key=bytes(32))
except InvalidInputError as error:
    print("refused:", error)
"""


def test_without_the_driver_a_keyed_store_names_the_extra_and_plain_stores_work(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _BLOCKED_DRIVER, str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused:") and "pip install sqlcipher3" in result.stdout
    assert 'pip install -e ".[sqlcipher]"' in result.stdout  # the extra exists in a checkout, not on PyPI
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.db"]


def test_the_driver_is_imported_only_for_a_keyed_store(tmp_path: Path) -> None:
    code = (
        "import sys; from qv_session_manager import SessionManager\n"
        f"SessionManager(db_path={str(tmp_path / 'p.db')!r}).close()\n"
        "print('sqlcipher3' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.strip() == "False", result.stderr


# -- the command line and maintenance ---------------------------------------------------


def test_cli_stats_doctor_and_search_on_an_encrypted_store(tmp_path: Path) -> None:
    path = encrypted_file(tmp_path)
    url = f"sqlite:///{path}?key_env=QV_TEST_KEY"
    env = {"QV_TEST_KEY": f"x'{KEY.hex()}'"}

    def run(*args: str, key_env: dict[str, str] = env):
        return CliRunner().invoke(main, ["--url", url, *args], env=key_env, catch_exceptions=False)

    stats = run("stats")
    assert stats.exit_code == 0, stats.output
    assert "conversations   1" in stats.stdout and "messages        4" in stats.stdout
    doctor = run("doctor", "--rebuild-index")
    assert doctor.exit_code == 0, doctor.output
    assert "integrity check: ok" in doctor.stdout and "search indexes: rebuilt" in doctor.stdout
    assert "no problems found" in doctor.stdout
    assert TITLE in run("search", REPLY).stdout
    wrong = run("stats", key_env={"QV_TEST_KEY": "wrong"})
    assert wrong.exit_code == 1 and wrong.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in wrong.output
    assert plaintext_in(files_of(path), PLAINTEXTS) == []


def test_doctor_finds_a_damaged_index_in_an_encrypted_store(tmp_path: Path) -> None:
    """maintenance catches SQLCipher's exception when FTS5's own integrity-check fails."""
    path = encrypted_file(tmp_path)
    store = SQLiteStore(path, key=KEY)
    try:
        with store._transaction("damaging the index", write=True) as db:
            db.execute("DELETE FROM message_index_data WHERE id > 10")
        problems = maintenance.index_problems(store)
        assert any("message_index: FTS5 integrity-check failed" in problem for problem in problems), problems
        maintenance.rebuild_indexes(store)
        assert maintenance.index_problems(store) == []
        assert len(store.search(parse(CONTENT), ConversationFilter())) == 1
    finally:
        store.close()


def test_concurrent_writers_on_one_encrypted_file_lose_nothing(tmp_path: Path) -> None:
    """Two keyed connections share one file (its WAL and lock) and see each other's writes."""
    path = tmp_path / "shared.db"
    first, second = SQLiteStore(path, key=KEY), SQLiteStore(path, key=KEY)
    try:
        first.save(conversation("shared"), [])
        for n in range(20):
            writer = first if n % 2 else second
            assert writer.append("shared", [message(f"turn {n}", id=f"m{n}", at=MOMENT + timedelta(seconds=n))])
        loaded = second.load("shared")
        assert loaded is not None and [m.id for m in loaded.messages] == [f"m{n}" for n in range(20)]
    finally:
        first.close()
        second.close()


def test_the_readme_example_runs(tmp_path: Path, monkeypatch) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**The whole SQLite file.**") :]
    code = section[section.index("```python\n") + len("```python\n") : section.index("\n```\n")]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATS_KEY_HEX", KEY.hex())
    monkeypatch.setenv("CHATS_KEY", f"x'{KEY.hex()}'")
    monkeypatch.setenv(cipher.KEY_VARIABLE, f"x'{KEY.hex()}'")
    managers: list[SessionManager] = []
    namespace = {"os": os, "SessionManager": lambda *a, **k: managers.append(SessionManager(*a, **k))}
    exec(compile(code, "README.md", "exec"), namespace)
    assert len(managers) == 3
    managers[0].save_conversation(secret_conversation())
    for manager in managers:
        assert len(manager.search_conversations(REPLY)) == 1
        manager.close()
    assert plaintext_in(files_of(tmp_path / "chats.db"), PLAINTEXTS) == []
