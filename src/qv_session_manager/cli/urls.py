"""How the command line takes a store: ``--url`` before or after the command, a bare path for SQLite.

``qv-sessions --url X list`` and ``qv-sessions list --url X`` mean the same; given
both, the one after the command wins. A value that does not start with a URL
scheme (``name:``) is the path of an SQLite file: ``--url big.db`` is
``sqlite:///big.db`` (write ``./a:b.db`` for a path with a colon).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import click

#: Key of the root context's ``meta`` holding the --url given after the command.
LOCAL_URL_KEY = "qv_session_manager.local_url"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
URL_HELP = "The store: a URL such as sqlite:///chats.db or memory://, or the path of an SQLite file."


def as_url(given: str) -> str:
    """``given`` as a store URL: anything starting with a scheme as it is (a malformed URL
    is reported by the backend, masked), anything else as the SQLite file of that path."""
    if _SCHEME.match(given):
        return given
    return "sqlite:///" + quote(given, safe="/")  # an absolute path gives the four slashes


def _remember(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
    if value is not None:
        ctx.find_root().meta[LOCAL_URL_KEY] = value


def add_url_option(command: click.Command) -> None:
    """Give ``command`` its own ``--url`` (kept in the root context, see :data:`LOCAL_URL_KEY`)."""
    command.params.append(
        click.Option(["--url"], metavar="URL", default=None, expose_value=False, callback=_remember, help=URL_HELP)
    )
