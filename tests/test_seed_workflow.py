"""0.3.0's demo and its test workflow, as 0.3.0 users wrote them, run against this package.

0.3.0 shipped a demo (``examples/basic_usage.py`` in its repository) and a test file
(``tests/test_session_manager.py``). Both import ``SessionManager`` from
``qv_session_manager.session_manager``, the test makes its database path with
``tempfile.mkstemp()`` (a zero-length file) and never closes the manager, and the demo
writes ``demo_sessions.db`` into the working directory and may be run again on it.
The steps below follow theirs, written afresh, with what each step showed the user
checked against this package. (0.3.0's README examples are ``test_seed_readme.py``.)
"""

from __future__ import annotations

import gc
import os
import sqlite3
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from qv_ollama_sdk.domain.models import Conversation, MessageRole

from qv_session_manager import InvalidInputError
from qv_session_manager.session_manager import SessionManager

from seed_layouts import OLD_DDL


def _remove_store_files(path: str) -> None:
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        try:
            os.remove(name)
        except FileNotFoundError:
            pass


# -- the demo -----------------------------------------------------------------------------


def _demo_run(today: str) -> dict[str, Any]:
    """One run of the demo's steps in the working directory; what it showed, as data."""
    shown: dict[str, Any] = {}
    mgr = SessionManager(db_path="demo_sessions.db")

    tutor = Conversation(
        model_name="gemma2:2b", title="Python Learning Help", metadata={"topic": "programming", "level": "beginner"}
    )
    tutor.add_system_message("You are a helpful Python tutor.")
    tutor.add_user_message("Explain Python lists to me!")
    tutor.add_assistant_message("Python lists are ordered, mutable collections written with [], like [1, 2, 3].")
    tutor.add_user_message("How do I add elements?")
    mgr.save_conversation(tutor, tutor.messages)

    shown["listed"] = [(c["title"], c["id"][:8]) for c in mgr.list_conversations()]
    shown["found"] = [c["title"] for c in mgr.search_conversations("lists")]

    loaded = mgr.load_conversation(str(tutor.id))
    assert loaded is not None
    shown["loaded"] = (loaded.title, loaded.model_name, len(loaded.messages))
    loaded.add_assistant_message("Use append(): my_list.append(4)")
    loaded.add_user_message("And how do I remove elements?")
    mgr.save_conversation(loaded, loaded.messages)

    resumed = mgr.resume_conversation(str(tutor.id))
    assert resumed is not None
    last = resumed["last_message"]
    shown["resumed"] = (last["content"][:50], last["role"])
    shown["today"] = len(mgr.search_by_time(start=today))

    web = Conversation(
        model_name="llama3", title="JavaScript Basics", metadata={"topic": "web-dev", "level": "intermediate"}
    )
    web.add_user_message("What are arrow functions?")
    web.add_assistant_message("A short syntax for functions: const add = (a, b) => a + b;")
    mgr.save_conversation(web, web.messages)

    shown["final"] = [(c["title"], c["created_at"][:10]) for c in mgr.list_conversations()]
    shown["ids"] = (str(tutor.id), str(web.id))
    shown["reloaded"] = mgr.load_conversation(str(tutor.id))
    return shown


def test_the_0_3_0_demo_shows_what_it_showed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step of the demo works and shows what it showed on 0.3.0: the listing, the
    search for 'lists', the loaded conversation (4 messages, model kept), the continued and
    re-saved conversation, the resume point, today's conversations and the final listing."""
    monkeypatch.chdir(tmp_path)
    today = datetime.now().strftime("%Y-%m-%d")
    shown = _demo_run(today)
    tutor_id, _ = shown["ids"]
    assert shown["listed"] == [("Python Learning Help", tutor_id[:8])]
    assert shown["found"] == ["Python Learning Help"]
    assert shown["loaded"] == ("Python Learning Help", "gemma2:2b", 4)
    assert shown["resumed"] == ("And how do I remove elements?", "user")
    assert shown["today"] == 1
    assert shown["final"] == [("JavaScript Basics", today), ("Python Learning Help", today)]
    reloaded = shown["reloaded"]
    assert [m.role for m in reloaded.messages] == [
        MessageRole.SYSTEM,
        MessageRole.USER,
        MessageRole.ASSISTANT,
        MessageRole.USER,
        MessageRole.ASSISTANT,
        MessageRole.USER,
    ]
    assert reloaded.messages[-2].content == "Use append(): my_list.append(4)"
    assert reloaded.metadata == {"topic": "programming", "level": "beginner"}
    assert (tmp_path / "demo_sessions.db").is_file()


def test_running_the_demo_again_adds_to_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run twice on its ``demo_sessions.db`` (as users do): the second run finds the first
    run's conversations too, so it lists four and finds two for 'lists'."""
    monkeypatch.chdir(tmp_path)
    today = datetime.now().strftime("%Y-%m-%d")
    _demo_run(today)
    gc.collect()  # the demo never closes its manager
    again = _demo_run(today)
    assert len(again["final"]) == 4
    assert again["found"] == ["Python Learning Help", "Python Learning Help"]
    assert again["today"] == 3  # the first run's two and this run's tutor conversation


# -- the test file ----------------------------------------------------------------------------


