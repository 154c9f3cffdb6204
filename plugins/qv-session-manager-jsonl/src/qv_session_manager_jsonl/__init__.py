"""qv-session-manager-jsonl: a JSON Lines backend for qv-session-manager.

Installing this distribution registers the ``jsonl`` backend through the
``qv_session_manager`` entry-point group::

    SessionManager(url="jsonl:///chats")          # ./chats, relative
    SessionManager(url="jsonl:////var/lib/chats") # /var/lib/chats, absolute

Each conversation is one human-readable ``.jsonl`` file in that directory (see
:mod:`qv_session_manager_jsonl.store`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from qv_session_manager import Backend, InvalidInputError, hookimpl
from qv_session_manager.redact import mask_url, scrub

from .store import JsonlStore, file_name

__version__ = "0.1.0"
__all__ = ["JsonlStore", "file_name", "open_url", "register_backends"]


def open_url(url: str, options: Mapping[str, Any]) -> JsonlStore:
    """Open ``jsonl:///relative/dir`` or ``jsonl:////absolute/dir`` (the slash
    convention of ``sqlite:///``); the directory is created when missing.
    Percent-escapes in the path are decoded. The backend takes no options.
    """
    if options:
        raise InvalidInputError(f"the jsonl backend takes no options, got: {', '.join(sorted(options))}")
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidInputError(f"{shown!r} is not a valid jsonl URL: {scrub(str(exc), [url])}") from None
    if parts.netloc or not parts.path.startswith("/"):
        raise InvalidInputError(f"{shown!r}: write jsonl:///relative/dir or jsonl:////absolute/dir")
    if parts.query or parts.fragment:
        raise InvalidInputError(
            f"{shown!r}: the jsonl backend takes no URL options (escape '?' and '#' in paths as %3F and %23)"
        )
    path = unquote(parts.path[1:])
    if not path:
        raise InvalidInputError(f"{shown!r} names no directory: write jsonl:///relative/dir")
    return JsonlStore(path)


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(Backend("jsonl", open_url, description="one JSON Lines file per conversation in a directory"))
