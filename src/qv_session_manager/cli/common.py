"""What every command shares: opening the store, user errors, JSON and progress output."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..backends.sqlite.maintenance import file_of_url
from ..manager import SessionManager, default_url


class UserError(click.ClickException):
    """A mistake of the user's (missing id, bad value): one ``error: ...`` line, exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def fail(message: str) -> NoReturn:
    raise UserError(message)


@dataclass(frozen=True)
class Settings:
    """The global options; ``url`` is None when neither --url nor the variable is set."""

    url: str | None


def store_url(ctx: click.Context) -> str:
    """The URL the command works on: --url, else $QV_SESSION_MANAGER_URL, else SessionManager's default."""
    settings = ctx.find_object(Settings)
    given = settings.url if settings is not None else None
    return given or default_url()


def open_manager(ctx: click.Context, *, create: bool = False) -> SessionManager:
    """Open the store for this command; it is closed when the command ends.

    Unless ``create``, a missing SQLite file is a user error rather than a new empty
    store, so a mistyped path does not leave an empty database behind.
    """
    url = store_url(ctx)
    if not create:
        require_existing(url)
    return ctx.with_resource(SessionManager(url=url))


def require_existing(url: str) -> None:
    """Fail when ``url`` names an SQLite file that does not exist (opening would create it)."""
    path = file_of_url(url)
    if path is not None and not os.path.exists(path):
        fail(f"no database at {path} (from {url})")


def parse_meta(pairs: tuple[str, ...]) -> dict[str, Any] | None:
    """``KEY=VALUE`` options as a metadata filter; a VALUE that parses as JSON is taken as JSON.

    So ``n=1`` filters on the number 1, ``ok=true`` on True and ``topic=web`` on the
    string "web" (write ``n='"1"'`` for the string "1"). None when no pair is given.
    """
    if not pairs:
        return None
    wanted: dict[str, Any] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key:
            fail(f"--meta takes KEY=VALUE, not {pair!r}")
        try:
            wanted[key] = json.loads(text)
        except ValueError:
            wanted[key] = text
    return wanted


def _jsonable(value: object) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def echo_json(value: object) -> None:
    """Print ``value`` as indented JSON on stdout; bytes become ``{"base64": ...}``."""
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=_jsonable))


def stdout_console() -> Console:
    """A console on stdout; wide when piped so tables do not wrap ids (use --json to parse)."""
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
    """A callback setting how many items are done, drawing a bar on stderr.

    Yields None (no bar, no output) when stderr is not a terminal, e.g. when piped.
    """
    if not stderr_is_terminal():
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)
