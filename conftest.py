"""Repository-wide pytest setup: Hypothesis profiles and the report header."""

from __future__ import annotations

import os
import sqlite3

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], max_examples=60
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], max_examples=150, derandomize=False
)
settings.register_profile(
    "deep", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    max_examples=2000
)
# The quick tier (HYPOTHESIS_PROFILE=quick pytest -m "not slow"): a small budget.
settings.register_profile(
    "quick", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], max_examples=10
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_report_header() -> str:
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("CREATE VIRTUAL TABLE probe USING fts5(body)")
        fts5 = "yes"
    except sqlite3.Error:
        fts5 = "NO"
    finally:
        connection.close()
    return f"sqlite {sqlite3.sqlite_version}, FTS5: {fts5}"
