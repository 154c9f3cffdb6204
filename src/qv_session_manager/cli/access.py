"""Opening SQLite files this process cannot write: read-only instead of failing.

A store in a directory the user cannot write, or a file without write permission,
is opened with SQLite's ``?mode=ro`` (the backend reads it as immutable when it must,
see :mod:`qv_session_manager.backends.sqlite.readonly`), so every reading command
works wherever the file is readable, and a writing command fails with one line
saying the store is read-only, not that it is damaged.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlsplit

from ..backends.sqlite.maintenance import file_of_url

#: URL options that already say how to open the file: left as they are.
_ACCESS_OPTIONS = {"mode", "immutable"}


def writable(path: str) -> bool:
    """Whether this process may write ``path`` and create files beside it (its -wal and -shm)."""
    directory = os.path.dirname(os.path.abspath(path))
    return os.access(path, os.W_OK) and os.access(directory, os.W_OK | os.X_OK)


def readable_url(url: str) -> str:
    """``url`` with ``mode=ro`` added when it names an existing SQLite file :func:`writable` refuses.

    Any other URL (another backend, in memory, a missing file, one that already
    gives ``mode`` or ``immutable``, one that does not parse) is returned unchanged.
    """
    try:
        path = file_of_url(url)
        options = {key for key, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    except ValueError:
        return url
    if path is None or options & _ACCESS_OPTIONS or not os.path.exists(path) or writable(path):
        return url
    query = urlsplit(url).query
    return f"{url}&mode=ro" if query else f"{url.rstrip('?')}?mode=ro"


def is_read_only(store: object) -> bool:
    """Whether ``store`` was opened without write access (an SQLite store's ``read_only``)."""
    return bool(getattr(store, "read_only", False))
