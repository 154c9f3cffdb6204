"""The core's whole conformance suite against PostgreSQL: one schema per store name."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qv_session_manager.testing import StoreContract
from qv_session_manager_postgres import PostgresStore


class TestPostgresContract(StoreContract):
    """With pgvector (vectors="pgvector") where the server has it; see conftest.vectors_option."""

    @pytest.fixture
    def store_opener(self, postgres_url: str, schema_for: Callable[[str], str], vectors_option: str):
        # The same name opens the same schema again: that is what persistence means here.
        def open_store(name: str) -> PostgresStore:
            store = PostgresStore(postgres_url, schema=schema_for(name), vectors=vectors_option)
            assert vectors_option == "auto" or store.vectors == store.vector_layout == "pgvector"
            return store

        return open_store


class TestPostgresExactVectorsContract(StoreContract):
    """The fallback without pgvector: vectors as bytea, ranked exactly in Python (vectors="exact")."""

    @pytest.fixture
    def store_opener(self, postgres_url: str, schema_for: Callable[[str], str]):
        def open_store(name: str) -> PostgresStore:
            store = PostgresStore(postgres_url, schema=schema_for(name), vectors="exact")
            assert store.vectors == "exact" and store.vector_layout == "bytea"
            return store

        return open_store


@pytest.mark.slow
class TestEncryptedPostgresContract(StoreContract):
    """Field-level encryption (EncryptedStore) over PostgreSQL passes the same suite."""

    @pytest.fixture
    def store_opener(self, postgres_url: str, schema_for: Callable[[str], str]):
        pytest.importorskip("cryptography", reason="EncryptedStore needs the [encryption] extra")
        from qv_session_manager.encryption import EncryptedStore

        key = bytes(range(32))
        return lambda name: EncryptedStore(
            PostgresStore(postgres_url, schema=schema_for(name)), {"k1": key}, current="k1"
        )
