"""Child processes of the fault tests (``test_rel_faults.py``), run as scripts.

The faults need a process of their own: a small tmpfs exists only inside a private
mount namespace, and read-only files only stop a process that is not root. Each
command prints one JSON object of observations on standard output; the test
asserts on them, so a failure shows what the child saw.

    python rel_fault_child.py disk-full DIRECTORY ROUNDS
    python rel_fault_child.py read-only DATABASE [USER]

``read-only`` drops root privileges to USER itself, after its imports: the account
may not be able to read the interpreter's own files (a Python under ``/root``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pwd
import sqlite3
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from qv_session_manager import ConversationFilter, SessionStoreError
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.query import parse
from qv_session_manager.records import ConversationRecord, MessageRecord, StoredConversation

AT = datetime(2025, 3, 1, 12, 0, 0)


def record(conversation_id: str, *contents: str) -> StoredConversation:
    """A conversation with one message per content (ids ``<id>-<n>``)."""
    conversation = ConversationRecord(
        id=conversation_id, created_at=AT, updated_at=AT, title=f"title {conversation_id}"
    )
    messages = tuple(
        MessageRecord(id=f"{conversation_id}-{n}", role="user", content=content, created_at=AT)
        for n, content in enumerate(contents)
    )
    return StoredConversation(conversation, messages)


def outcome(call: Callable[[], Any]) -> dict[str, Any]:
    """``{"ok": value}`` or ``{"error": [class names of the MRO], "message": ...}``.

    Only the library's errors are caught: anything else escapes and fails the child.
    """
    try:
        return {"ok": call()}
    except SessionStoreError as exc:
        return {"error": [kind.__name__ for kind in type(exc).__mro__], "message": str(exc)}


def digest(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def fill(directory: str) -> str:
    """Write a ballast file until the file system is full; return its path."""
    ballast = os.path.join(directory, "ballast")
    descriptor = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 4096, 1):  # big chunks, then whatever part of a page is left
            try:
                while True:
                    os.write(descriptor, b"\xff" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(descriptor)
    return ballast


def same(store: SQLiteStore, wanted: StoredConversation) -> bool:
    return store.load(wanted.conversation.id) == wanted


def disk_full(directory: str, rounds: int) -> dict[str, Any]:
    """Fill the file system under a store, try to write and delete, free space, write again.

    Observations per round: the failing save's and delete's outcomes, whether every
    acknowledged conversation still loaded equal while the disk was full, whether the
    rejected one stayed absent, and whether saves and deletes work once space is free.
    """
    path = os.path.join(directory, "full.db")
    store = SQLiteStore(path)
    acknowledged: dict[str, StoredConversation] = {}
    for index in range(3):
        saved = record(f"before{index}", f"acknowledged text {index} " * 40)
        store.save(saved.conversation, saved.messages)
        acknowledged[saved.conversation.id] = saved
    observations: dict[str, Any] = {"rounds": []}
    for turn in range(rounds):
        ballast = fill(directory)
        big = record(f"rejected{turn}", os.urandom(60_000).hex())
        victim = next(iter(acknowledged))
        seen: dict[str, Any] = {
            "save": outcome(lambda: store.save(big.conversation, big.messages)),
            "intact_after_save": all(same(store, c) for c in acknowledged.values()),
            "rejected_absent": store.get(big.conversation.id) is None,
            "delete": outcome(lambda: store.delete(victim)),
            "searchable_while_full": outcome(  # every title holds the word "title"
                lambda: sorted(h.conversation.id for h in store.search(parse("title"), ConversationFilter()))
            ),
            "acknowledged": sorted(acknowledged),
        }
        if "ok" in seen["delete"] and seen["delete"]["ok"]:
            del acknowledged[victim]
        seen["intact_after_delete"] = all(same(store, c) for c in acknowledged.values())
        os.unlink(ballast)
        # Once space is free again, another connection must get the write lock at once:
        # the failed writes left no transaction (and no lock) behind.
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            seen["lock_free"] = True
        except sqlite3.Error as exc:
            seen["lock_free"] = str(exc)
        finally:
            other.close()
        after = record(f"after{turn}", f"written once space was free {turn}")
        seen["save_after_freeing"] = outcome(lambda: store.save(after.conversation, after.messages))
        if "ok" in seen["save_after_freeing"]:
            acknowledged[after.conversation.id] = after
        victim = next(iter(acknowledged))
        seen["delete_after_freeing"] = outcome(lambda: store.delete(victim))
        if seen["delete_after_freeing"].get("ok"):
            del acknowledged[victim]
        observations["rounds"].append(seen)
    store.close()
    reopened = SQLiteStore(path)
    observations["all_acknowledged_after_reopen"] = all(same(reopened, c) for c in acknowledged.values())
    observations["listed_after_reopen"] = sorted(r.id for r in reopened.list(ConversationFilter()))
    observations["expected_ids"] = sorted(acknowledged)
    reopened.close()
    check = sqlite3.connect(path)
    observations["integrity"] = check.execute("PRAGMA integrity_check").fetchone()[0]
    check.close()
    return observations


def read_only(path: str) -> dict[str, Any]:
    """Open ``path`` and try every kind of call; the file's hash before and after."""
    before = digest(path)
    observations: dict[str, Any] = {"uid": os.geteuid()}
    opened = outcome(lambda: SQLiteStore(path))
    if "error" in opened:
        observations["open"] = opened
    else:
        store: SQLiteStore = opened["ok"]
        observations["open"] = {"ok": True}
        stored = record("written-by-reader", "a new conversation")
        message = stored.messages[0]
        observations.update(
            load=outcome(lambda: [m.content for m in store.load("kept").messages]),  # type: ignore[union-attr]
            listed=outcome(lambda: [r.id for r in store.list(ConversationFilter())]),
            search=outcome(lambda: [h.conversation.id for h in store.search(parse("readable"), ConversationFilter())]),
            window=outcome(lambda: len(store.load_window("kept", last_messages=1).messages)),  # type: ignore[union-attr]
            save=outcome(lambda: store.save(stored.conversation, stored.messages)),
            append=outcome(lambda: store.append("kept", [message])),
            delete_message=outcome(lambda: store.delete_message("kept", "kept-0")),
            delete=outcome(lambda: store.delete("kept")),
            load_after=outcome(lambda: [m.content for m in store.load("kept").messages]),  # type: ignore[union-attr]
            close=outcome(store.close),
        )
    observations["unchanged"] = digest(path) == before
    observations["files"] = sorted(os.listdir(os.path.dirname(path)))
    return observations


def become(user: str) -> None:
    """Drop root privileges for good: groups, then group, then user."""
    account = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)


def main(argv: list[str]) -> None:
    command, *arguments = argv
    if command == "disk-full":
        result = disk_full(arguments[0], int(arguments[1]))
    elif command == "read-only":
        if len(arguments) > 1:
            become(arguments[1])
        result = read_only(arguments[0])
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
