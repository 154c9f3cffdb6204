"""Fixtures shared by the backend-agnostic tests: every test taking ``store`` or
``manager`` runs once per built-in backend."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qv_session_manager import SessionManager
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.protocol import ConversationStore

StoreFactory = Callable[[], ConversationStore]
BACKENDS = ["sqlite", "memory"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_store(backend: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of fresh, empty stores of the parametrized backend."""
    opened: list[ConversationStore] = []
    counter = itertools.count()

    def factory() -> ConversationStore:
        if backend == "sqlite":
            store: ConversationStore = SQLiteStore(tmp_path / f"store{next(counter)}.db")
        else:
            store = MemoryStore()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> ConversationStore:
    return make_store()


@pytest.fixture
def manager(store: ConversationStore) -> SessionManager:
    return SessionManager(store=store)
