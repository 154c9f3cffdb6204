"""Many writers at once, on SQLite and PostgreSQL: every acknowledged save is kept, in order.

The documented usage: each process opens its own SessionManager, and the threads of a
process may share it (every store method is thread-safe) or open one each; half the
processes do each. Writers are subprocesses (rel_writer_procs.py) released together.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from qv_session_manager import SessionManager, open_store
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore, maintenance

import reliability_kit
from rel_report import report
from rel_spawn import release, result, spawn
from rel_writer_procs import (
    EDIT_ID,
    EDITED_MESSAGE_IDS,
    SHARED_ID,
    edit_save,
    new_message_id,
    own_id,
    own_text,
    shared_conversation,
    shared_text,
)

pytestmark = pytest.mark.slow  # 8 processes x 4 threads writing at once

PROCESSES = 8
THREADS = 4
WORKER_TIMEOUT = 1800  # seconds; a hang fails the test instead of blocking the run


@dataclass(frozen=True)
class Target:
    """One store shared by the writers: its backend name and how to build its URL."""

    backend: str
    url: Callable[[int | None], str]  # pool size (PostgreSQL only) -> URL
    path: Path | None = None  # the SQLite file


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "sqlite":
        path = tmp_path / "writers.db"
        return Target("sqlite", lambda pool: f"sqlite:///{path}?busy_timeout=300", path)
    base: str = request.getfixturevalue("postgres_url")
    schema: str = request.getfixturevalue("postgres_schema")
    joiner = "&" if "?" in base else "?"

    def url(pool: int | None) -> str:
        sized = f"&pool_max_size={pool}" if pool else ""
        return f"{base}{joiner}schema={schema}&lock_timeout=300&pool_timeout=300{sized}"

    return Target("postgresql", url)


def _prefix_problems(reader: SessionManager, turns: int) -> list[str]:
    """What a reader sees now that is not a prefix of some writer's sequence (all must be)."""
    problems = []
    for process in range(PROCESSES):
        for thread in range(THREADS):
            own = reader.load_conversation(own_id(process, thread))
            if own is not None:
                seen = [m.content for m in own.messages]
                if seen != [own_text(process, thread, turn) for turn in range(len(seen))]:
                    problems.append(f"own conversation of {process}/{thread}: {seen}")
    shared = reader.load_conversation(SHARED_ID)
    assert shared is not None
    contents = [m.content for m in shared.messages]
    for process in range(PROCESSES):
        for thread in range(THREADS):
            mine = [c for c in contents if c.startswith(f"p{process} t{thread} shared ")]
            if mine != [shared_text(process, thread, turn) for turn in range(len(mine))]:
                problems.append(f"shared conversation, writer {process}/{thread}: {mine}")
    return problems


def test_processes_and_threads_writing_at_once_lose_nothing(target: Target, tmp_path: Path) -> None:
    turns = reliability_kit.budget(12, 150)
    with SessionManager(url=target.url(None)) as setup:
        setup.save_conversation(shared_conversation())
    workers = []
    for process in range(PROCESSES):
        share = process % 2
        # PostgreSQL: a shared manager gets fewer connections than threads (they queue in
        # the pool); a manager per thread needs one.
        url = target.url(2 if share else 1)
        args = ["writers", url, str(process), str(THREADS), str(turns), str(share)]
        workers.append(spawn("rel_writer_procs.py", args, tmp_path / f"writer{process}.stderr"))
    release(workers)
    snapshots = 0
    with SessionManager(url=target.url(None)) as reader, ThreadPoolExecutor(PROCESSES) as pool:
        futures = [pool.submit(result, worker, WORKER_TIMEOUT) for worker in workers]
        while not all(future.done() for future in futures):  # a reader never sees a partial save
            assert _prefix_problems(reader, turns) == []
            snapshots += 1
        outcomes: dict[str, dict[str, list[str]]] = {}
        for future in futures:
            outcomes.update(future.result()["acknowledged"])
        assert len(outcomes) == PROCESSES * THREADS

        shared = reader.load_conversation(SHARED_ID)
        assert shared is not None
        shared_ids = [str(m.id) for m in shared.messages]
        assert len(shared_ids) == len(set(shared_ids)) == PROCESSES * THREADS * turns, "a message was lost or doubled"
        for writer, acknowledged in outcomes.items():
            process, thread = map(int, writer.split("/"))
            own = reader.load_conversation(own_id(process, thread))
            assert own is not None
            assert [str(m.id) for m in own.messages] == acknowledged["own"], f"writer {writer}: own conversation"
            assert [m.content for m in own.messages] == [own_text(process, thread, t) for t in range(turns)]
            mine = set(acknowledged["shared"])
            assert [i for i in shared_ids if i in mine] == acknowledged["shared"], f"writer {writer}: shared order"
        assert _prefix_problems(reader, turns) == []

        assert len(reader.list_conversations()) == 1 + PROCESSES * THREADS
        found_own = {row["id"] for row in reader.search_conversations("own")}
        assert found_own == {own_id(p, t) for p in range(PROCESSES) for t in range(THREADS)}
        assert [row["id"] for row in reader.search_conversations("shared")] == [SHARED_ID]
    if target.path is not None:
        checked = SQLiteStore(target.path)
        try:
            assert maintenance.integrity_problems(checked) == []
            assert maintenance.index_problems(checked) == []
        finally:
            checked.close()
    report(
        f"writers_{target.backend}",
        {
            "processes": PROCESSES,
            "threads_per_process": THREADS,
            "saves_acknowledged": 2 * PROCESSES * THREADS * turns,
            "messages_in_shared_conversation": len(shared_ids),
            "reader_snapshots_checked": snapshots,
            "failures": 0,
        },
    )


