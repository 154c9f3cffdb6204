"""Every input of the bad-input catalogue, through the public API, on every backend.

Backends: memory, SQLite, the jsonl plugin, PostgreSQL (skipped with the reason when no
server answers) and EncryptedStore over memory. The cases are the table
``rel_inputs_catalogue.CASES``; each gives either a typed error (a
``SessionStoreError`` that is also the builtin the table names) or the result its
check asserts. On top of that, for every case:

- nothing but the expected outcome happens: another exception fails the case;
- a rejected call leaves every stored conversation exactly as it was (a full dump,
  every conversation loaded, before and after) and the store takes a save afterwards;
- a call that does not write leaves the dump unchanged too.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qv_session_manager import ConversationFilter, SessionManager, SessionStoreError
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.records import StoredConversation

from rel_inputs_catalogue import (
    CASES,
    PATH_CASES,
    PATH_FILES,
    Case,
    Env,
    PathCase,
    Rejected,
    conversation,
    corpus_conversations,
    message,
    same_messages,
)

BACKENDS = ["memory", "sqlite", "jsonl", "postgres", "encrypted"]


def dump(manager: SessionManager) -> dict[str, StoredConversation | None]:
    """Every stored conversation, loaded through the store (records compare field by field)."""
    store = manager.store
    return {record.id: store.load(record.id) for record in store.list(ConversationFilter())}


class _Backend:
    """One store for the whole module, reset to the corpus only after a case changed it."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.clean: dict[str, StoredConversation | None] | None = None  # the corpus dump, while intact

    def reset(self) -> dict[str, StoredConversation | None]:
        """Delete what differs from the corpus and save what is missing; return the dump."""
        manager = self.env.manager
        current = dump(manager)
        if current == self.clean:
            return current
        clean = self.clean or {}
        for conversation_id, stored in current.items():
            if clean.get(conversation_id) != stored:
                manager.store.delete(conversation_id)
        for made in corpus_conversations():
            if str(made.id) not in clean or current.get(str(made.id)) != clean[str(made.id)]:
                manager.save_conversation(made)
        self.clean = dump(manager)
        assert self.clean.keys() == {str(made.id) for made in corpus_conversations()}
        return self.clean


def _open(name: str, directory: Path, request: pytest.FixtureRequest) -> Env:
    if name == "memory":
        return Env(name, SessionManager(store=MemoryStore()))
    if name == "sqlite":
        return Env(name, SessionManager(store=SQLiteStore(directory / "inputs.db", synchronous="normal")))
    if name == "jsonl":
        from qv_session_manager_jsonl import JsonlStore

        return Env(name, SessionManager(store=JsonlStore(directory / "jsonl")), directory / "jsonl")
    if name == "postgres":
        from qv_session_manager_postgres import PostgresStore

        url = request.getfixturevalue("postgres_url")
        return Env(name, SessionManager(store=PostgresStore(url, schema=f"qvrel_inputs_{uuid.uuid4().hex[:12]}")))
    if name == "encrypted":
        from qv_session_manager.encryption import EncryptedStore

        return Env(name, SessionManager(store=EncryptedStore(MemoryStore(), {"k1": os.urandom(32)}, current="k1")))
    raise AssertionError(name)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Backend]:
    env = _open(request.param, tmp_path_factory.mktemp(request.param), request)
    yield _Backend(env)
    env.manager.close()
    if request.param == "postgres":
        import psycopg

        schema = env.manager.store.schema  # type: ignore[attr-defined]
        with psycopg.connect(request.getfixturevalue("postgres_url"), autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


def _run(call: Any, expect: Rejected | Any, *arguments: Any) -> tuple[Any, SessionStoreError | None]:
    """Run ``call``; return (result, the expected typed error or None). Anything else propagates."""
    if isinstance(expect, Rejected):
        with pytest.raises(SessionStoreError) as caught:
            call(*arguments)
        error = caught.value
        assert isinstance(error, expect.error) and isinstance(error, expect.builtin), (
            f"raised {type(error).__mro__}, expected {expect.error.__name__} (also a {expect.builtin.__name__})"
        )
        return None, error
    return call(*arguments), None


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_catalogue_input(backend: _Backend, case: Case) -> None:
    env = backend.env
    before = backend.reset()
    result, error = _run(case.call, case.expect, env)
    after = dump(env.manager)
    if error is not None:
        assert after == before, f"a rejected call ({error!r}) changed stored data"
        probe = conversation("written after a rejected call", messages=[message("still writable")])
        env.manager.save_conversation(probe)
        same_messages(env.manager.load_conversation(str(probe.id)), probe)
        return
    case.expect(result, env)  # type: ignore[operator]
    if not case.writes:
        assert after == before, "a call that only reads changed stored data"


def test_the_catalogue_covers_every_row() -> None:
    """Every catalogue row has a case here or in the path table, except 38 (read-only files,
    test_rel_faults.py) and 40 (a database on NFS: documented, not testable on one machine)."""
    numbers = {case.number for case in CASES} | {case.number for case in PATH_CASES}
    assert numbers | {38, 40} == set(range(1, 69)), sorted(set(range(1, 69)) - numbers - {38, 40})


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", PATH_CASES, ids=[case.id for case in PATH_CASES])
def test_paths_and_urls(case: PathCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Invariant: opening a store at a bad place raises the typed error and changes no file
    (and creates none beside it); a usable place gives a working store."""
    monkeypatch.chdir(tmp_path)
    for name, content in PATH_FILES.items():
        (tmp_path / name).write_bytes(content)
    before = {p.name: _digest(p) for p in tmp_path.iterdir()}
    manager, error = _run(case.open, case.expect, tmp_path)
    if error is not None:
        after = {p.name: _digest(p) for p in tmp_path.iterdir()}
        assert after == before, f"a refused open changed or created files: {sorted(set(after) ^ set(before))}"
        if case.untouched is not None:
            assert _digest(tmp_path / case.untouched) == before[case.untouched]
        return
    try:
        case.expect(manager, tmp_path)  # type: ignore[operator]
    finally:
        manager.close()
