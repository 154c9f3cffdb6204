"""Repository-wide pytest setup: Hypothesis profiles and the report header."""

from __future__ import annotations

import os
import sqlite3

from hypothesis import settings

from qv_session_manager.testing import profiles

# The conformance kit's profiles, under the short names this repository has always used
# (HYPOTHESIS_PROFILE=ci in .ci/run); the qv-* names work as well.
for _short, _kit in [("default", "qv-default"), ("ci", "qv-ci"), ("deep", "qv-deep"), ("no-shrink", "qv-no-shrink")]:
    settings.register_profile(_short, settings.get_profile(_kit))
# The quick tier (HYPOTHESIS_PROFILE=quick pytest -m "not slow"): a small budget.
settings.register_profile("quick", settings.get_profile("qv-default"), max_examples=10)
settings.load_profile(os.environ.get(profiles.PROFILE_VARIABLE, "default"))


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
