"""A writer killed with SIGKILL at random moments never leaves a save half done.

The writer (rel_crash_writer.py) runs random saves, appends, bulk saves and deletes,
logging each operation before it starts and its answer after it returns (fsynced).
After each kill a checker replays the acknowledged operations on the in-memory
reference store, then requires of the killed store:

- every conversation equals the reference; the conversations touched by the
  operation in flight equal either all their states before it or all after it;
- searches give the reference's answers (the search index agrees with the text);
- SQLite: ``PRAGMA integrity_check`` is ok and the token-by-token index check of
  ``qv-sessions doctor`` (maintenance.index_problems) finds nothing.

SQLite runs with both durability settings (synchronous full and normal, each with one
purge mode); PostgreSQL with the client process killed (the server keeps running).
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from qv_session_manager import open_store
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore, maintenance
from qv_session_manager.protocol import ConversationFilter, ConversationStore
from qv_session_manager.query import parse
from qv_session_manager.records import StoredConversation

import reliability_kit
from rel_crash_ops import WORDS, Op, apply, touched
from rel_report import report
from rel_spawn import spawn, wait_ready

pytestmark = pytest.mark.slow  # writer processes killed at random moments


MAX_KILL_DELAY = 0.3  # seconds the writer runs before it is killed, at most
EVERYTHING = ConversationFilter()


@dataclass
class Figures:
    kills: int = 0
    operations_acknowledged: int = 0
    in_flight_found_committed: int = 0
    in_flight_found_rolled_back: int = 0
    in_flight_without_effect: int = 0
    killed_between_operations: int = 0
    checks_passed: int = 0
    failures: int = 0


def read_log(path: Path) -> list[dict[str, Any]]:
    """The writer's log entries; a line cut by the kill can only be the last and is dropped."""
    lines = path.read_bytes().split(b"\n") if path.exists() else []
    entries = []
    for number, line in enumerate(lines):
        if not line:
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            assert number == len(lines) - 1, f"{path}: line {number + 1} is damaged but not the last"
    return entries


def _hits(store: ConversationStore, query: str) -> list[tuple[str, str | None]]:
    return [(hit.conversation.id, hit.message_id) for hit in store.search(parse(query), EVERYTHING)]


class Checker:
    """The reference state of the store the writer works on, and the checks after a kill."""

    def __init__(self, seed: int) -> None:
        self.model = MemoryStore()
        self.figures = Figures()
        self.rng = random.Random(seed)

    def replay(self, log: Path) -> Op | None:
        """Apply the acknowledged operations of ``log``; return the one left in flight, if any."""
        pending: Op | None = None
        for entry in read_log(log):
            if "intent" in entry:
                assert pending is None, f"{log}: two intents without an acknowledgement"
                pending = entry["intent"]
            else:
                assert pending is not None, f"{log}: an acknowledgement without an intent"
                answer = apply(self.model, pending)
                assert answer == entry["ack"], (
                    f"the store answered {entry['ack']!r}, the reference {answer!r}: {pending}"
                )
                self.figures.operations_acknowledged += 1
                pending = None
        return pending

    def resolve(self, store: ConversationStore, op: Op) -> None:
        """The operation in flight is either wholly in ``store`` or wholly absent; follow it."""
        ids = touched(op)
        before = {key: self.model.load(key) for key in ids}
        apply(self.model, op)
        after = {key: self.model.load(key) for key in ids}
        found = {key: store.load(key) for key in ids}
        if before == after:
            self.figures.in_flight_without_effect += 1
        elif found == after:
            self.figures.in_flight_found_committed += 1
        elif found == before:
            self.figures.in_flight_found_rolled_back += 1
            for key, state in before.items():
                self._restore(key, state)
        else:
            raise AssertionError(f"the operation in flight was half applied: {op['kind']} of {ids}")
        assert found == {key: self.model.load(key) for key in ids}

    def _restore(self, key: str, state: StoredConversation | None) -> None:
        if state is None:
            self.model.delete(key)
        else:
            self.model.save(state.conversation, state.messages, replace=True)

    def compare(self, store: ConversationStore) -> None:
        """Everything stored equals the reference, and searches agree with it."""
        listed = [record.id for record in store.list(EVERYTHING)]
        assert listed == [record.id for record in self.model.list(EVERYTHING)], "other conversations are stored"
        for key in listed:
            assert store.load(key) == self.model.load(key), f"conversation {key} differs from the reference"
        one, two = self.rng.sample(WORDS, 2)
        queries = [*self.rng.sample(WORDS, 4), f'"{one} {two}"', f"{one[:2]}*", f"{one} -{two}", f"{one} OR {two}"]
        for query in queries:
            assert _hits(store, query) == _hits(self.model, query), f"search {query!r} differs from the reference"

    def after_kill(
        self,
        log: Path,
        open_checked: Callable[[], ConversationStore],
        engine_checks: Callable[[ConversationStore], None],
    ) -> None:
        self.figures.kills += 1
        in_flight = self.replay(log)
        store = open_checked()
        try:
            engine_checks(store)
            if in_flight is None:
                self.figures.killed_between_operations += 1
            else:
                self.resolve(store, in_flight)
            self.compare(store)
        finally:
            store.close()
        self.figures.checks_passed += 1


