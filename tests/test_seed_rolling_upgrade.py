"""A rolling upgrade: the real 0.3.0 (own virtualenv) on a file this package created or upgraded.

Services are upgraded one at a time, so a 0.3.0 process may still open a file this
package has made or upgraded. These tests run 0.3.0 itself (``seed_process``) on such
files, in two flavours: a file this package created, and a file 0.3.0 made which this
package then upgraded. They pin what 0.3.0 can and cannot do there (the README's
upgrade paragraph states it), and that nothing it does can leak a deleted
conversation's messages into another one.

The 0.3.0 virtualenv is built once per test session in pytest's cache directory (or
in ``QV_SESSION_MANAGER_SEED_VENV`` when set, e.g. ``benchmarks/.cache/seed-venv``);
without network or pip cache the tests skip, saying why, unless
``QV_SESSION_MANAGER_REQUIRE_SERVERS=1`` (CI), where that fails instead.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import SessionManager
from qv_session_manager.cli import main

from seed_process import SeedUnavailable, run_seed, seed_python

pytestmark = pytest.mark.slow  # builds a virtualenv with the real 0.3.0 and runs it in processes


REQUIRE_VARIABLE = "QV_SESSION_MANAGER_REQUIRE_SERVERS"
VENV_VARIABLE = "QV_SESSION_MANAGER_SEED_VENV"
SECRET = "flamingo"  # a word only the conversation 0.3.0 deletes contains


@pytest.fixture(scope="session")
def seed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of the 0.3.0 virtualenv (built on first use)."""
    if os.environ.get(VENV_VARIABLE):
        directory = Path(os.environ[VENV_VARIABLE])
    else:
        cache = getattr(request.config, "cache", None)
        directory = Path(cache.mkdir("seed-0.3.0-venv")) if cache is not None else tmp_path_factory.mktemp("seed-venv")
    try:
        return seed_python(directory)
    except SeedUnavailable as exc:
        if os.environ.get(REQUIRE_VARIABLE) == "1":
            pytest.fail(f"{exc} ({REQUIRE_VARIABLE}=1: the 0.3.0 virtualenv is required)")
        pytest.skip(str(exc))


def _chat(title: str, *contents: str) -> Conversation:
    conversation = Conversation(model_name="gemma3:1b", title=title, metadata={"team": "support"})
    for index, content in enumerate(contents):
        (conversation.add_user_message if index % 2 == 0 else conversation.add_assistant_message)(content)
    return conversation


def _ok(outcome: dict[str, Any]) -> Any:
    assert "ok" in outcome, outcome
    return outcome["ok"]


def _raw(path: Path, sql: str, parameters: tuple = ()) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, parameters).fetchall()
    finally:
        db.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=["created", "upgraded"])
def shared_file(request: pytest.FixtureRequest, tmp_path: Path, seed: Path) -> Iterator[tuple[Path, Conversation]]:
    """(path, kept): a file at this package's schema holding ``kept`` and nothing else.

    "created": made by this package. "upgraded": made by 0.3.0 (which saved ``kept``),
    then opened, and so upgraded, by this package.
    """
    path = tmp_path / "shared.db"
    kept = _chat("Printer setup", "How do I add the office printer?", "Open the settings and add it by its address.")
    if request.param == "created":
        with SessionManager(db_path=str(path)) as manager:
            manager.save_conversation(kept, kept.messages)
    else:
        spec = {
            "id": str(kept.id),
            "title": kept.title,
            "model_name": kept.model_name,
            "metadata": kept.metadata,
            "messages": [[m.role.value, m.content] for m in kept.messages],
        }
        outcomes = run_seed(seed, path, ["open"], ["save", spec], ["list"])
        assert [row["id"] for row in _ok(outcomes[2])] == [str(kept.id)]
        with SessionManager(db_path=str(path)) as manager:
            stored = manager.load_conversation(str(kept.id))
            assert stored is not None and [m.content for m in stored.messages] == [m.content for m in kept.messages]
    yield path, kept


