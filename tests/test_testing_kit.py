"""The conformance kit works the two documented ways: a subclass, or a URL."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]


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


def profile_after_import(monkeypatch: pytest.MonkeyPatch, chosen: str | None, before: str = "") -> list[str]:
    """Run ``before``, import the kit in a fresh interpreter; the active profile and its settings."""
    if chosen is None:
        monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
    else:
        monkeypatch.setenv("HYPOTHESIS_PROFILE", chosen)
    script = (
        f"from hypothesis import settings, Phase\n{before}\nimport qv_session_manager.testing\n"
        "s = settings.default\n"
        "print(settings.get_current_profile_name(), s.max_examples, s.deadline, Phase.shrink in s.phases)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [("qv-default", "60 None True"), ("qv-ci", "150 None True"), ("qv-deep", "2000 None True"),
     ("qv-no-shrink", "60 None False")],
)
def test_the_kit_ships_hypothesis_profiles_chosen_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, chosen: str, expected: str
) -> None:
    assert profile_after_import(monkeypatch, chosen) == [chosen, *expected.split()]


def test_the_kit_keeps_the_users_own_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = 'settings.register_profile("mine", max_examples=7)\nsettings.load_profile("mine")'
    assert profile_after_import(monkeypatch, None, mine)[:2] == ["mine", "7"]
    assert profile_after_import(monkeypatch, "mine", mine)[:2] == ["mine", "7"]
