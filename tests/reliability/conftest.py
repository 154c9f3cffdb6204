"""Shared setup of the reliability suite (``tests/reliability``).

Every test here carries the ``reliability`` marker. The suite has two sizes: the
bounded one runs in the default test command (and in CI); the long one runs with
``QV_SESSION_MANAGER_RELIABILITY=long pytest -m reliability tests/reliability``.
Tests read their sizes through ``reliability_kit.budget``, so both sizes run the same code.

PostgreSQL tests take ``postgres_url`` (skipped with the reason when no server
answers, failed instead when ``QV_SESSION_MANAGER_REQUIRE_SERVERS=1``) and
``postgres_schema`` (a fresh schema name, dropped with everything in it afterwards).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_URL_VARIABLE = "QV_SESSION_MANAGER_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REQUIRE_SERVERS_VARIABLE = "QV_SESSION_MANAGER_REQUIRE_SERVERS"
HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "server_restart: restarts a PostgreSQL server (deselect with -m 'not server_restart')"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server's URL, once it answered."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'qv-session-manager-postgres')")
    url = os.environ.get(POSTGRES_URL_VARIABLE) or DEFAULT_POSTGRES_URL
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        message = f"no PostgreSQL server reachable ({str(exc).strip()}); set {POSTGRES_URL_VARIABLE}"
        if os.environ.get(REQUIRE_SERVERS_VARIABLE) == "1":
            pytest.fail(f"{message} ({REQUIRE_SERVERS_VARIABLE}=1: servers are required)")
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name (the store creates it); dropped with its contents afterwards."""
    import psycopg

    name = f"qvrel_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')  # type: ignore[arg-type]
