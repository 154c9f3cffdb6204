"""The jsonl backend: the core's conformance suite plus what is particular to files."""

from __future__ import annotations

import errno
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from qv_ollama_sdk.domain.models import Conversation

import qv_session_manager
from qv_session_manager import (
    Capability,
    ConversationFilter,
    ConversationRecord,
    CorruptStorageError,
    InvalidInputError,
    MessageRecord,
    ReadOnlyStorageError,
    SchemaVersionError,
    SessionManager,
    StorageError,
    StorageFullError,
    ToolCallRecord,
    open_store,
)
from qv_session_manager.query import parse
from qv_session_manager.testing import StoreContract
from qv_session_manager_jsonl import JsonlStore, file_name, open_url
from qv_session_manager_jsonl import store as store_module

AT = datetime(2025, 1, 20, 12, 0, 0)


class TestJsonlContract(StoreContract):
    @pytest.fixture
    def store_opener(self, tmp_path):
        return lambda name: JsonlStore(tmp_path / name)


@pytest.mark.slow
class TestEncryptedJsonlContract(StoreContract):
    """Field-level encryption (EncryptedStore) over JSON Lines passes the same suite."""

    @pytest.fixture
    def store_opener(self, tmp_path):
        pytest.importorskip("cryptography", reason="EncryptedStore needs the [encryption] extra")
        from qv_session_manager.encryption import EncryptedStore

        key = bytes(range(32))
        return lambda name: EncryptedStore(JsonlStore(tmp_path / name), {"k1": key}, current="k1")


# -- helpers -------------------------------------------------------------------


def record(id: str = "c1", title: str | None = "Grüße aus Köln", **fields) -> ConversationRecord:
    fields.setdefault("created_at", AT)
    fields.setdefault("updated_at", AT)
    return ConversationRecord(id=id, title=title, model_name="llama3", **fields)


def message(id: str, content: str = "hello", **fields) -> MessageRecord:
    fields.setdefault("created_at", AT)
    fields.setdefault("role", "user")
    return MessageRecord(id=id, content=content, **fields)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(directory: Path):
    opened = JsonlStore(directory)
    yield opened
    opened.close()


def names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# -- the file format -------------------------------------------------------------


def test_files_are_human_readable_json_lines(store: JsonlStore, directory: Path) -> None:
    plus_two = timezone(timedelta(hours=2))
    store.save(
        record(metadata={"topic": "Straße", "n": [1, 2.5]}, updated_at=datetime(2025, 1, 20, 14, tzinfo=plus_two)),
        [
            message("m1", "Wie geht's? 🙂\nZweite Zeile\u2028LS", images=("aGk=", b"\x89PNG\x00")),
            message(
                "m2", "", role="assistant", tool_calls=(ToolCallRecord("get_weather", {"city": "Köln"}, "call_1"),)
            ),
            message("m3", "18 °C", role="tool", tool_call_id="call_1"),
        ],
    )
    [name] = names(directory)
    assert name == "c1.jsonl"
    raw = (directory / name).read_bytes()
    text = raw.decode("utf-8")
    assert "Grüße aus Köln" in text and "Straße" in text and "🙂" in text, "non-ASCII must stay readable"
    lines = raw.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 5, "one header line, one line per message, final newline"
    header, *messages = [json.loads(line) for line in lines[:-1]]
    assert header == {
        "id": "c1",
        "title": "Grüße aus Köln",
        "model_name": "llama3",
        "created_at": "2025-01-20T12:00:00",
        "updated_at": "2025-01-20T14:00:00+02:00",
        "metadata": {"topic": "Straße", "n": [1, 2.5]},
        "format": 1,
    }
    assert [m["id"] for m in messages] == ["m1", "m2", "m3"]
    assert messages[0]["images"] == ["aGk=", {"$bytes": "iVBORwA="}]
    assert messages[0]["content"] == "Wie geht's? 🙂\nZweite Zeile\u2028LS"
    assert messages[1]["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Köln"}, "id": "call_1"}]
    assert messages[2]["tool_call_id"] == "call_1" and messages[2]["created_at"] == "2025-01-20T12:00:00"


