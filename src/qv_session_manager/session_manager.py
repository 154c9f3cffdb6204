"""The module path of qv-session-manager 0.3.0, kept for code written against it.

0.3.0 defined its whole API in this module, and its demo and tests import
``from qv_session_manager.session_manager import SessionManager``. That still works:
``SessionManager`` here is the very class :mod:`qv_session_manager` exports (not a
subclass or a wrapper), so ``isinstance`` checks and monkeypatching agree.

The other names 0.3.0's module made importable stay importable with the same meaning:

- :data:`DB_SCHEMA`, the SQL of the 0.3.0 tables. A file holding them (made by
  0.3.0, or by running this SQL) is upgraded in place when this package opens it;
  this package's own schema lives in :mod:`qv_session_manager.backends.sqlite.schema`.
- the standard-library names the 0.3.0 module imported at its top (``sqlite3``,
  ``uuid``, ``json``, ``datetime``, ``List``, ``Optional``, ``Dict``, ``Any``): the
  same objects, so ``from qv_session_manager.session_manager import datetime`` keeps
  giving ``datetime.datetime``.
"""

from __future__ import annotations

# The names 0.3.0's module bound at import time, re-exported (see __all__) as the same objects.
import json
import sqlite3
import uuid
from datetime import datetime
from typing import Any, Dict, List, Optional  # noqa: UP035 - 0.3.0's names, kept as they were

from .manager import SessionManager

#: The tables qv-session-manager 0.3.0 created (``CREATE TABLE IF NOT EXISTS``, so
#: running it on a 0.3.0 file changes nothing). Conversations and messages keyed by
#: their UUID text; timestamps as ISO text, metadata as JSON text. Opening a file in
#: this layout with this package upgrades it (one way) to the current schema.
DB_SCHEMA: str = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    title TEXT,
    model_name TEXT,
    created_at TEXT,
    updated_at TEXT,
    metadata TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT,
    role TEXT,
    content TEXT,
    created_at TEXT,
    metadata TEXT,
    FOREIGN KEY (conversation_id) REFERENCES conversations (id) ON DELETE CASCADE
);
"""

#: What ``from qv_session_manager.session_manager import *`` gave in 0.3.0 (whose module
#: had no ``__all__``, so every name without a leading underscore).
__all__ = ["DB_SCHEMA", "Any", "Dict", "List", "Optional", "SessionManager", "datetime", "json", "sqlite3", "uuid"]