def test_a_conversation_deleted_by_0_3_0_never_shows_in_a_new_one(
    shared_file: tuple[Path, Conversation], seed: Path
) -> None:
    """0.3.0 deletes a conversation (its connection has no foreign keys); this package then
    creates a new one. The deleted messages must not show in the new conversation, nor in
    search, nor stay as rows in the file."""
    path, kept = shared_file
    private = _chat("Medical question", f"My {SECRET} tattoo itches, is that normal?", f"A {SECRET} tattoo can itch.")
    with SessionManager(db_path=str(path)) as manager:
        manager.save_conversation(private, private.messages)  # the newest conversation: the highest key
    deleted = run_seed(seed, path, ["open"], ["delete", str(private.id)], ["list"])
    assert {row["id"] for row in _ok(deleted[2])} == {str(kept.id)}, "0.3.0 deleted the conversation row"

    fresh = _chat("Holiday plans", "Where should I go in May?")
    with SessionManager(db_path=str(path)) as manager:
        manager.save_conversation(fresh, fresh.messages)
        assert manager.load_conversation(str(private.id)) is None
        loaded = manager.load_conversation(str(fresh.id))
        assert loaded is not None
        assert [m.content for m in loaded.messages] == ["Where should I go in May?"], "deleted messages leaked in"
        assert manager.search_conversations(SECRET) == []
        assert [c["id"] for c in manager.search_conversations("holiday")] == [str(fresh.id)]
        assert {c["id"] for c in manager.list_conversations()} == {str(kept.id), str(fresh.id)}
    assert _raw(path, "SELECT count(*) FROM messages WHERE content LIKE ?", (f"%{SECRET}%",)) == [(0,)]
    assert _raw(path, "SELECT count(*) FROM messages") == [(len(kept.messages) + len(fresh.messages),)]
    # 0.3.0's connection does not zero the pages its delete frees: doctor --repair rewrites the file.
    repaired = CliRunner().invoke(main, ["--url", f"sqlite:///{path}", "doctor", "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert SECRET.encode() not in b"".join(
        p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name)
    ), "deleted text is still in the file after doctor --repair"


def test_what_0_3_0_can_and_cannot_do_with_an_upgraded_file(shared_file: tuple[Path, Conversation], seed: Path) -> None:
    """0.3.0 on a file at this package's schema: opening, listing and time search work and
    change nothing; loading, resuming and text search fail with sqlite3.OperationalError
    (no ``messages.conversation_id``); saving fails with sqlite3.IntegrityError and writes
    nothing. (Deleting works: the next test.)"""
    path, kept = shared_file
    with SessionManager(db_path=str(path)) as manager:
        ours = manager.list_conversations()
    before = _digest(path)
    new_id = str(uuid.uuid4())
    new = {"id": new_id, "title": "Written by 0.3.0", "messages": [["user", "hello from the old service"]]}
    outcomes = run_seed(
        seed,
        path,
        ["open"],
        ["list"],
        ["time", "2000-01-01"],
        ["load", str(kept.id)],
        ["resume", str(kept.id)],
        ["search", "printer"],
        ["save", new],
    )
    opened, listed, timed, loaded, resumed, searched, saved = outcomes
    assert opened == {"ok": None}
    assert _ok(listed) == ours, "0.3.0 lists what this package lists, field for field"
    assert _ok(timed) == [str(kept.id)]
    for failed in (loaded, resumed, searched):
        assert "OperationalError" in failed.get("error", []), failed
        assert "conversation_id" in failed["message"]
    assert "IntegrityError" in saved.get("error", []), saved
    assert _digest(path) == before, "0.3.0 changed the file"
    with SessionManager(db_path=str(path)) as manager:
        assert manager.list_conversations() == ours
        assert manager.load_conversation(new_id) is None


def test_0_3_0_deletes_from_an_upgraded_file(shared_file: tuple[Path, Conversation], seed: Path) -> None:
    """0.3.0's delete_conversation removes the conversation from every view of this package:
    not listed, not loaded, not found by search."""
    path, kept = shared_file
    outcomes = run_seed(seed, path, ["open"], ["delete", str(kept.id)], ["list"])
    assert outcomes[1] == {"ok": None} and _ok(outcomes[2]) == []
    with SessionManager(db_path=str(path)) as manager:
        assert manager.list_conversations() == []
        assert manager.load_conversation(str(kept.id)) is None
        assert manager.search_conversations("printer") == []
        assert manager.search_by_time("2000-01-01") == []