def test_saving_appends_a_line_and_rewrites_in_place(store: JsonlStore, directory: Path) -> None:
    store.save(record(), [message("a"), message("b")])
    store.save(record(), [message("c"), message("a", "edited")])
    lines = (directory / "c1.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["c1", "a", "b", "c"]
    assert json.loads(lines[1])["content"] == "edited"


def test_hand_edited_files_with_crlf_and_blank_lines_load(store: JsonlStore, directory: Path) -> None:
    store.save(record(), [message("a"), message("b")])
    path = directory / "c1.jsonl"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n") + b"\r\n")  # git autocrlf, a stray blank line
    loaded = store.load("c1")
    assert loaded is not None and [m.id for m in loaded.messages] == ["a", "b"]


# -- atomic writes ------------------------------------------------------------------


def test_writes_leave_no_temporary_files(store: JsonlStore, directory: Path) -> None:
    for turn in range(5):
        store.save(record(), [message(f"m{turn}")])
        store.save(record("c2"), [message("x", f"turn {turn}")], replace=True)
    store.delete_message("c1", "m0")
    store.delete("c2")
    assert names(directory) == ["c1.jsonl"]


def test_stray_temporary_files_are_ignored(store: JsonlStore, directory: Path) -> None:
    store.save(record(), [message("a", "needle")])
    (directory / ".5f3a9c.jsonl.tmp").write_bytes(b'{"id": "half a fi')  # a crash mid-write
    (directory / "notes.txt").write_text("not a conversation")
    (directory / ".hidden.jsonl").write_text("an editor's backup")
    (directory / "sub.jsonl").mkdir()
    assert [r.id for r in store.list(ConversationFilter())] == ["c1"]
    assert [h.conversation.id for h in store.search(parse("needle"), ConversationFilter())] == ["c1"]
    store.save(record(), [message("b")])
    assert (directory / ".5f3a9c.jsonl.tmp").read_bytes() == b'{"id": "half a fi'


def test_a_failed_rename_keeps_the_old_file_and_cleans_up(store: JsonlStore, directory: Path, monkeypatch) -> None:
    store.save(record(), [message("a")])
    before = (directory / "c1.jsonl").read_bytes()

    def no_space(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.os, "replace", no_space)
    with pytest.raises(StorageFullError) as caught:
        store.save(record(title="after"), [message("b")])
    assert isinstance(caught.value.__cause__, OSError)
    monkeypatch.undo()
    assert (directory / "c1.jsonl").read_bytes() == before
    assert names(directory) == ["c1.jsonl"], "the temporary file must be removed"
    loaded = store.load("c1")
    assert loaded is not None and loaded.conversation.title == "Grüße aus Köln" and len(loaded.messages) == 1


def test_a_failed_fsync_writes_nothing(store: JsonlStore, directory: Path, monkeypatch) -> None:
    store.save(record(), [message("a")])

    def broken(descriptor):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(store_module.os, "fsync", broken)
    with pytest.raises(StorageError) as caught:
        store.save(record(), [message("b")])
    assert type(caught.value) is StorageError
    monkeypatch.undo()
    assert [m.id for m in store.load("c1").messages] == ["a"]
    assert names(directory) == ["c1.jsonl"]


# -- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json at all\n",
        b'{"id": "c1", "title": \n',
        b"[1, 2]\n",
        b'{"id": "c1"}\n',
        b"\xff\xfe garbage",
        b'{"id": "c1", "created_at": "yesterday", "updated_at": "x"}\n',
        b'{"id": "c1", "created_at": "2025-01-20T12:00:00", "updated_at": "2025-01-20T12:00:00"}\n{"id": "m"}\n',
        b'{"id": "c1", "created_at": "2025-01-20T12:00:00", "updated_at": "2025-01-20T12:00:00", "metadata": NaN}\n',
        b"[" * 100_000 + b"\n",
    ],
    ids=["empty", "text", "truncated", "array", "missing-fields", "binary", "bad-time", "bad-message", "nan", "deep"],
)
def test_corrupt_files_raise_corrupt_storage_error(store: JsonlStore, directory: Path, content: bytes) -> None:
    (directory / "c1.jsonl").write_bytes(content)
    calls = {
        "load": lambda: store.load("c1"),
        "get": lambda: store.get("c1"),
        "list": lambda: store.list(ConversationFilter()),
        "search": lambda: store.search(parse("hello"), ConversationFilter()),
        "save": lambda: store.save(record(), [message("a")]),
        "delete_message": lambda: store.delete_message("c1", "a"),
    }
    for label, call in calls.items():
        with pytest.raises(CorruptStorageError) as caught:
            call()
        assert "c1.jsonl" in str(caught.value), f"{label}: the error must name the file"
    assert (directory / "c1.jsonl").read_bytes() == content, "a corrupt file is never overwritten silently"
    assert store.delete("c1") is True, "a corrupt conversation can still be deleted"
    assert store.list(ConversationFilter()) == []


