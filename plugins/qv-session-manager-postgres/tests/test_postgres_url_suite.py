"""The conformance suite's URL mode against PostgreSQL leaves no schema behind (PostgresStore.drop)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

pytest_plugins = ["pytester"]

#: Tests of the suite that open several names, reopen one and close stores themselves.
SOME_TESTS = "test_data_survives_reopening or test_delete or test_calls_after_close_fail or test_replace"


def schemas(url: str, prefix: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,))
        return [row[0] for row in rows]


def run_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, url: str, *plugin: str) -> None:
    monkeypatch.setenv("QV_SESSION_MANAGER_TEST_URL", url)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    result = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", *plugin, "--pyargs", "qv_session_manager.testing.url_suite", "-k", SOME_TESTS
    )
    result.assert_outcomes(passed=5)


def test_the_url_suite_drops_every_schema_it_created(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, postgres_url: str, schema_prefix: str
) -> None:
    url = f"{postgres_url}?schema={schema_prefix}_{{run}}_{{name}}"
    run_suite(pytester, monkeypatch, url)
    assert schemas(postgres_url, schema_prefix) == [], "the suite left schemas behind"


def test_without_drop_the_same_run_leaves_its_schemas(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, postgres_url: str, schema_prefix: str
) -> None:
    """The check above can fail: without drop() every name's schema stays, one per test and name."""
    Path(pytester.path, "no_drop.py").write_text(
        "from qv_session_manager_postgres import PostgresStore\n\ndel PostgresStore.drop\n"
    )
    url = f"{postgres_url}?schema={schema_prefix}_{{run}}_{{name}}"
    run_suite(pytester, monkeypatch, url, "-p", "no_drop")
    left = schemas(postgres_url, schema_prefix)
    assert len([name for name in left if "_contract-" in name]) >= 2, f"two tests shared a store: {left}"
