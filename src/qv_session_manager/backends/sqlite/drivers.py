"""Which DB-API module (with the stdlib ``sqlite3`` interface) a store talks through.

- ``"sqlite3"``, the default: the SQLite this Python was built with.
- ``"pysqlite3"``: the ``pysqlite3`` module (``pip install pysqlite3-binary`` ships a
  recent SQLite inside the wheel), for a Python whose own SQLite is too old for
  FTS5 secure-delete (see :mod:`.schema`).
- A key always means SQLCipher's ``sqlcipher3`` (see :mod:`.cipher`).
"""

from __future__ import annotations

import importlib
import sqlite3
from types import ModuleType

from ...errors import InvalidInputError
from ...install_hints import install_hint
from . import cipher

#: The driver names a store accepts, and the module each one imports.
MODULES = {"sqlite3": "sqlite3", "pysqlite3": "pysqlite3.dbapi2"}
_HINTS = {"pysqlite3": install_hint("pysqlite3-binary", "pysqlite3")}


def load_driver(name: str | None, *, keyed: bool) -> ModuleType:
    """The module for driver ``name`` (None: ``sqlite3``, or ``sqlcipher3`` when ``keyed``).

    Raises InvalidInputError for an unknown name, for a driver named next to a key
    (only SQLCipher reads encrypted files), and for a driver that is not installed,
    saying how to install it.
    """
    if keyed:
        if name is not None:
            raise InvalidInputError(
                f"an encrypted store always uses SQLCipher's driver: give no driver= with a key, not {name!r}"
            )
        return cipher.load_driver()
    if name is None or name == "sqlite3":
        return sqlite3
    if name not in MODULES:
        raise InvalidInputError(f"driver must be one of {', '.join(sorted(MODULES))}, not {name!r}")
    try:
        return importlib.import_module(MODULES[name])
    except ImportError:
        raise InvalidInputError(f"the SQLite driver {name!r} is not installed: {_HINTS[name]}") from None


def sqlite_version(driver: ModuleType) -> tuple[int, int, int]:
    """The version of the SQLite library inside ``driver``."""
    major, minor, patch = (int(part) for part in str(driver.sqlite_version).split(".")[:3])
    return major, minor, patch