def test_records_mutated_after_validation_are_refused_before_writing(store: JsonlStore, directory: Path) -> None:
    store.save(record(), [message("a")])
    before = (directory / "c1.jsonl").read_bytes()
    for bad in [float("nan"), {1, 2}, "lone \ud800"]:
        broken = record(metadata={"k": 1})
        broken.metadata["k"] = bad  # records are validated when built, not when their dicts change
        with pytest.raises(InvalidInputError):
            store.save(broken, [message("b")])
    assert (directory / "c1.jsonl").read_bytes() == before and names(directory) == ["c1.jsonl"]


def test_a_renamed_file_is_reported(store: JsonlStore, directory: Path) -> None:
    store.save(record(), [])
    (directory / "c1.jsonl").rename(directory / "other.jsonl")
    with pytest.raises(CorruptStorageError, match=r"other\.jsonl"):
        store.list(ConversationFilter())


def test_a_newer_format_is_refused(store: JsonlStore, directory: Path) -> None:
    store.save(record(), [])
    path = directory / "c1.jsonl"
    header = json.loads(path.read_text("utf-8"))
    path.write_text(json.dumps({**header, "format": 2}) + "\n", "utf-8")
    with pytest.raises(SchemaVersionError, match=r"c1\.jsonl"):
        store.load("c1")


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.EACCES, ReadOnlyStorageError),
        (errno.EROFS, ReadOnlyStorageError),
        (errno.EPERM, ReadOnlyStorageError),
        (errno.ENOSPC, StorageFullError),
        (errno.EIO, StorageError),
    ],
)
def test_os_errors_are_translated(store: JsonlStore, monkeypatch, code: int, kind: type) -> None:
    real_open = os.open

    def failing_open(path, flags, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise OSError(code, os.strerror(code), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(store_module.os, "open", failing_open)
    with pytest.raises(kind) as caught:
        store.save(record(), [message("a")])
    assert type(caught.value) is kind and isinstance(caught.value.__cause__, OSError)
    monkeypatch.undo()
    assert store.load("c1") is None


@pytest.mark.skipif(
    os.name == "nt" or getattr(os, "geteuid", lambda: 0)() == 0, reason="needs POSIX permissions that apply (not root)"
)
def test_read_only_directory(store: JsonlStore, directory: Path) -> None:
    store.save(record(), [message("a")])
    directory.chmod(0o500)
    try:
        with pytest.raises(ReadOnlyStorageError):
            store.save(record(), [message("b")])
        assert [m.id for m in store.load("c1").messages] == ["a"]
    finally:
        directory.chmod(0o700)


def test_the_directory_path_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError):
        JsonlStore(tmp_path / "file")
    with pytest.raises(InvalidInputError):
        JsonlStore("")
    with pytest.raises(InvalidInputError):
        JsonlStore(str(tmp_path / "nul\x00byte"))


def test_calls_after_close_raise_storage_error(directory: Path) -> None:
    store = JsonlStore(directory)
    store.save(record(), [message("a")])
    store.close()
    store.close()  # harmless
    calls = [
        lambda: store.save(record(), []),
        lambda: store.load("c1"),
        lambda: store.get("c1"),
        lambda: store.delete("c1"),
        lambda: store.delete_message("c1", "a"),
        lambda: store.list(ConversationFilter()),
        lambda: store.search(parse("hello"), ConversationFilter()),
        lambda: store.search(parse(""), ConversationFilter()),
    ]
    for call in calls:
        with pytest.raises(StorageError):
            call()
    assert (directory / "c1.jsonl").exists()


# -- ids and file names ----------------------------------------------------------------


HOSTILE_IDS = [
    "a/b",
    "../escape",
    "..",
    ".",
    "../../etc/passwd",
    "/absolute",
    "back\\slash",
    "C:\\windows",
    "with space",
    "東京の会話",
    "émoji 🙂",
    "Case",
    "case",
    "CASE",
    "con",
    "NUL",
    "-rf",
    ".hidden",
    "%2F",
    "+sha256-abc",
    "x" * 5000,
    "y" * 199,
    "tab\there",
    "line\nbreak",
    "ünïcödé/../..",
    "a.jsonl",
    "a.jsonl.tmp",
]


def test_hostile_ids_stay_inside_the_directory(tmp_path: Path, directory: Path) -> None:
    store = JsonlStore(directory)
    for index, conversation_id in enumerate(HOSTILE_IDS):
        store.save(record(conversation_id, title=f"title {index}"), [message("m", f"body {index}")])
    assert sorted(os.listdir(tmp_path)) == ["store"], "nothing may be written beside the directory"
    files = names(directory)
    assert len(files) == len(HOSTILE_IDS), "every id needs its own file"
    assert len({name.lower() for name in files}) == len(files), "names must differ on case-insensitive systems"
    for name in files:
        assert (directory / name).is_file() and name.endswith(".jsonl") and not name.startswith(".")
        assert name.isascii() and len(name.encode()) <= 255 and os.sep not in name and "/" not in name
        assert name.split(".", 1)[0].lower() not in {"con", "nul", "prn", "aux"}
    assert sorted(r.id for r in store.list(ConversationFilter())) == sorted(HOSTILE_IDS)
    for index, conversation_id in enumerate(HOSTILE_IDS):
        loaded = store.load(conversation_id)
        assert loaded is not None and loaded.conversation.title == f"title {index}"
    store.close()
    reopened = JsonlStore(directory)
    assert sorted(r.id for r in reopened.list(ConversationFilter())) == sorted(HOSTILE_IDS)
    for conversation_id in HOSTILE_IDS:
        assert reopened.delete(conversation_id) is True
    assert names(directory) == []
    reopened.close()


def test_file_names() -> None:
    assert file_name("abc-1_2.3~") == "abc-1_2.3~.jsonl"
    assert file_name("a/b") == "a%2Fb.jsonl"
    assert file_name("..") == "%2E..jsonl"
    assert file_name("Ab") == "%41b.jsonl"
    assert file_name("é") == "%C3%A9.jsonl"
    assert file_name("con") == "%63on.jsonl"
    assert file_name("x" * 5000).startswith("+sha256-")
    assert file_name("x" * 200) == "x" * 200 + ".jsonl"


def test_unusable_ids_read_as_missing(store: JsonlStore) -> None:
    for bad in ["", "a\x00b", "\ud800", None, 5]:
        assert store.load(bad) is None and store.get(bad) is None  # type: ignore[arg-type]
        assert store.delete(bad) is False and store.delete_message(bad, "m") is False  # type: ignore[arg-type]


def test_two_stores_on_one_directory_see_each_other(directory: Path) -> None:
    first, second = JsonlStore(directory), JsonlStore(directory)
    first.save(record(), [message("a")])
    second.save(record(), [message("b")])
    assert [m.id for m in first.load("c1").messages] == ["a", "b"]
    assert second.delete("c1") is True
    assert first.load("c1") is None and first.list(ConversationFilter()) == []
    first.close()
    second.close()


# -- the plugin --------------------------------------------------------------------


def test_discovered_through_the_entry_point() -> None:
    backend = qv_session_manager.available_backends()["jsonl"]
    assert backend.plugin == "qv-session-manager-jsonl" and backend.name == "jsonl"
    assert backend.open is open_url


def test_urls(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("jsonl:///relative/dir")
    assert isinstance(relative, JsonlStore) and relative.directory == str(tmp_path / "relative" / "dir")
    assert (tmp_path / "relative" / "dir").is_dir()
    absolute = open_store(f"jsonl:///{tmp_path}/absolute")
    assert absolute.directory == str(tmp_path / "absolute")
    escaped = open_store("jsonl:///with%20space")
    assert escaped.directory == str(tmp_path / "with space")
    assert relative.capabilities == frozenset(
        {
            Capability.PERSISTENT,
            Capability.RELEVANCE,
            Capability.EXPIRY,
            Capability.WINDOWED_LOADING,
            Capability.PURGING,
            Capability.INDEX_INSPECTION,
            Capability.TOKEN_COUNTING,
            Capability.VECTOR_STORAGE,
        }
    )
    for store in (relative, absolute, escaped):
        store.close()
    for bad in ["jsonl://", "jsonl:///", "jsonl://host/dir", "jsonl:///dir?fsync=0", "jsonl:///dir#x"]:
        with pytest.raises(InvalidInputError):
            open_store(bad)
    with pytest.raises(InvalidInputError):
        open_store("jsonl:///dir", synchronous="normal")


def test_session_manager_end_to_end(tmp_path: Path) -> None:
    url = f"jsonl:///{tmp_path}/store"
    conversation = Conversation(title="Python Help", model_name="llama3", metadata={"topic": "python"})
    conversation.add_user_message("Explain Python lists to me!")
    conversation.add_assistant_message("Lists are ordered, mutable collections.")
    other = Conversation(title="Weather in Paris", metadata={"topic": "travel"})
    other.add_user_message("How warm is it in Paris? Résumé please")
    with SessionManager(url=url) as manager:
        manager.save_conversation(conversation)
        reply = conversation.add_user_message("And what is a tuple?")
        manager.save_conversation(conversation, [reply])
        manager.save_conversation(other)
        assert [c["title"] for c in manager.search_conversations("lists")] == ["Python Help"]
        assert [c["title"] for c in manager.search_conversations("resume", order="relevance")] == ["Weather in Paris"]
        assert [c["title"] for c in manager.list_conversations(metadata={"topic": "travel"})] == ["Weather in Paris"]
    assert len(list((tmp_path / "store").glob("*.jsonl"))) == 2
    with SessionManager(url=url) as manager:
        loaded = manager.load_conversation(str(conversation.id))
        assert loaded is not None and loaded.title == "Python Help"
        assert [m.content for m in loaded.messages] == [m.content for m in conversation.messages]
        assert manager.resume_conversation(str(conversation.id))["last_message"]["content"] == "And what is a tuple?"
        hits = manager.search_conversations("tuple", snippets=True)
        assert len(hits) == 1 and "**tuple**" in hits[0]["snippet"]
        assert manager.delete_message(str(conversation.id), str(conversation.messages[0].id)) is True
        assert len(manager.load_conversation(str(conversation.id)).messages) == 2
        assert manager.delete_conversation(str(other.id)) is True
        assert manager.delete_conversation(str(other.id)) is False
        assert [c["id"] for c in manager.list_conversations()] == [str(conversation.id)]
