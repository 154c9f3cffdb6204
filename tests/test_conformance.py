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


@pytest.mark.slow
class TestSQLiteEncryptedContract(StoreContract):
    """The whole contract and the state machine over SQLCipher-encrypted files.

    A raw 32-byte key: a passphrase would add its key derivation to every reopen.
    """

    @pytest.fixture
    def store_opener(self, tmp_path):
        key = bytes(range(32))
        return lambda name: SQLiteStore(tmp_path / f"{name}.db", key=key)


@pytest.mark.slow
class TestSQLiteSecureDeleteContract(StoreContract):
    """The whole contract through a driver whose SQLite has FTS5 secure-delete (3.42+)."""

    @pytest.fixture
    def store_opener(self, tmp_path):
        pytest.importorskip("pysqlite3.dbapi2", reason="driver='pysqlite3' needs pysqlite3-binary")
        return lambda name: SQLiteStore(tmp_path / f"{name}.db", driver="pysqlite3")


@pytest.mark.slow
class TestSQLiteInMemoryContract(StoreContract):
    @pytest.fixture
    def store_opener(self):
        return lambda name: SQLiteStore(":memory:")


class TestMemoryContract(StoreContract):
    @pytest.fixture
    def store_opener(self):
        return lambda name: MemoryStore()
