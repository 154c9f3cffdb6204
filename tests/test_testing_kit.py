"""The conformance kit works the two documented ways: a subclass, or a URL."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.slow  # each test runs the kit in a pytest subprocess


def test_the_suite_runs_against_a_url(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QV_SESSION_MANAGER_TEST_URL", "sqlite:///{tmp}/{name}.db")
    result = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "--pyargs", "qv_session_manager.testing.url_suite",
        "-k", "test_data_survives_reopening or test_replace or test_delete",
    )
    result.assert_outcomes(passed=4)


def test_without_an_opener_or_url_the_suite_says_what_is_missing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QV_SESSION_MANAGER_TEST_URL", raising=False)
    result = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "--pyargs", "qv_session_manager.testing.url_suite", "-k", "test_replace"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*needs a store_opener fixture*QV_SESSION_MANAGER_TEST_URL*"])


def test_a_url_without_name_is_refused(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QV_SESSION_MANAGER_TEST_URL", "memory://app:Kit-s3cret@host")
    result = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "--pyargs", "qv_session_manager.testing.url_suite", "-k", "test_replace"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*must contain {name}*memory://app:***@host*"])
    assert "Kit-s3cret" not in result.stdout.str() + result.stderr.str()