def kill_loop(
    tmp_path: Path,
    name: str,
    url: str,
    kills: int,
    open_checked: Callable[[], ConversationStore],
    engine_checks: Callable[[ConversationStore], None],
    after_death: Callable[[], None] = lambda: None,
) -> None:
    """Start the writer ``kills`` times, SIGKILL it at a random moment, check after each kill."""
    seed = random.randrange(2**32)
    checker = Checker(seed)
    rng = random.Random(seed)
    try:
        for kill in range(kills):
            log = tmp_path / f"operations{kill}.jsonl"
            worker = spawn(
                "rel_crash_writer.py", [url, str(log), str(seed + kill), str(kill)], tmp_path / "writer.stderr"
            )
            wait_ready(worker)
            time.sleep(rng.uniform(0.0, MAX_KILL_DELAY))  # a random moment, not a timing assertion
            worker.process.kill()
            worker.process.communicate()
            assert worker.process.returncode == -signal.SIGKILL, f"the writer died by itself:\n{worker.errors()}"
            after_death()
            checker.after_kill(log, open_checked, engine_checks)
    except BaseException as exc:
        checker.figures.failures += 1
        report(name, {**asdict(checker.figures), "seed": seed, "failure": str(exc)[:2000]})
        raise
    report(name, {**asdict(checker.figures), "seed": seed})


def _sqlite_checks(store: ConversationStore) -> None:
    assert isinstance(store, SQLiteStore)
    assert maintenance.integrity_problems(store) == []
    assert maintenance.index_problems(store) == []


@pytest.mark.parametrize(("synchronous", "purge"), [("full", "on_close"), ("normal", "immediate")])
def test_sqlite_writer_killed_at_random_moments(tmp_path: Path, synchronous: str, purge: str) -> None:
    path = tmp_path / "crash.db"
    url = f"sqlite:///{path}?synchronous={synchronous}&purge={purge}"
    kill_loop(
        tmp_path,
        f"crash_sqlite_{synchronous}_{purge}",
        url,
        reliability_kit.budget(8, 200),
        open_checked=lambda: SQLiteStore(path),
        engine_checks=_sqlite_checks,
    )


def test_postgres_client_killed_at_random_moments(tmp_path: Path, postgres_url: str, postgres_schema: str) -> None:
    import psycopg

    application = f"qvrel-crash-{postgres_schema}"
    joiner = "&" if "?" in postgres_url else "?"
    store_url = f"{postgres_url}{joiner}schema={postgres_schema}&pool_max_size=2"
    open_store(store_url).close()  # creates the schema: the writers only write

    def backends_gone() -> None:
        """Wait until the server ended the killed client's sessions (a COMMIT it had sent lands first)."""
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            for _ in range(6000):
                row = connection.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application,)
                ).fetchone()
                if row is not None and row[0] == 0:
                    return
                time.sleep(0.01)
        raise AssertionError("the server kept the killed client's session for a minute")

    kill_loop(
        tmp_path,
        "crash_postgresql",
        f"{store_url}&application_name={application}",
        reliability_kit.budget(6, 100),
        open_checked=lambda: open_store(store_url),
        engine_checks=lambda store: None,
        after_death=backends_gone,
    )