def test_two_writers_editing_the_same_messages_last_writer_wins(target: Target, tmp_path: Path) -> None:
    """Saves of one conversation are serialized: the stored state is their replay in commit order.

    Each save updates a shuffled subset of the same message ids with its writer's
    contents and appends one new message; the new messages' positions reveal the
    commit order, and replaying the acknowledged saves in that order on the reference
    store must give exactly what is stored.
    """
    rounds = reliability_kit.budget(300, 2500)
    seed = random.randrange(2**32)
    store = open_store(target.url(None))
    try:
        store.save(*edit_save(-1, -1, EDITED_MESSAGE_IDS))
        workers = [
            spawn(
                "rel_writer_procs.py",
                ["edit", target.url(1), str(writer), str(rounds), str(seed)],
                tmp_path / f"editor{writer}.stderr",
            )
            for writer in (0, 1)
        ]
        release(workers)
        acknowledged: list[list[list[str]]] = [result(worker, WORKER_TIMEOUT)["acknowledged"] for worker in workers]
        stored = store.load(EDIT_ID)
    finally:
        store.close()
    assert stored is not None
    ids = [m.id for m in stored.messages]
    assert ids[: len(EDITED_MESSAGE_IDS)] == EDITED_MESSAGE_IDS, f"seed {seed}: edited messages moved"
    new = ids[len(EDITED_MESSAGE_IDS) :]
    assert len(new) == len(set(new)) == 2 * rounds, f"seed {seed}: a new message was lost or doubled"
    for writer in (0, 1):
        assert [i for i in new if i.startswith(f"new-{writer}-")] == [new_message_id(writer, r) for r in range(rounds)]

    commit_order = [tuple(map(int, i.split("-")[1:])) for i in new]
    model = MemoryStore()
    model.save(*edit_save(-1, -1, EDITED_MESSAGE_IDS))
    last_writer: dict[str, tuple[int, int]] = {}
    for writer, round_ in commit_order:
        subset = acknowledged[writer][round_]
        model.save(*edit_save(writer, round_, subset))
        last_writer.update((message_id, (writer, round_)) for message_id in subset)
    for message in stored.messages[: len(EDITED_MESSAGE_IDS)]:
        writer, round_ = last_writer[message.id]
        assert message.content == f"{message.id} as written by writer {writer} in round {round_}", f"seed {seed}"
    assert stored == model.load(EDIT_ID), f"seed {seed}: the stored state is not the replay of the saves"
    switches = sum(1 for a, b in itertools.pairwise(commit_order) if a[0] != b[0])
    report(
        f"edit_same_messages_{target.backend}",
        {"saves_acknowledged": 2 * rounds, "writer_switches_in_commit_order": switches, "seed": seed, "failures": 0},
    )