def test_the_0_3_0_workflow_on_a_mkstemp_path() -> None:
    """0.3.0's workflow test: a mkstemp() path (closed at once), create, save, load, list,
    search, time search, resume, delete; the manager is never closed and the path is
    removed while it is open."""
    fd, db_path = tempfile.mkstemp()
    os.close(fd)
    mgr = None
    try:
        mgr = SessionManager(db_path=db_path)
        conv = Conversation(model_name="llama3", title="Test", metadata={"foo": "bar"})
        conv.add_user_message("Hello")
        conv.add_assistant_message("Hi! How can I help?")
        mgr.save_conversation(conv, conv.messages)

        loaded = mgr.load_conversation(str(conv.id))
        assert loaded is not None
        assert loaded.id == conv.id
        assert (loaded.title, loaded.model_name, len(loaded.messages)) == ("Test", "llama3", 2)
        assert loaded.metadata == {"foo": "bar"}
        assert any(c["id"] == str(conv.id) for c in mgr.list_conversations())
        assert any(c["id"] == str(conv.id) for c in mgr.search_conversations("Hello"))
        now = datetime.now().isoformat()
        assert any(c["id"] == str(conv.id) for c in mgr.search_by_time(start=now[:10]))
        resumed = mgr.resume_conversation(str(conv.id))
        assert resumed is not None and resumed["last_message"]["content"] == "Hi! How can I help?"
        mgr.delete_conversation(str(conv.id))
        assert mgr.load_conversation(str(conv.id)) is None
    finally:
        os.remove(db_path)  # as 0.3.0's test did, with the manager still open
        del mgr
        gc.collect()
        _remove_store_files(db_path)


def test_the_0_3_0_old_layout_test_on_a_mkstemp_path() -> None:
    """0.3.0's backward-compatibility test: tables without ``model_name`` made with plain
    sqlite3 in a mkstemp() file, then a save with another model and a load that gives it
    back. (0.3.0's own version of it lacked ``import sqlite3`` and stopped at NameError.)"""
    fd, db_path = tempfile.mkstemp()
    os.close(fd)
    try:
        with sqlite3.connect(db_path) as conn:
            conn.executescript(OLD_DDL)
        conn.close()
        mgr = SessionManager(db_path=db_path)
        conv = Conversation(model_name="gemma2:2b", title="Backward Test", metadata={"test": "backward"})
        conv.add_user_message("Hello from old schema!")
        conv.add_assistant_message("Hi! I'm from the old schema too!")
        mgr.save_conversation(conv, conv.messages)
        loaded = mgr.load_conversation(str(conv.id))
        assert loaded is not None
        assert (loaded.id, loaded.title, loaded.model_name, len(loaded.messages)) == (
            conv.id,
            "Backward Test",
            "gemma2:2b",
            2,
        )
        mgr.close()
    finally:
        _remove_store_files(db_path)


def test_the_0_3_0_error_handling_answer_for_an_unknown_id(tmp_path: Path) -> None:
    """0.3.0's README error-handling example: loading "invalid-id" gives None, no exception."""
    with SessionManager(db_path=str(tmp_path / "x.db")) as mgr:
        assert mgr.load_conversation("invalid-id") is None
        assert mgr.resume_conversation("invalid-id") is None
        assert mgr.get_conversation_by_id("invalid-id") is None


# -- arguments as 0.3.0's README described them ------------------------------------------------


class _Note:
    """Not an SDK object: it only has ``to_db_dict()``, which is all 0.3.0 asked of a message."""

    def __init__(self, content: str, *, role: str = "user", identifier: str | None = None) -> None:
        self.identifier = identifier or str(uuid.uuid4())
        self.role = role
        self.content = content

    def to_db_dict(self) -> dict[str, object]:
        return {
            "id": self.identifier,
            "role": self.role,
            "content": self.content,
            "created_at": "2025-01-20T10:00:00",
            "metadata": {"source": "note"},
        }


class _Thread:
    """A conversation-like object with only ``to_db_dict()``."""

    def __init__(self) -> None:
        self.identifier = str(uuid.uuid4())

    def to_db_dict(self) -> dict[str, object]:
        return {
            "id": self.identifier,
            "title": "From notes",
            "model_name": "llama3",
            "created_at": "2025-01-20T09:00:00",
            "updated_at": "2025-01-20T10:00:00",
            "metadata": {},
        }


def test_objects_with_to_db_dict_are_saved_as_0_3_0_saved_them(tmp_path: Path) -> None:
    """0.3.0 took any conversation and messages "with a to_db_dict() method" and stored that
    dict: such objects are still saved, and load back as SDK objects with those fields."""
    thread, note = _Thread(), _Note("written from a plain object")
    with SessionManager(db_path=str(tmp_path / "duck.db")) as mgr:
        mgr.save_conversation(thread, [note])
        loaded = mgr.load_conversation(thread.identifier)
        assert loaded is not None
        assert (str(loaded.id), loaded.title, loaded.model_name) == (thread.identifier, "From notes", "llama3")
        assert loaded.updated_at == datetime(2025, 1, 20, 10, 0)
        [message] = loaded.messages
        assert (str(message.id), message.role, message.content, message.metadata) == (
            note.identifier,
            MessageRole.USER,
            "written from a plain object",
            {"source": "note"},
        )
        assert [c["id"] for c in mgr.search_conversations("plain")] == [thread.identifier]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(_Note("x", role="wizard"), id="unknown role"),
        pytest.param(_Note("x", identifier="not-a-uuid"), id="id not a UUID"),
        pytest.param({"role": "user", "content": "a dict"}, id="a dict"),
        pytest.param(object(), id="no to_db_dict"),
    ],
)
def test_objects_that_do_not_describe_a_message_are_refused(tmp_path: Path, bad: object) -> None:
    """A message whose to_db_dict() is not a message, or that has none, raises
    InvalidInputError (a ValueError) and nothing is written."""
    with SessionManager(db_path=str(tmp_path / "refused.db")) as mgr:
        conv = Conversation(model_name="llama3", title="kept out")
        with pytest.raises(InvalidInputError):
            mgr.save_conversation(conv, [bad])
        assert mgr.list_conversations() == []
