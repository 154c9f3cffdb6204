"""Fixtures for the PostgreSQL backend's tests.

The server comes from ``QV_SESSION_MANAGER_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Without a reachable server every
test here is skipped with the reason, unless ``QV_SESSION_MANAGER_REQUIRE_SERVERS=1``
(as in CI), where they fail instead. Each test gets its own fresh schemas, all
named after one unique prefix and dropped (CASCADE) after the test.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlsplit

import psycopg
import pytest
from hypothesis import settings

from qv_session_manager.redact import mask_url, scrub
from qv_session_manager.testing import profiles

URL_VARIABLE = "QV_SESSION_MANAGER_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
REQUIRE_VARIABLE = "QV_SESSION_MANAGER_REQUIRE_SERVERS"

# The repository's root conftest sets these profiles when pytest runs from the root;
# run from this directory, the same ones (the conformance kit's) are needed here.
for _short, _kit in [("default", "qv-default"), ("ci", "qv-ci"), ("deep", "qv-deep"), ("no-shrink", "qv-no-shrink")]:
    settings.register_profile(_short, settings.get_profile(_kit))
# The quick tier (HYPOTHESIS_PROFILE=quick pytest -m "not slow"): a small budget.
settings.register_profile("quick", settings.get_profile("qv-default"), max_examples=10)
settings.load_profile(os.environ.get(profiles.PROFILE_VARIABLE, "default"))


def pytest_configure(config: pytest.Config) -> None:
    # psycopg_pool's worker threads draw jitter from the global random module while
    # Hypothesis generates data; harmless, but Hypothesis warns about it.
    config.addinivalue_line("filterwarnings", "ignore:Do not use the `random` module inside strategies")
    config.addinivalue_line("markers", "slow: several processes or large data; still part of the default run")
    config.addinivalue_line("markers", "serial: must run alone (restarts the shared PostgreSQL server)")
    config.addinivalue_line(
        "markers",
        "server_restart: restarts the local PostgreSQL server (deselect with -m 'not server_restart')",
    )


def with_schema(url: str, schema: str) -> str:
    """``url`` with ``schema=...`` added to its query."""
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}schema={quote(schema, safe='')}"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The server's URL, once it answered; skip (or fail, when required) otherwise."""
    url = os.environ.get(URL_VARIABLE) or DEFAULT_URL
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        message = (
            f"no PostgreSQL server reachable at {mask_url(url)} ({scrub(str(exc).strip(), [url])}); "
            f"set {URL_VARIABLE} to a server's URL"
        )
        if os.environ.get(REQUIRE_VARIABLE) == "1":
            pytest.fail(f"{message} ({REQUIRE_VARIABLE}=1: servers are required)")
        pytest.skip(message)
    return url


def pgvector_missing(url: str) -> str | None:
    """Why the server cannot give pgvector to a new schema, or None when it can."""
    with psycopg.connect(url, connect_timeout=5, autocommit=True) as connection:
        found = connection.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    if found is None:
        return "the PostgreSQL server has no extension vector (pgvector); bash .ci/pgvector builds and installs it"
    return None


@pytest.fixture(scope="session")
def pgvector(postgres_url: str) -> None:
    """Skip, or fail when servers are required (as in CI), unless the server offers pgvector."""
    reason = pgvector_missing(postgres_url)
    if reason is not None:
        if os.environ.get(REQUIRE_VARIABLE) == "1":
            pytest.fail(f"{reason} ({REQUIRE_VARIABLE}=1: servers are required, pgvector included)")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def vectors_option(postgres_url: str) -> str:
    """The ``vectors`` option of the main suites: "pgvector" where the server has it.

    Without it the suites run on the bytea layout ("auto"), unless servers are
    required: then they fail, as a test needing pgvector must.
    """
    reason = pgvector_missing(postgres_url)
    if reason is None:
        return "pgvector"
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{reason} ({REQUIRE_VARIABLE}=1: servers are required, pgvector included)")
    return "auto"


_serial = itertools.count()


def drop_schemas(url: str, prefix: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        names = [
            row[0]
            for row in connection.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,))
        ]
        for name in names:
            connection.execute(f'DROP SCHEMA "{name}" CASCADE')  # type: ignore[arg-type]


@pytest.fixture
def schema_prefix(postgres_url: str) -> Iterator[str]:
    """A unique prefix; every schema whose name starts with it is dropped afterwards."""
    prefix = f"qvt_{uuid.uuid4().hex[:10]}_{next(_serial)}"
    drop_schemas(postgres_url, prefix)
    yield prefix
    drop_schemas(postgres_url, prefix)


def schema_name(prefix: str, name: str) -> str:
    """A schema for a store name: readable, and within PostgreSQL's 63 bytes."""
    safe = re.sub(r"[^a-z0-9_]", "_", name.lower())
    if len(prefix) + 1 + len(safe) > 63 or safe != name:
        safe = f"{safe[:30]}_{uuid.uuid5(uuid.NAMESPACE_OID, name).hex[:8]}"
    return f"{prefix}_{safe}"


@pytest.fixture
def schema_for(schema_prefix: str) -> Callable[[str], str]:
    """Store name -> this test's schema of that name (the same name, the same schema)."""
    return lambda name: schema_name(schema_prefix, name)


@pytest.fixture
def schema(schema_prefix: str) -> str:
    """A fresh schema name (not yet created: the store creates it)."""
    return f"{schema_prefix}_main"


@pytest.fixture
def store_url(postgres_url: str, schema: str) -> str:
    return with_schema(postgres_url, schema)


@pytest.fixture
def make_store(postgres_url: str, schema_prefix: str) -> Iterator[Callable[..., object]]:
    """Open PostgresStores on the test's schemas (by name); all are closed afterwards."""
    from qv_session_manager_postgres import PostgresStore

    opened: list[PostgresStore] = []

    def make(name: str = "main", **options: object) -> PostgresStore:
        store = PostgresStore(postgres_url, schema=schema_name(schema_prefix, name), **options)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
