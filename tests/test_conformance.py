"""The built-in backends pass the whole conformance suite."""

from __future__ import annotations

import pytest

from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.testing import StoreContract


class TestSQLiteContract(StoreContract):
    @pytest.fixture
    def store_opener(self, tmp_path):
        return lambda name: SQLiteStore(tmp_path / f"{name}.db")


class TestSQLiteInMemoryContract(StoreContract):
    @pytest.fixture
    def store_opener(self):
        return lambda name: SQLiteStore(":memory:")


class TestMemoryContract(StoreContract):
    @pytest.fixture
    def store_opener(self):
        return lambda name: MemoryStore()
