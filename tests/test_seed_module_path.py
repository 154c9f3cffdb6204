"""Every name qv-session-manager 0.3.0 made importable is importable here, meaning the same.

0.3.0 had two modules: ``qv_session_manager`` (``SessionManager``, ``__version__``,
``__author__``, ``__all__``) and ``qv_session_manager.session_manager`` (the class,
``DB_SCHEMA``, and the standard-library names it imported). Each is checked below in
the form a 0.3.0 user would write it.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
import subprocess
import sys
import typing
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from qv_ollama_sdk.domain.models import Conversation

import qv_session_manager

from seed_layouts import SEED_DDL


def test_the_0_3_0_module_path_gives_the_same_class() -> None:
    """``from qv_session_manager.session_manager import SessionManager`` is the package's class."""
    from qv_session_manager.session_manager import SessionManager

    assert SessionManager is qv_session_manager.SessionManager
    assert importlib.import_module("qv_session_manager.session_manager").SessionManager is SessionManager


def test_the_submodule_is_an_attribute_after_a_plain_import() -> None:
    """As in 0.3.0, ``import qv_session_manager`` binds ``qv_session_manager.session_manager``
    (checked in a fresh interpreter, where nothing imported the submodule first)."""
    code = "import qv_session_manager as q; assert q.session_manager.SessionManager is q.SessionManager; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_package_level_names_of_0_3_0() -> None:
    """``SessionManager``, ``__version__``, ``__author__`` and ``__all__`` (which still names
    SessionManager, so ``from qv_session_manager import *`` gives it)."""
    from qv_session_manager import SessionManager, __author__, __version__

    assert SessionManager is qv_session_manager.SessionManager
    assert isinstance(__version__, str) and __version__
    assert isinstance(__author__, str) and __author__
    assert "SessionManager" in qv_session_manager.__all__
    namespace: dict[str, object] = {}
    exec("from qv_session_manager import *", namespace)  # noqa: S102 - the import statement itself is under test
    assert namespace["SessionManager"] is SessionManager


#: The public names of 0.3.0's session_manager module (it had no ``__all__``).
MODULE_NAMES_0_3_0 = {
    "DB_SCHEMA",
    "SessionManager",
    "sqlite3",
    "uuid",
    "json",
    "datetime",
    "List",
    "Optional",
    "Dict",
    "Any",
}


def test_star_import_of_the_0_3_0_module() -> None:
    """``from qv_session_manager.session_manager import *`` binds the names it bound in 0.3.0."""
    namespace: dict[str, object] = {}
    exec("from qv_session_manager.session_manager import *", namespace)  # noqa: S102 - as above
    assert set(namespace) - {"__builtins__"} == MODULE_NAMES_0_3_0
    assert namespace["SessionManager"] is qv_session_manager.SessionManager
    assert isinstance(namespace["DB_SCHEMA"], str)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sqlite3", sqlite3),
        ("uuid", uuid),
        ("json", json),
        ("datetime", datetime),
        ("List", typing.List),  # noqa: UP006 - the 0.3.0 name itself
        ("Optional", typing.Optional),
        ("Dict", typing.Dict),  # noqa: UP006 - the 0.3.0 name itself
        ("Any", typing.Any),
    ],
)
def test_stdlib_names_the_0_3_0_module_imported(name: str, expected: object) -> None:
    """The names 0.3.0's module got from its own imports are the same objects here."""
    module = importlib.import_module("qv_session_manager.session_manager")
    assert getattr(module, name) is expected


def _layout(path: Path) -> dict[str, tuple[list[tuple], list[tuple]]]:
    db = sqlite3.connect(path)
    try:
        return {
            table: (
                db.execute(f"PRAGMA table_info({table})").fetchall(),
                db.execute(f"PRAGMA foreign_key_list({table})").fetchall(),
            )
            for table in ("conversations", "messages")
        }
    finally:
        db.close()


def test_db_schema_is_the_0_3_0_layout(tmp_path: Path) -> None:
    """``DB_SCHEMA`` makes exactly 0.3.0's tables (columns, types, keys, the foreign key),
    and running it twice is harmless (``IF NOT EXISTS``), as in 0.3.0."""
    from qv_session_manager.session_manager import DB_SCHEMA

    ours, theirs = tmp_path / "ours.db", tmp_path / "theirs.db"
    for path, ddl in ((ours, DB_SCHEMA), (theirs, SEED_DDL)):
        db = sqlite3.connect(path)
        db.executescript(ddl)
        db.executescript(ddl)
        db.close()
    assert _layout(ours) == _layout(theirs)
    assert [column[1] for column in _layout(ours)["conversations"][0]] == [
        "id",
        "title",
        "model_name",
        "created_at",
        "updated_at",
        "metadata",
    ]


def test_a_file_made_with_db_schema_is_upgraded_and_usable(tmp_path: Path) -> None:
    """A file a 0.3.0 user prepared with ``DB_SCHEMA`` (and a row saved the 0.3.0 way)
    opens here: the row is kept, new saves work."""
    from qv_session_manager.session_manager import DB_SCHEMA, SessionManager

    path = tmp_path / "prepared.db"
    db = sqlite3.connect(path)
    db.executescript(DB_SCHEMA)
    kept = str(uuid.uuid4())
    db.execute(
        "INSERT INTO conversations VALUES (?, 'Prepared', 'llama3', '2025-01-20T10:00:00', "
        "'2025-01-20T10:00:00', '{\"origin\": \"script\"}')",
        (kept,),
    )
    db.commit()
    db.close()
    with SessionManager(db_path=str(path)) as manager:
        assert [(c["id"], c["metadata"]) for c in manager.list_conversations()] == [(kept, {"origin": "script"})]
        conversation = Conversation(model_name="llama3", title="New")
        conversation.add_user_message("after the upgrade")
        manager.save_conversation(conversation, conversation.messages)
        assert {c["id"] for c in manager.search_conversations("upgrade")} == {str(conversation.id)}


def test_db_path_attribute(tmp_path: Path) -> None:
    """``manager.db_path`` is the path as given, as 0.3.0's attribute was (a str); None for a
    store that is not an SQLite file; it cannot be re-pointed."""
    from qv_session_manager.session_manager import SessionManager

    given = str(tmp_path / "chats.db")
    with SessionManager(db_path=given) as manager:
        assert manager.db_path == given
    with SessionManager(given) as manager:  # 0.3.0 took db_path positionally too
        assert manager.db_path == given
    with SessionManager(db_path=tmp_path / "chats.db") as manager:  # a Path: its str
        assert manager.db_path == given
    with SessionManager(db_path=":memory:") as manager:
        assert manager.db_path == ":memory:"
    with SessionManager(url="memory://") as manager:
        assert manager.db_path is None
    with SessionManager(db_path=given) as manager, pytest.raises(AttributeError):
        manager.db_path = "elsewhere.db"  # type: ignore[misc]
