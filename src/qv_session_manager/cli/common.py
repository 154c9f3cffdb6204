"""What every command shares: opening the store, user errors, JSON output (progress: :mod:`.progress`).

Everything a command prints that may hold stored or user-given text goes through
:func:`say`, :func:`echo_json`, :func:`fail` or a rich ``Text`` built with
:func:`qv_session_manager.safe_text.terminal_safe`, so no control character of the
data reaches the terminal; URLs are shown through :func:`shown_url` (password masked).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from rich.console import Console

from ..backends.sqlite.maintenance import file_of_url
from ..manager import URL_VARIABLE, SessionManager, default_url
from ..redact import mask_url
from ..safe_text import json_safe, terminal_safe
from .access import readable_url
from .urls import LOCAL_URL_KEY, as_url

#: Key of the root context's ``meta`` listing the URLs a command opened (to mask in errors).
URLS_KEY = "qv_session_manager.urls"


class UserError(click.ClickException):
    """A mistake of the user's (missing id, bad value): one ``error: ...`` line, exit code 1."""

    def show(self, file: Any = None) -> None:
        say(f"error: {self.format_message()}")


def fail(message: str) -> NoReturn:
    """Stop the command with ``error: message`` (shown terminal-safe) and exit code 1."""
    raise UserError(message)


def say(message: str, *, err: bool = True) -> None:
    """Print one message (standard error unless ``err=False``) with its control characters escaped."""
    click.echo(terminal_safe(message), err=err)


def note_url(ctx: click.Context, url: str) -> str:
    """Remember that this command uses ``url``, so that any error message masks it; return it."""
    ctx.find_root().meta.setdefault(URLS_KEY, []).append(url)
    return url


def noted_urls(ctx: click.Context) -> list[str]:
    """The URLs :func:`note_url` remembered for this invocation."""
    return list(ctx.find_root().meta.get(URLS_KEY, []))


@dataclass(frozen=True)
class Settings:
    """The global options; ``url`` is None when neither --url nor the variable is set."""

    url: str | None


def store_url(ctx: click.Context) -> str:
    """The URL the command works on: --url (after the command, else before it), else
    $QV_SESSION_MANAGER_URL, else SessionManager's default; a bare path means that SQLite file."""
    settings = ctx.find_object(Settings)
    given = ctx.find_root().meta.get(LOCAL_URL_KEY) or (settings.url if settings is not None else None)
    return note_url(ctx, as_url(given) if given else default_url())


def shown_url(ctx: click.Context) -> str:
    """The store URL as the CLI shows it: the password masked."""
    return mask_url(store_url(ctx))


def open_manager(ctx: click.Context, *, create: bool = False) -> SessionManager:
    """Open the store for this command; it is closed when the command ends.

    Unless ``create``, a missing SQLite file is a user error rather than a new empty
    store, so a mistyped path does not leave an empty database behind, and a file
    this process cannot write is opened read-only (:mod:`.access`).
    """
    url = store_url(ctx)
    if not create:
        require_existing(url)
        url = note_url(ctx, readable_url(url))
    return ctx.with_resource(SessionManager(url=url))


def require_existing(url: str) -> None:
    """Fail when ``url`` names an SQLite file that does not exist (opening would create it)."""
    try:
        path = file_of_url(url)
    except ValueError:  # a URL that does not split: opening it reports it (masked)
        return
    if path is not None and not os.path.exists(path):
        fail(
            f"no database at {path} (from {mask_url(url)}): name the store with --url or ${URL_VARIABLE}, "
            "or create it with 'qv-sessions import FILE'"
        )


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
    """Print ``value`` as indented JSON on stdout; bytes become ``{"base64": ...}``.

    Non-ASCII text stays readable; control characters, bidi controls and lone
    surrogates are written as ``\\uNNNN`` escapes (the same value to a JSON reader).
    """
    click.echo(json_safe(json.dumps(value, ensure_ascii=False, indent=2, default=_jsonable)))


def stdout_console() -> Console:
    """A console on stdout; wide when piped so tables do not wrap ids (use --json to parse)."""
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)
