"""No qv-sessions command prints the password of a store URL: output, errors and logs.

(The PostgreSQL plugin's tests run the same commands against a live server.)
"""

from __future__ import annotations

import logging
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from qv_session_manager import Backend, SessionManager, StorageError, hookimpl, plugins
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.cli import main
from qv_session_manager.manager import URL_VARIABLE
from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.records import ConversationRecord

from hostile import hostile_conversation

SECRET = "Wq9-SHH-t0p"

#: URLs that cannot be opened, each quoting the password somewhere a careless message would show.
BROKEN_URLS = [
    f"postgresql://app:{SECRET}%zz@127.0.0.1:1/db",  # a bad percent-escape in the password
    f"postgresql:/app:{SECRET}@127.0.0.1:1/db",  # one slash missing
    f"postgresql://app:{SECRET}@[::1/db",  # an unclosed IPv6 bracket: does not split
    f"postgresql://app:{SECRET}@127.0.0.1:1/db",  # nothing listens on port 1
    f"postgresql://app:{SECRET}@127.0.0.1:1/db?pool_timeout=soon",  # a bad option
    f"sqlite://app:{SECRET}@/chats.db",  # SQLite takes no host
    f"sqlite://app:{SECRET}@[::1/chats.db",
    f"jsonl://app:{SECRET}@/chats",
    f"memory://app:{SECRET}@host?option=1",
    f"nosuch://app:{SECRET}@host/db",
    f"app:{SECRET}@host/db",  # no scheme at all
]

COMMANDS = [
    ["list"],
    ["list", "--json"],
    ["show", "x"],
    ["search", "x"],
    ["search", "--mode", "semantic", "--embedder", "hash", "x"],
    ["embed", "--embedder", "hash"],
    ["export", "-"],
    ["import", "-"],
    ["delete", "x"],
    ["prune", "--keep-newest", "0", "--yes"],
    ["stats"],
    ["doctor"],
]


def run(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, args, env=env, input="")


def assert_hidden(result: Result, *context: object) -> None:
    assert SECRET not in result.stdout and SECRET not in result.stderr, (context, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (context, result.exception)


@pytest.mark.parametrize("url", BROKEN_URLS)
def test_no_command_shows_the_password_of_a_url_it_cannot_open(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for command in COMMANDS:
        given = run(["--url", url, *command])
        assert given.exit_code == 1 and "error: " in given.stderr, (command, given.output)
        assert_hidden(given, command)
        from_environment = run(command, env={URL_VARIABLE: url})
        assert from_environment.exit_code == 1
        assert_hidden(from_environment, command, "environment")
    for copy in (["copy", url, "memory://"], ["copy", "memory://", url]):
        result = run(copy)
        assert result.exit_code == 1
        assert_hidden(result, copy)
    assert SECRET not in caplog.text


def test_masked_urls_are_still_shown(tmp_path: Path) -> None:
    result = run(["--url", f"postgresql:/app:{SECRET}@host/db", "stats"])
    assert "'postgresql:/app:***@host/db'" in result.stderr
    result = run(["--url", f"sqlite:///{tmp_path / 'missing.db'}?key_env=X&password={SECRET}", "list"])
    assert f"(from sqlite:///{tmp_path / 'missing.db'}?key_env=X&password=***)" in result.stderr


def test_stats_and_doctor_show_the_url_masked() -> None:
    url = f"memory://app:{SECRET}@host"
    for command in (["stats"], ["doctor"], ["list"], ["backends"]):
        result = run(["--url", url, *command])
        assert result.exit_code == 0, result.output
        assert_hidden(result, command)
    assert "memory://app:***@host" in run(["--url", url, "stats"]).stdout
    assert "store: memory://app:***@host" in run(["--url", url, "doctor"]).stdout


def test_copy_into_a_store_with_a_password_in_its_url(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    with SessionManager(url=source) as manager:
        manager.save_conversation(hostile_conversation())
    result = run(["copy", source, f"memory://app:{SECRET}@host"])
    assert result.exit_code == 0 and "verified 1 conversation" in result.stderr, result.output
    assert_hidden(result, "copy")


class _Leaky(MemoryStore):
    """A store that quotes its URL in an error raised long after opening."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> list[ConversationRecord]:
        raise StorageError(f"lost the connection to {self.url}")


@pytest.fixture
def leaky() -> Iterator[None]:
    plugins.load_plugins()
    module = types.ModuleType("leaky_plugin")

    @hookimpl
    def register_backends(register):  # type: ignore[no-untyped-def]
        register(Backend("leaky", lambda url, options: _Leaky(url)))

    module.register_backends = register_backends  # type: ignore[attr-defined]
    plugins.pm.register(module, name=module.__name__)
    yield
    plugins.pm.unregister(name=module.__name__)


def test_the_cli_masks_urls_in_any_error_a_plugin_raises(leaky: None) -> None:
    url = f"leaky://app:{SECRET}@host/db"
    for args in (["--url", url, "list"], ["copy", url, "memory://"], ["copy", "memory://", url]):
        result = run(args)
        assert_hidden(result, args)
    result = run(["--url", url, "list"])
    assert result.exit_code == 1 and "error: lost the connection to leaky://app:***@host/db" in result.stderr


def test_a_url_given_where_none_is_expected_is_masked_in_the_usage_error() -> None:
    for args in (["list", f"postgresql://app:{SECRET}@host/db"], ["copy", "memory://", "memory://", f"app:{SECRET}@h"]):
        result = run(args)
        assert result.exit_code == 2 and "unexpected extra argument" in result.output, result.output
        assert_hidden(result, args)
        assert "app:***@" in result.output
