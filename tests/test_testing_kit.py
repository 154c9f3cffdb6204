"""The conformance kit works the two documented ways: a subclass, or a URL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qv_session_manager import StorageError
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.protocol import Capability, offers
from qv_session_manager.testing import managed_opener, openers

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.slow  # each test runs the kit in a pytest subprocess


def test_the_suite_runs_against_a_url(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QV_SESSION_MANAGER_TEST_URL", "sqlite:///{tmp}/{name}.db")
    result = pytester.runpytest_subprocess(
        "-q",
        "-p",
        "no:cacheprovider",
        "--pyargs",
        "qv_session_manager.testing.url_suite",
        "-k",
        "test_data_survives_reopening or test_replace or test_delete",
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
    [
        ("qv-default", "60 None True"),
        ("qv-ci", "150 None True"),
        ("qv-deep", "2000 None True"),
        ("qv-no-shrink", "60 None False"),
    ],
)
def test_the_kit_ships_hypothesis_profiles_chosen_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, chosen: str, expected: str
) -> None:
    assert profile_after_import(monkeypatch, chosen) == [chosen, *expected.split()]


def test_the_kit_keeps_the_users_own_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = 'settings.register_profile("mine", max_examples=7)\nsettings.load_profile("mine")'
    assert profile_after_import(monkeypatch, None, mine)[:2] == ["mine", "7"]
    assert profile_after_import(monkeypatch, "mine", mine)[:2] == ["mine", "7"]
    own_ci = 'settings.register_profile("qv-ci", max_examples=3)'
    assert profile_after_import(monkeypatch, "qv-ci", own_ci)[:2] == ["qv-ci", "3"], "a profile of that name is kept"


class DroppableMemory(MemoryStore):
    """A memory store that records its drop in a shared log."""

    capabilities = MemoryStore.capabilities | {Capability.DROPPABLE}

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log = name, log

    def drop(self) -> None:
        self.log.append(f"drop {self.name}")
        self.close()


def test_managed_opener_closes_every_store_then_drops_every_name() -> None:
    log: list[str] = []
    with managed_opener(lambda name: DroppableMemory(name, log)) as opener:
        first, again, other = opener("a"), opener("a"), opener("b")
        first.close()
    assert offers(first, Capability.DROPPABLE)
    for store in (first, again, other):
        with pytest.raises(StorageError):
            store.load("x")
    assert log == ["drop a", "drop b"], "each name once, on a store opened for it"


def test_managed_opener_cleans_up_after_a_failure_too() -> None:
    log: list[str] = []
    with pytest.raises(RuntimeError), managed_opener(lambda name: DroppableMemory(name, log)) as opener:
        opener("a")
        raise RuntimeError("the test failed")
    assert log == ["drop a"]


def test_managed_opener_reopens_nothing_for_stores_without_drop() -> None:
    opened: list[str] = []

    def open_(name: str) -> MemoryStore:
        opened.append(name)
        return MemoryStore()

    with managed_opener(open_) as opener:
        store = opener("a")
    assert opened == ["a"] and not offers(store, Capability.DROPPABLE)
    with pytest.raises(StorageError):
        store.load("x")


def test_url_placeholders_give_each_test_its_own_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    urls: list[str] = []

    def open_store(url: str) -> MemoryStore:
        urls.append(url)
        return MemoryStore()

    monkeypatch.setattr(openers, "open_store", open_store)
    first_test = openers.url_opener("x://{tmp}/{run}/{name}", tmp_path)
    second_test = openers.url_opener("x://{tmp}/{run}/{name}", tmp_path)
    first_test("a"), first_test("a"), second_test("a")
    run = openers.RUN_ID
    assert len(run) == 10 and run.isalnum()
    assert urls[0] == urls[1], "the same name in one test: the same URL"
    assert urls[0].startswith(f"x://{tmp_path}/{run}/a-{run}-") and urls[2].startswith(f"x://{tmp_path}/{run}/a-{run}-")
    assert urls[2] != urls[0], "another test: another name"


SERVER_SUITE = '''
import os
import uuid
from pathlib import Path

import pytest

from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.protocol import Capability
from qv_session_manager.testing import StoreContract, managed_opener

SERVER = Path(os.environ["KIT_SERVER_DIR"])


class ServerStore(SQLiteStore):
    """A stand-in for a store on a server: one shared directory, a file per namespace."""

    def __init__(self, path):
        super().__init__(path)
        self.capabilities = self.capabilities | {Capability.DROPPABLE}

    def drop(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


class TestServerStore(StoreContract):
    @pytest.fixture
    def store_opener(self):
        namespace = uuid.uuid4().hex
        with managed_opener(lambda name: ServerStore(SERVER / f"{namespace}-{name}.db")) as opener:
            yield opener
'''


def test_a_generator_store_opener_with_managed_opener_leaves_nothing_behind(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = tmp_path / "server"
    server.mkdir()
    monkeypatch.setenv("KIT_SERVER_DIR", str(server))
    pytester.makepyfile(test_server_suite=SERVER_SUITE)
    result = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "-k", "test_data_survives_reopening or test_delete or test_calls_after_close"
    )
    result.assert_outcomes(passed=4)  # test_delete matches two tests
    assert list(server.iterdir()) == [], "the suite left stores behind"
