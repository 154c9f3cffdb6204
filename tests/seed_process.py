"""The real qv-session-manager 0.3.0, run in a virtualenv of its own.

Both packages import as ``qv_session_manager``, so 0.3.0 cannot share this
interpreter. :func:`seed_python` builds (once, then reuses) a virtualenv holding
``qv-session-manager==0.3.0`` and the qv-ollama-sdk it depends on, from PyPI or
pip's cache; :func:`run_seed` runs a list of 0.3.0 calls on one database file in
it and returns what each one gave.

The calls are a small language of our own (lists, see ``_DRIVER``): each outcome is
``{"ok": value}`` or ``{"error": [class names along the MRO], "message": text}``, so
the caller can tell sqlite3 errors from 0.3.0's own ``None`` answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SEED_REQUIREMENT = "qv-session-manager==0.3.0"
#: Building the virtualenv needs PyPI (or a pip cache holding the packages).
BUILD_TIMEOUT = 600

#: The program run by the 0.3.0 interpreter: argv[1] the database path, argv[2] the
#: calls as JSON. It prints one JSON line: the module file it imported and the outcomes.
_DRIVER = r"""
import json, sys, uuid
from datetime import datetime
import qv_session_manager
from qv_session_manager.session_manager import SessionManager
from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

path, calls = sys.argv[1], json.loads(sys.argv[2])
manager = None
outcomes = []

def summary(conversation):
    if conversation is None:
        return None
    return {"id": str(conversation.id), "title": conversation.title, "model_name": conversation.model_name,
            "metadata": conversation.metadata, "messages": [[m.role.value, m.content] for m in conversation.messages]}

def perform(name, *arguments):
    global manager
    if name == "open":
        manager = SessionManager(db_path=path)
        return None
    if name == "save":
        spec = arguments[0]
        conversation = Conversation(
            id=uuid.UUID(spec["id"]), model_name=spec.get("model_name", "llama3"), title=spec["title"],
            metadata=spec.get("metadata", {}),
        )
        for role, content in spec["messages"]:
            conversation.messages.append(Message(role=MessageRole(role), content=content))
        manager.save_conversation(conversation, conversation.messages)
        return str(conversation.id)
    if name == "load":
        return summary(manager.load_conversation(arguments[0]))
    if name == "resume":
        resumed = manager.resume_conversation(arguments[0])
        return None if resumed is None else resumed["last_message"]["content"]
    if name == "list":
        return manager.list_conversations()
    if name == "search":
        return [row["id"] for row in manager.search_conversations(arguments[0])]
    if name == "time":
        return [row["id"] for row in manager.search_by_time(*arguments)]
    if name == "delete":
        return manager.delete_conversation(arguments[0])
    raise ValueError(f"unknown call {name!r}")

for call in calls:
    try:
        outcomes.append({"ok": perform(*call)})
    except Exception as exc:
        outcomes.append({"error": [kind.__name__ for kind in type(exc).__mro__], "message": str(exc)})
print(json.dumps({"module": qv_session_manager.__file__, "outcomes": outcomes}))
"""


class SeedUnavailable(Exception):
    """The 0.3.0 virtualenv could not be built (offline, no pip cache); the reason is the message."""


def _installed(python: Path) -> bool:
    probe = (
        "import importlib.metadata as m, qv_ollama_sdk; "
        "assert m.version('qv-session-manager') == '0.3.0'; print('ready')"
    )
    if not python.exists():
        return False
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False, env=_clean_env())
    return done.returncode == 0 and done.stdout.strip() == "ready"


def _clean_env() -> dict[str, str]:
    """The environment without anything that could put this project on 0.3.0's path."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def seed_python(directory: Path) -> Path:
    """The interpreter of a virtualenv in ``directory`` with 0.3.0 installed, built if needed.

    Raises SeedUnavailable, saying why, when it cannot be built.
    """
    python = directory / "bin" / "python"
    if _installed(python):
        return python
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(directory)],
            check=True,
            capture_output=True,
            timeout=BUILD_TIMEOUT,
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", SEED_REQUIREMENT],
            check=True,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            env=_clean_env(),
        )
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "")[-600:] if isinstance(exc.stderr, str) else ""
        raise SeedUnavailable(f"cannot install {SEED_REQUIREMENT} into {directory} (offline?): {tail}") from exc
    except subprocess.TimeoutExpired as exc:
        raise SeedUnavailable(f"installing {SEED_REQUIREMENT} took over {BUILD_TIMEOUT} s") from exc
    if not _installed(python):
        raise SeedUnavailable(f"{SEED_REQUIREMENT} installed into {directory} but does not import")
    return python


def run_seed(python: Path, database: Path, *calls: list[Any]) -> list[dict[str, Any]]:
    """Run ``calls`` with 0.3.0 on ``database`` in one process; the outcome of each.

    The first call is usually ``["open"]`` (0.3.0's constructor). Checks that the module
    imported is 0.3.0's own, inside its virtualenv.
    """
    done = subprocess.run(
        [str(python), "-c", _DRIVER, str(database), json.dumps(calls)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=database.parent,
        env=_clean_env(),
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"the 0.3.0 process failed ({done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    module = Path(report["module"]).resolve()
    assert python.parent.parent.resolve() in module.parents, f"0.3.0 imported {module}, not its own package"
    outcomes: list[dict[str, Any]] = report["outcomes"]
    return outcomes
