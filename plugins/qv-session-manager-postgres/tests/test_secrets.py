"""A password in a PostgreSQL URL never shows: every qv-sessions command, errors, reprs and logs.

The test server trusts local connections, so any password is accepted: the URLs
below carry a distinctive one and every command really runs.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner, Result
from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

from qv_session_manager import SessionManager, SessionStoreError, open_store
from qv_session_manager.aio import AsyncSessionManager
from qv_session_manager.cli import main

SECRET = "Pg5-QUIET-s3cr"


def with_password(url: str, password: str = SECRET) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def run(args: list[str]) -> Result:
    return CliRunner().invoke(main, args, input="")


def assert_hidden(result: Result, *context: object) -> None:
    assert SECRET not in result.stdout and SECRET not in result.stderr, (context, result.output)


@pytest.fixture
def secret_url(store_url: str) -> str:
    url = with_password(store_url)
    with SessionManager(url=url) as manager:
        conversation = Conversation(title="kept private", model_name="llama3")
        conversation.messages = [Message(role=MessageRole.USER, content="hello there")]
        manager.save_conversation(conversation)
    return url


def test_every_command_runs_without_showing_the_password(
    secret_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    export = tmp_path / "out.jsonl"
    commands = [
        ["list"],
        ["list", "--json"],
        ["search", "hello"],
        ["show", "missing"],
        ["stats"],
        ["doctor"],
        ["export", str(export)],
        ["import", str(export)],
        ["export", "-", "--format", "csv"],
        ["delete", "missing"],
        ["prune", "--keep-newest", "5", "--yes"],
        ["backends"],
    ]
    for command in commands:
        result = run(["--url", secret_url, *command])
        assert result.exit_code in (0, 1), (command, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (command, result.exception)
        assert_hidden(result, command)
    assert "postgres:***@" in run(["--url", secret_url, "stats"]).stdout
    assert "store: postgresql://postgres:***@" in run(["--url", secret_url, "doctor"]).stdout
    there = f"sqlite:///{tmp_path / 'copy.db'}"
    for copy in (["copy", secret_url, there], ["copy", there, secret_url]):
        result = run(copy)
        assert result.exit_code == 0 and "verified 1 conversation" in result.stderr, result.output
        assert_hidden(result, copy)
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    "change",
    [
        lambda url: url.replace("127.0.0.1:5432", "127.0.0.1:1"),  # refused
        lambda url: url.replace("/test?", "/no_such_database_here?"),  # FATAL from the server
        lambda url: url.replace(f":{SECRET}@", f":{SECRET}%zz@"),  # bad percent-escape
        lambda url: url.replace("postgresql://", "postgresql:/"),  # one slash missing
        lambda url: url + "&sslmode=sometimes",  # a bad libpq parameter
        lambda url: url + "&pool_max_size=0",  # a bad option
    ],
)
def test_failures_do_not_show_the_password(change, secret_url: str, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    url = change(secret_url)
    assert SECRET in url and url != secret_url
    for command in (["stats"], ["doctor"], ["list"]):
        result = run(["--url", url, *command])
        assert result.exit_code == 1 and result.stderr.startswith("error: "), result.output
        assert_hidden(result, command)
    with pytest.raises(SessionStoreError) as caught:
        open_store(url, pool_timeout=2)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    assert SECRET not in str(caught.value.__cause__) and SECRET not in str(caught.value.__context__)

    async def asynchronously() -> str:
        with pytest.raises(SessionStoreError) as caught:
            await AsyncSessionManager.open(url=url)
        return f"{caught.value} {caught.value.__cause__}"

    assert SECRET not in asyncio.run(asynchronously())
    assert SECRET not in caplog.text


def test_stores_and_managers_do_not_show_the_password(secret_url: str) -> None:
    with SessionManager(url=secret_url) as manager:
        assert SECRET not in repr(manager.store) and SECRET not in str(manager.store)

    async def asynchronously() -> str:
        async with AsyncSessionManager(url=secret_url) as manager:
            return repr(manager) + repr(getattr(manager, "store", None))

    assert SECRET not in asyncio.run(asynchronously())
