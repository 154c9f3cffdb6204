"""Writer processes of test_rel_writers.py (run as scripts; see rel_spawn), and what they write.

    python rel_writer_procs.py writers URL PROCESS THREADS TURNS SHARE
    python rel_writer_procs.py edit URL WRITER ROUNDS SEED

``writers``: THREADS threads, each saving its own conversation message by message and
appending to the shared one; with SHARE=1 the threads share one SessionManager, else
each opens its own. Prints the message ids each thread got acknowledged, in order.

``edit``: ROUNDS saves of the same conversation, each updating a random subset of the
same message ids with this writer's contents plus one new message of its own; prints
the subsets in acknowledged order. The test rebuilds every save with :func:`edit_save`.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import traceback
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

from qv_session_manager import ConversationRecord, MessageRecord, SessionManager, open_store

from rel_spawn import go_signal

SHARED_ID = "5a4ed000-0000-4000-8000-000000000000"
EDIT_ID = "edited-by-two-writers"
EDITED_MESSAGE_IDS = [f"common-{k}" for k in range(6)]
_BASE = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def own_id(process: int, thread: int) -> str:
    """The id of one writer thread's own conversation."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"qv-rel-own/{process}/{thread}"))


def own_text(process: int, thread: int, turn: int) -> str:
    return f"p{process} t{thread} own {turn}"


def shared_text(process: int, thread: int, turn: int) -> str:
    return f"p{process} t{thread} shared {turn}"


def shared_conversation() -> Conversation:
    """The conversation every writer appends to (created by the test before the writers start)."""
    conversation = Conversation(title="shared by all writers")
    conversation.id = uuid.UUID(SHARED_ID)
    conversation.created_at = _BASE.replace(tzinfo=None)
    return conversation


def _write(manager: SessionManager, process: int, thread: int, turns: int) -> dict[str, list[str]]:
    """One writer thread's work; returns its acknowledged message ids, in order."""
    own = Conversation(title=f"own of p{process} t{thread}")
    own.id = uuid.UUID(own_id(process, thread))
    acknowledged: dict[str, list[str]] = {"own": [], "shared": []}
    for turn in range(turns):
        message = own.add_user_message(own_text(process, thread, turn))
        way = turn % 3  # the three documented ways of saving a growing conversation
        if way == 0:
            manager.save_conversation(own)
        elif way == 1:
            manager.save_conversation(own, [message])
        else:
            manager.add_messages(str(own.id), [message])
        acknowledged["own"].append(str(message.id))
        mine = manager.load_conversation(str(own.id))  # reads its own writes, however the manager is shared
        if mine is None or [str(m.id) for m in mine.messages] != acknowledged["own"]:
            raise AssertionError(f"p{process} t{thread} turn {turn}: a read missed this writer's own saves")
        note = Message(role=MessageRole.USER, content=shared_text(process, thread, turn))
        if turn % 2 == 0:
            manager.add_messages(SHARED_ID, [note])
        else:
            manager.save_conversation(shared_conversation(), [note])
        acknowledged["shared"].append(str(note.id))
    return acknowledged


def writers(url: str, process: int, threads: int, turns: int, share: bool) -> None:
    shared_manager = SessionManager(url=url) if share else None
    managers = [shared_manager or SessionManager(url=url) for _ in range(threads)]
    outcome: dict[str, Any] = {}
    failures: list[str] = []

    def run(thread: int) -> None:
        try:
            outcome[f"{process}/{thread}"] = _write(managers[thread], process, thread, turns)
        except BaseException:
            failures.append(traceback.format_exc())

    go_signal()
    workers = [threading.Thread(target=run, args=(thread,)) for thread in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for manager in {id(m): m for m in managers}.values():
        manager.close()
    if failures:
        sys.stderr.write("\n".join(failures))
        raise SystemExit(1)
    print(json.dumps({"acknowledged": outcome}), flush=True)


def edit_save(writer: int, round_: int, subset: list[str]) -> tuple[ConversationRecord, list[MessageRecord]]:
    """Writer ``writer``'s save number ``round_``: its versions of ``subset`` plus one new message.

    ``writer`` -1 is the first save, which creates the conversation with every common message.
    """
    at = _BASE + timedelta(seconds=round_ + 1, microseconds=writer + 1)
    record = ConversationRecord(
        EDIT_ID, _BASE, at, title=f"writer {writer} round {round_}", metadata={"writer": writer, "round": round_}
    )
    messages = [
        MessageRecord(
            message_id,
            "assistant",
            f"{message_id} as written by writer {writer} in round {round_}",
            at,
            metadata={"writer": writer},
        )
        for message_id in subset
    ]
    if writer >= 0:
        messages.append(MessageRecord(new_message_id(writer, round_), "user", f"new from writer {writer}", at))
    return record, messages


def new_message_id(writer: int, round_: int) -> str:
    return f"new-{writer}-{round_}"


def edit(url: str, writer: int, rounds: int, seed: int) -> None:
    store = open_store(url)
    rng = random.Random(f"{seed}/{writer}")
    acknowledged: list[list[str]] = []
    go_signal()
    for round_ in range(rounds):
        subset = rng.sample(EDITED_MESSAGE_IDS, rng.randint(1, len(EDITED_MESSAGE_IDS)))  # shuffled too
        store.save(*edit_save(writer, round_, subset))
        acknowledged.append(subset)
    store.close()
    print(json.dumps({"acknowledged": acknowledged}), flush=True)


def main() -> None:
    action, url, *rest = sys.argv[1:]
    if action == "writers":
        process, threads, turns, share = map(int, rest)
        writers(url, process, threads, turns, bool(share))
    elif action == "edit":
        writer, rounds, seed = map(int, rest)
        edit(url, writer, rounds, seed)
    else:
        raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    main()
