"""Every workload for ONE system, run step by step on run.py's orders.

run.py starts one worker per system and keeps them all alive for a regime (disk or
tmpfs), then sends each the same steps in turn over stdin (one JSON object a line:
``{"step": ..., "round": r, "rounds": n}``); the worker answers each on stdout with
one JSON line once the step is done (anything the libraries print goes to stderr).
Steps that are split into rounds (bulk save, live chat, the long chat) are thus
interleaved between the systems: each system runs round r, then the next system,
so a slow minute of the shared machine hits all of them alike.

Systems:

- ``seed``: PyPI's qv-session-manager 0.3.0, run with the seed venv's python.
- ``ours``: this project's ``SessionManager(db_path=...)``, seed API and richer API.
- ``ours_embedding``: the same with ``embedder="wordllama", embed_in_background=True``:
  a worker thread embeds what the saves leave pending while this worker's steps run
  (and only then: see :class:`EmbedderGate`).
- ``postgres``: this project through its PostgreSQL plugin (same python as ours).
- ``inline`` / ``batched``: the two bare-sqlite3 floors of floors.py.
- ``openai``: the OpenAI Agents SDK's ``SQLiteSession`` (openai_store.py), run
  with the openai venv's python; writes, load and delete only.

The seed and this project share the seed API (``save_conversation``,
``load_conversation``, ``search_conversations``, ``search_by_time``,
``list_conversations``, ``delete_conversation``), so the same workload code drives
them and the floors; only the store differs.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

from corpus import Corpus
from floors import batches  # stdlib only, so every worker's venv can import it

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
SYSTEMS = ("seed", "ours", "ours_embedding", "inline", "batched", "openai", "postgres")
RICH = ("ours", "ours_embedding", "postgres")  # this project's richer API
#: This project on SQLite (the same package and driver).
OURS_SQLITE = ("ours", "ours_embedding")
#: The embedder of ``ours_embedding`` (the [semantic] extra).
EMBEDDER_SPEC = "wordllama"
#: Longest wait for the background embedder to park between steps, in seconds.
PARK_TIMEOUT = 30.0
#: The longest untimed wait for the background embedder to finish what a step left pending (seconds).
DRAIN_TIMEOUT = 300.0
FLOORS = ("inline", "batched")  # bare sqlite3
#: The SQLite driver ours and the floors use (run.py --sqlite-driver); the seed and OpenAI keep the stdlib's.
SQLITE_DRIVER = os.environ.get("QV_BENCH_SQLITE_DRIVER", "sqlite3")
#: The width of the long chat's windows (first, middle and last turns), in messages.
LONG_CHAT_WINDOW = 100

Persist = Callable[[Any, Conversation, Message], None]
T = TypeVar("T")

# -- measuring ----------------------------------------------------------------


def summarize(seconds: list[float], starts: Sequence[int] = ()) -> dict:
    """Median, p95 (nearest rank), total and rate of per-operation times.

    ``starts``: where each interleaved round begins in ``seconds``; with them, the
    median ms of each round too (``round_medians_ms``: how much a system's own rounds
    differ, i.e. the noise of the row).
    """
    ordered = sorted(seconds)
    total = sum(ordered)
    result = {
        "n": len(ordered),
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[math.ceil(0.95 * len(ordered)) - 1] * 1000,
        "total_s": total,
        "per_second": len(ordered) / total if total else None,
    }
    if starts:
        result["round_medians_ms"] = [statistics.median(part) * 1000 for part in split_rounds(seconds, starts)]
    return result


def split_rounds(items: Sequence[T], starts: Sequence[int]) -> list[Sequence[T]]:
    """``items`` cut where each round starts (empty rounds left out)."""
    ends = [*starts[1:], len(items)]
    return [items[start:end] for start, end in zip(starts, ends) if end > start]


def timed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Seconds one call took, and what it returned."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (2**20 bytes).

    Read from VmHWM in /proc/self/status where there is one, because on Linux
    ``getrusage(RUSAGE_SELF).ru_maxrss`` of a process started with subprocess also
    counts the RSS its parent had when it forked: stream.py would be charged with
    the worker's corpus. Elsewhere ru_maxrss (KiB on Linux, bytes on macOS) is used.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def progress(system: str, text: str) -> None:
    """A line on stderr, which run.py passes through."""
    print(f"[{system}] {text}", file=sys.stderr, flush=True)


def file_size(path: str) -> dict:
    """Bytes of a SQLite file and its WAL or rollback journal."""
    sizes = {}
    for suffix in ("", "-wal", "-journal"):
        if os.path.exists(path + suffix):
            sizes["main" if not suffix else suffix[1:]] = os.path.getsize(path + suffix)
    sizes["total_bytes"] = sum(sizes.values())
    return sizes


def round_slice(items: Sequence[T], round_number: int, rounds: int) -> Sequence[T]:
    """Round ``round_number`` of ``rounds`` near-equal consecutive parts of ``items``."""
    start = len(items) * round_number // rounds
    return items[start : len(items) * (round_number + 1) // rounds]


# -- opening stores ---------------------------------------------------------------

#: The server the "postgres" system uses; each database file name becomes a schema.
POSTGRES_URL = os.environ.get("QV_SESSION_MANAGER_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
POSTGRES_SCHEMA_PREFIX = "bench_postgres_"


def postgres_schema(db_path: str) -> str:
    """The schema that stands for one database file of the postgres system."""
    return "bench_" + os.path.splitext(os.path.basename(db_path))[0].replace("-", "_")


class EmbedderGate:
    """The embedder of ``ours_embedding``, which lets its background thread run only during this worker's steps.

    run.py runs one step in one worker at a time. The background thread would go on
    embedding after a step, while run.py times the next system: that would slow the
    other systems down and give the embedder free time that a saving app does not
    give it. So at the end of a step the worker first lets the thread finish what the
    step left pending (:meth:`drain`, untimed, as an app's pauses would), then pauses
    it (:meth:`pause`): the thread stops at its next ``embed`` call and waits there
    until :meth:`resume` at the next step. While a step runs, the thread competes for
    the store, the GIL and the CPU with the timed calls, which is what
    ``ours_embedding`` measures. It also counts what it embedded and how long that took.
    """

    def __init__(self, embedder: Any) -> None:
        self.inner = embedder
        self.name, self.model, self.dimension = embedder.name, embedder.model, embedder.dimension
        self.managers: list[Any] = []  # the open SessionManagers whose background threads use this gate
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._parked = 0
        self.calls = 0
        self.texts = 0
        self.seconds = 0.0
        self.park_timeouts = 0
        self.drain_seconds = 0.0
        self.drain_timeouts = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not self._open.is_set():
            with self._lock:
                self._parked += 1
            self._open.wait()
            with self._lock:
                self._parked -= 1
        started = time.perf_counter()
        vectors = self.inner.embed(texts)
        with self._lock:
            self.calls += 1
            self.texts += len(texts)
            self.seconds += time.perf_counter() - started
        return vectors

    def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        return self.inner.embed_queries(texts)

    def resume(self) -> None:
        self._open.set()

    def drain(self) -> None:
        """Untimed, at the end of a step: let the threads embed what the step left pending, as
        an app's pauses between bursts of saves would (the saves of the step ran meanwhile)."""
        started = time.perf_counter()
        for manager in self.managers:
            if manager.background is not None and not manager.background.wait_idle(DRAIN_TIMEOUT):
                self.drain_timeouts += 1
        self.drain_seconds += time.perf_counter() - started

    def pause(self) -> None:
        """Close the gate and wait until every open manager's thread is idle or waits at it."""
        self._open.clear()
        deadline = time.perf_counter() + PARK_TIMEOUT
        while True:
            running = [m.background for m in self.managers if m.background is not None]
            busy = sum(not background.wait_idle(0) for background in running)
            with self._lock:
                if self._parked >= busy:
                    return
            if time.perf_counter() > deadline:
                self.park_timeouts += 1
                return
            time.sleep(0.001)

    def summary(self) -> dict:
        return {
            "embedder": f"{self.name}:{self.model}",
            "embed_calls": self.calls,
            "texts_embedded": self.texts,
            "embed_seconds": self.seconds,
            "park_timeouts": self.park_timeouts,
            "drain_seconds": self.drain_seconds,
            "drain_timeouts": self.drain_timeouts,
        }


#: The gate of ``ours_embedding`` (set by main), or None.
EMBEDDER: EmbedderGate | None = None


def embedding_counts(store: Any) -> dict:
    """Untimed: messages with a vector and messages still pending in an ``ours_embedding`` store."""
    from qv_session_manager.vector_records import VectorSpace

    embedded, pending = store.store.embedding_counts(VectorSpace.of(store.embedder))
    return {"embedded": embedded, "pending": pending}


def open_store(system: str, db_path: str) -> Any:
    """A store of ``system`` on ``db_path`` (a schema named after it on postgres)."""
    if system in FLOORS:
        from floors import FloorStore

        return FloorStore(db_path, batched=system == "batched", driver=SQLITE_DRIVER)
    if system == "openai":
        from openai_store import OpenAIStore

        return OpenAIStore(db_path)
    from qv_session_manager import SessionManager

    if system == "postgres":
        return SessionManager(url=POSTGRES_URL, schema=postgres_schema(db_path))
    options: dict[str, Any] = {} if SQLITE_DRIVER == "sqlite3" else {"driver": SQLITE_DRIVER}
    if system == "ours_embedding":
        assert EMBEDDER is not None
        manager = SessionManager(db_path=db_path, embedder=EMBEDDER, embed_in_background=True, **options)
        if manager.background is None:
            raise RuntimeError("SessionManager(embed_in_background=True) started no background embedder")
        EMBEDDER.managers.append(manager)
        return manager
    return SessionManager(db_path=db_path, **options)


def close_store(store: Any) -> None:
    """close(), where the store has one (the seed opens a connection per call)."""
    if hasattr(store, "close"):
        store.close()
    if EMBEDDER is not None and store in EMBEDDER.managers:
        EMBEDDER.managers.remove(store)


def drop_postgres_schemas() -> None:
    """Remove every schema a postgres run creates (leftovers of an interrupted run too)."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        names = connection.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (POSTGRES_SCHEMA_PREFIX,)
        ).fetchall()
        for (name,) in names:
            connection.execute(f'DROP SCHEMA "{name}" CASCADE')


def database_size(system: str, db_path: str) -> dict:
    """Bytes on disk: the SQLite file with its WAL/journal, or a postgres schema's tables with indexes."""
    if system != "postgres":
        return file_size(db_path)
    import psycopg

    with psycopg.connect(POSTGRES_URL) as connection:
        (total,) = connection.execute(  # type: ignore[misc]
            """SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'""",
            (postgres_schema(db_path),),
        ).fetchone()
    return {"total_bytes": int(total)}


def has_api(name: str) -> bool:
    """Whether this project's SessionManager has ``name`` (the richer API)."""
    from qv_session_manager import SessionManager

    return hasattr(SessionManager, name)


# -- ways to persist a chat after each new message --------------------------------


def save_whole_conversation(store: Any, conversation: Conversation, message: Message) -> None:
    """The seed API's way: save the conversation with all its messages again."""
    store.save_conversation(conversation, conversation.messages)


def add_newest_message(store: Any, conversation: Conversation, message: Message) -> None:
    """This project's append API (the first message creates the conversation)."""
    if len(conversation.messages) == 1:
        store.save_conversation(conversation, [message])
    else:
        store.add_messages(str(conversation.id), [message])


def floor_append(store: Any, conversation: Conversation, message: Message) -> None:
    """The floors: one transaction upserting the conversation row and inserting the message."""
    store.save_conversation(conversation, [message])


def openai_append(store: Any, conversation: Conversation, message: Message) -> None:
    """SQLiteSession: ``add_items([item])`` of the new message."""
    store.add_items(str(conversation.id), [message])


def persist_ways(system: str) -> list[tuple[str, Persist]]:
    """(name, way) of every way this system persists a chat after each new message.

    ``save``: the seed API's ``save_conversation(conv, conv.messages)``; ``append``:
    only the newest message (``add_messages`` for ours). The floors and SQLiteSession
    can only append: they run their append in both passes, so that each row of the
    table has its own floor measured in the same rounds, and the floors end up with
    the same conversations as ours (their search hits must match).
    """
    if system in FLOORS:
        return [("save", floor_append), ("append", floor_append)]
    if system == "openai":
        return [("save", openai_append), ("append", openai_append)]
    ways: list[tuple[str, Persist]] = [("save", save_whole_conversation)]
    if system in RICH:
        ways.append(("append", add_newest_message))
    return ways


def add_turn(conversation: Conversation, role: MessageRole, content: str) -> Message:
    """Append a message the way a chat app does (new id, created_at = now)."""
    if role == MessageRole.ASSISTANT:
        return conversation.add_assistant_message(content)
    if role == MessageRole.SYSTEM:
        return conversation.add_system_message(content)
    return conversation.add_user_message(content)


# -- workloads: each times one kind of call ---------------------------------------


def bulk_save_round(store: Any, system: str, conversations: Iterable[Conversation], times: list[float]) -> int:
    """One whole-conversation save per conversation; returns the messages saved.

    Seed API systems: ``save_conversation(conv, conv.messages)``. SQLiteSession:
    ``add_items`` of every message of the conversation in one call, on a session
    created before the timing and closed after it.
    """
    messages = 0
    for conversation in conversations:
        if system == "openai":
            store.session(str(conversation.id))
            times.append(timed(store.add_items, str(conversation.id), conversation.messages)[0])
            store.release(str(conversation.id))
        else:
            times.append(timed(store.save_conversation, conversation, conversation.messages)[0])
        messages += len(conversation.messages)
    return messages


def bench_save_many(store: Any, conversations: Iterable[Conversation], batch_size: int) -> dict:
    """save_many(chunk, batch_size=...) over the corpus; only the calls are timed.

    The conversations are built (untimed) ten batches at a time, so the store splits
    each call into ten transactions and the SDK objects of the corpus never exist at once.
    """
    times, saved, messages = [], 0, 0
    for chunk in batches(conversations, batch_size * 10):
        seconds, count = timed(store.save_many, chunk, batch_size=batch_size)
        times.append(seconds)
        saved += count
        messages += sum(len(c.messages) for c in chunk)
    total = sum(times)
    return {
        "batch_size": batch_size,
        "conversations": saved,
        "messages": messages,
        "total_s": total,
        "messages_per_second": messages / total,
    }


def time_loads(store: Any, conversation_ids: Sequence[str]) -> list[float]:
    """``load_conversation`` of each id (one untimed warm-up first)."""
    if not conversation_ids:
        return []
    store.load_conversation(conversation_ids[0])
    return [timed(store.load_conversation, conversation_id)[0] for conversation_id in conversation_ids]


def time_searches(store: Any, queries: Sequence[str], found: dict, **options: Any) -> list[float]:
    """One ``search_conversations`` per query (untimed warm-up first); each query's ms and hits go in ``found``."""
    if not queries:
        return []
    store.search_conversations(queries[0], **options)
    times = []
    for query in queries:
        seconds, hits = timed(store.search_conversations, query, **options)
        times.append(seconds)
        found[query] = {"ms": seconds * 1000, "hits": len(hits)}
    return times


def hits_per_query(store: Any, queries: Sequence[str]) -> dict[str, int]:
    """Untimed: how many conversations ``search_conversations(q)`` finds for each query."""
    return {query: len(store.search_conversations(query)) for query in queries}


def time_windows(store: Any, windows: Sequence[tuple[str, str]], hits: list[int]) -> list[float]:
    """``search_by_time(start, end)`` over each window (ISO strings, both ends inclusive)."""
    if not windows:
        return []
    store.search_by_time(*windows[0])  # warm-up, untimed
    times = []
    for start, end in windows:
        seconds, found = timed(store.search_by_time, start, end)
        times.append(seconds)
        hits.append(len(found))
    return times


def time_lists(store: Any, repeats: int) -> list[float]:
    """``list_conversations()``, ``repeats`` times (untimed warm-up first)."""
    if not repeats:
        return []
    store.list_conversations()
    times = []
    for _ in range(repeats):
        seconds, listed = timed(store.list_conversations)
        del listed  # let this listing go before the next one is built
        times.append(seconds)
    return times


def time_pages_offset(store: Any, depths: Sequence[int]) -> list[float]:
    """One page of 20 starting at each depth, with limit/offset."""
    if not depths:
        return []
    store.list_conversations(limit=20, offset=0)  # warm-up, untimed
    return [timed(store.list_conversations, limit=20, offset=depth)[0] for depth in depths]


def time_pages_keyset(store: Any, listed_ids: list[str], depths: Sequence[int]) -> list[float]:
    """The same pages with keyset paging: after= the id of the row just before the page."""
    if not depths:
        return []
    store.list_conversations(limit=20, after=listed_ids[0])  # warm-up, untimed
    return [timed(store.list_conversations, limit=20, after=listed_ids[d - 1])[0] for d in depths]


def delete_each(store: Any, conversation_ids: Sequence[str], times: list[float]) -> None:
    """``delete_conversation`` of each id (each one stored)."""
    times.extend(timed(store.delete_conversation, conversation_id)[0] for conversation_id in conversation_ids)


def replay_chats(store: Any, system: str, sample: Sequence[Conversation], persist: Persist, times: list[float]) -> None:
    """Replay each conversation message by message as a new chat, persisting after each.

    Every replay gets new ids, built with the SDK's add_*_message; only the persisting
    call is timed.
    """
    for original in sample:
        conversation = Conversation(model_name=original.model_name, title=original.title)
        open_session(store, system, conversation)
        for turn in original.messages:
            message = add_turn(conversation, turn.role, turn.content)
            times.append(timed(persist, store, conversation, message)[0])
        if system == "openai":
            store.release(str(conversation.id))


def open_session(store: Any, system: str, conversation: Conversation) -> None:
    """SQLiteSession: create the chat's session object before its saves are timed."""
    if system == "openai":
        store.session(str(conversation.id))


def long_chat_windows(turns: int) -> dict[str, tuple[int, int]]:
    """The three windows of the long chat, by 1-based turn numbers (1-100, 301-400, 901-1000 at 1,000)."""
    width = min(LONG_CHAT_WINDOW, max(1, turns // 10))
    middle = (3 * turns) // 10
    return {"first": (1, width), "middle": (middle + 1, middle + width), "last": (turns - width + 1, turns)}


def summarize_long_chat(times: list[float], starts: Sequence[int] = ()) -> dict:
    """Per-window summaries of one long chat's save times, and last over first.

    ``starts``: the turn index where each round begins; a window's ``round_medians_ms``
    are the medians of its turns round by round.
    """
    windows = long_chat_windows(len(times))
    result: dict = {"turns": len(times), "all": summarize(times, starts)}
    for name, (first, last) in windows.items():
        inside = sorted({0, *(start - first + 1 for start in starts if first - 1 < start < last)})
        result[name] = {**summarize(times[first - 1 : last], inside if starts else ()), "turns": f"{first}-{last}"}
    result["last_over_first"] = result["last"]["median_ms"] / result["first"]["median_ms"]
    return result


def run_stream(system: str, *arguments: str) -> dict:
    """Run stream.py in its own process (so its peak RSS is its own) and return its JSON."""
    command = [sys.executable, os.path.join(BENCH_DIR, "stream.py"), *arguments, "--system", system]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


# -- the plan -----------------------------------------------------------------------


@dataclass
class Plan:
    """The random choices of a run; the same seed gives every system the same ones."""

    load_ids: list[str]
    delete_few: list[str]
    delete_many: list[str]
    live_sample: list[Conversation]
    list_repeats: int
    page_depths: list[int]
    time_windows: list[tuple[str, str]]
    long_texts: list[str]
    queries: list[str]


def make_windows(corpus: Corpus, rng: random.Random, count: int) -> list[tuple[str, str]]:
    """``count`` random one-day windows within the corpus's time span."""
    first, last = corpus.time_span()
    latest_start = max(0, int((last - first - timedelta(days=1)).total_seconds() // 60))
    windows = []
    for _ in range(count):
        start = first + timedelta(minutes=rng.randrange(0, latest_start + 1))
        end = start + timedelta(days=1, seconds=-1)
        windows.append((start.isoformat(timespec="seconds"), end.isoformat(timespec="seconds")))
    return windows


def make_plan(corpus: Corpus, args: argparse.Namespace) -> Plan:
    """Every random choice of the run, from ``args.random_seed``."""
    rng = random.Random(args.random_seed)
    size = len(corpus)
    numbers = range(size)
    loads = rng.sample(numbers, args.load_count) if args.load_count <= size else rng.choices(numbers, k=args.load_count)
    live = rng.sample(range(len(corpus.items)), min(args.live_sample, len(corpus.items)))
    depths = [rng.randrange(1, max(2, size - 20)) for _ in range(args.list_repeats)]
    windows = make_windows(corpus, rng, args.time_windows)
    few = max(1, args.deletes // 5)
    deletes = rng.sample(numbers, min(args.deletes + few, size))
    return Plan(
        load_ids=[corpus.conversation_id(n) for n in loads],
        delete_few=[corpus.conversation_id(n) for n in deletes[:few]],
        delete_many=[corpus.conversation_id(n) for n in deletes[few:]],
        live_sample=[corpus.conversation(n) for n in live],
        list_repeats=args.list_repeats,
        page_depths=depths,
        time_windows=windows,
        long_texts=corpus.texts(args.long_turns),
        queries=args.queries.split(",")[: args.max_queries],
    )


def sqlite_module(system: str) -> Any:
    """The DB-API module ``system`` talks to SQLite through."""
    if system in (*FLOORS, *OURS_SQLITE) and SQLITE_DRIVER == "pysqlite3":
        import pysqlite3.dbapi2  # type: ignore[import-not-found]

        return pysqlite3.dbapi2
    return sqlite3


def describe(system: str, corpus: Corpus) -> dict:
    """The run's facts: versions, corpus size, the imported package."""
    result: dict = {
        "system": system,
        "python": sys.version,
        "sqlite_version": sqlite_module(system).sqlite_version,
        "sqlite_driver": SQLITE_DRIVER if system in (*FLOORS, *OURS_SQLITE) else "sqlite3",
        "corpus": corpus.summary(),
        "corpus_rss_mb": peak_rss_mb(),
    }
    if system in ("seed", *OURS_SQLITE, "postgres"):
        import qv_session_manager

        result["module_file"] = qv_session_manager.__file__
        result["module_version"] = getattr(qv_session_manager, "__version__", None)
    elif system == "openai":
        import agents

        result["module_file"] = agents.__file__
    return result


# -- the steps -----------------------------------------------------------------------


@dataclass
class Bench:
    """One system's state across the steps run.py sends: open stores and timings so far."""

    system: str
    args: argparse.Namespace
    corpus: Corpus
    plan: Plan
    result: dict
    store: Any = None
    long_stores: dict[str, Any] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)
    bulk_messages: int = 0
    listed_ids: list[str] = field(default_factory=list)
    per_query: dict[str, dict] = field(default_factory=dict)
    hits: list[int] = field(default_factory=list)
    #: Per timing: (round, index where that round's times begin), for the rounds' medians.
    starts: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    round_number: int = 0
    bulk_round_messages: list[int] = field(default_factory=list)

    @property
    def db_path(self) -> str:
        return os.path.join(self.args.db_dir, f"{self.system}-corpus.db")

    def timings(self, name: str) -> list[float]:
        """The times of ``name`` so far; the first call in a round marks where that round begins."""
        times = self.times.setdefault(name, [])
        marks = self.starts.setdefault(name, [])
        if not marks or marks[-1][0] != self.round_number:
            marks.append((self.round_number, len(times)))
        return times

    def summary(self, name: str) -> dict:
        """summarize() of the times of ``name``, with their rounds' medians; both are done with."""
        return summarize(self.times.pop(name), self.round_starts(name))

    def round_starts(self, name: str) -> list[int]:
        return sorted({start for _, start in self.starts.pop(name, [])})

    def embedding_state(self, store: Any, when: str) -> None:
        """ours_embedding, untimed: what its store has embedded and still pending, at the end of a step."""
        if self.system == "ours_embedding":
            self.result.setdefault("embedding", {}).setdefault("stores", {})[when] = embedding_counts(store)

    def step_bulk(self, round_number: int, rounds: int) -> None:
        """Round r of the bulk save into a fresh database: the r-th slice of the corpus."""
        if round_number == 0:
            progress(self.system, f"bulk save of {len(self.corpus)} conversations, {rounds} rounds ...")
            self.store = open_store(self.system, self.db_path)
        numbers = round_slice(range(len(self.corpus)), round_number, rounds)
        conversations = (self.corpus.conversation(n) for n in numbers)
        saved = bulk_save_round(self.store, self.system, conversations, self.timings("bulk"))
        self.bulk_messages += saved
        self.bulk_round_messages.append(saved)
        if round_number == rounds - 1:
            times, starts = self.times.pop("bulk"), self.round_starts("bulk")
            result = summarize(times, starts)
            result["messages"] = self.bulk_messages
            result["messages_per_second"] = self.bulk_messages / result["total_s"]
            parts = split_rounds(times, starts)
            messages = [m for m in self.bulk_round_messages if m]
            result["round_rates"] = [m / sum(part) for m, part in zip(messages, parts) if sum(part)]
            self.result["bulk_save"] = result
            self.embedding_state(self.store, "corpus after the bulk save")
            close_store(self.store)  # untimed; the reads open the filled database again
            self.store = None

    def step_reads(self, round_number: int, rounds: int) -> None:
        """Round r of every read workload on the filled database (its r-th share of each); then its size."""
        if round_number == 0:
            progress(self.system, f"reads, {rounds} rounds ...")
            self.store = open_store(self.system, self.db_path)
            self.listed_ids = [row["id"] for row in self.store.list_conversations()] if self.system != "openai" else []
        plan, share = self.plan, (lambda items: round_slice(items, round_number, rounds))
        queries = share(plan.queries)
        self.timings("load").extend(time_loads(self.store, share(plan.load_ids)))
        if self.system != "openai":
            self.timings("search_all").extend(time_searches(self.store, queries, self.found("search_all")))
            self.timings("time_search").extend(time_windows(self.store, share(plan.time_windows), self.hits))
            self.timings("list_all").extend(time_lists(self.store, len(share(range(plan.list_repeats)))))
        if self.system in RICH or self.system in FLOORS:
            self.timings("search_top20").extend(
                time_searches(
                    self.store, queries, self.found("search_top20"), limit=20, order="relevance", snippets=True
                )
            )
            depths = share(plan.page_depths)
            self.timings("list_page_offset").extend(time_pages_offset(self.store, depths))
            self.timings("list_page_keyset").extend(time_pages_keyset(self.store, self.listed_ids, depths))
        if round_number == rounds - 1:
            self.finish_reads()

    def found(self, section: str) -> dict:
        """Per-query ms and hits of one search workload, filled round by round."""
        return self.per_query.setdefault(section, {})

    def finish_reads(self) -> None:
        """Summaries of the read workloads; close; the database's size (exactly the corpus)."""
        for name in (
            "load",
            "search_all",
            "time_search",
            "list_all",
            "search_top20",
            "list_page_offset",
            "list_page_keyset",
        ):
            if self.times.get(name):
                self.result[name] = self.summary(name)
        for section, found in self.per_query.items():
            self.result[section]["queries"] = found
            self.result[section]["hits"] = sum(entry["hits"] for entry in found.values())
        if self.hits:
            self.result["time_search"]["median_hits"] = statistics.median(self.hits)
        if "list_all" in self.result:
            self.result["list_all"]["rows"] = len(self.listed_ids)
        self.embedding_state(self.store, "corpus after the reads")
        close_store(self.store)
        self.store = None
        # Before the live chat and the deletes: the size of exactly the corpus, the same data everywhere.
        self.result["file_size"] = database_size(self.system, self.db_path)

    def step_live(self, round_number: int, rounds: int) -> None:
        """Round r of the live chats (into the filled database), every way of persisting."""
        if round_number == 0:
            progress(self.system, f"live chat, {len(self.plan.live_sample)} conversations, {rounds} rounds ...")
            self.store = open_store(self.system, self.db_path)
        sample = round_slice(self.plan.live_sample, round_number, rounds)
        for name, persist in persist_ways(self.system):
            replay_chats(self.store, self.system, sample, persist, self.timings(f"live_{name}"))
        if round_number == rounds - 1:
            for name, _ in persist_ways(self.system):
                result = self.summary(f"live_{name}")
                result["saves_per_second"] = result["per_second"]
                self.result[f"live_chat_{name}"] = result
            if self.system != "openai":
                self.result["hits_after_live"] = hits_per_query(self.store, self.plan.queries)
            self.embedding_state(self.store, "corpus after the live chats")
            close_store(self.store)  # untimed: what the live chats left to do is not the deletes' cost
            self.store = None

    def step_delete(self, round_number: int, rounds: int) -> None:
        """Round 0: N/5 deletes, then a timed close(). Rounds 1..: shares of N more deletes, then a timed close().

        With a single round both phases run in it.
        """
        if round_number == 0:
            progress(self.system, f"delete {len(self.plan.delete_few)} + {len(self.plan.delete_many)} ...")
            self.delete_phase("few", self.plan.delete_few, close=True)
        many = self.plan.delete_many
        if rounds == 1:
            self.delete_phase("many", many, close=True)
        elif round_number > 0:
            share = round_slice(many, round_number - 1, rounds - 1)
            self.delete_phase("many", share, close=round_number == rounds - 1)
        if round_number == rounds - 1:
            closes = {key: self.result.pop(key, None) for key in ("close_after_few_ms", "close_after_many_ms")}
            self.result["delete"] = {
                **self.summary("delete"),
                **closes,
                "few": len(self.plan.delete_few),
                "many": len(many),
            }

    def delete_phase(self, name: str, ids: Sequence[str], close: bool) -> None:
        """Delete ``ids`` on the open store (opened if needed); with ``close``, time the close() after them."""
        if self.store is None:
            self.store = open_store(self.system, self.db_path)
        delete_each(self.store, ids, self.timings("delete"))
        if close:
            self.embedding_state(self.store, f"corpus after the {name} deletes")
            has_close = hasattr(self.store, "close")
            self.result[f"close_after_{name}_ms"] = timed(close_store, self.store)[0] * 1000 if has_close else None
            self.store = None

    def step_long(self, round_number: int, rounds: int) -> None:
        """Round r of the long chat: its r-th share of the messages, in a fresh database per way."""
        ways = persist_ways(self.system)
        if round_number == 0:
            progress(self.system, f"{len(self.plan.long_texts)}-turn chat, {rounds} rounds ...")
            for name, _ in ways:
                path = os.path.join(self.args.db_dir, f"{self.system}-long-{name}.db")
                self.long_stores[name] = open_store(self.system, path)
                self.long_stores[name + "_chat"] = Conversation(model_name="llama3", title="the long chat")
                open_session(self.long_stores[name], self.system, self.long_stores[name + "_chat"])
        texts = round_slice(self.plan.long_texts, round_number, rounds)
        for name, persist in ways:
            store, conversation = self.long_stores[name], self.long_stores[name + "_chat"]
            turn = len(conversation.messages)
            for offset, text in enumerate(texts):
                role = MessageRole.USER if (turn + offset) % 2 == 0 else MessageRole.ASSISTANT
                message = add_turn(conversation, role, text)
                self.timings(f"long_{name}").append(timed(persist, store, conversation, message)[0])
        if round_number == rounds - 1:
            for name, _ in ways:
                times = self.times.pop(f"long_{name}")
                self.result[f"long_chat_{name}"] = summarize_long_chat(times, self.round_starts(f"long_{name}"))
                self.embedding_state(self.long_stores[name], f"long chat, {name}")
                close_store(self.long_stores.pop(name))

    def step_save_many(self, round_number: int, rounds: int) -> None:
        """save_many of the whole corpus into a fresh database (ours, postgres, floors)."""
        if not (self.system in FLOORS or (self.system in RICH and has_api("save_many"))):
            return
        if self.system == "ours_embedding":
            return  # not a seed-API row: ours+embedder is judged on those only
        progress(self.system, f"save_many, batches of {self.args.batch_size} ...")
        db_path = os.path.join(self.args.db_dir, f"{self.system}-bulk_api.db")
        store = open_store(self.system, db_path)
        self.result["save_many"] = bench_save_many(store, self.corpus, self.args.batch_size)
        close_store(store)
        self.result["save_many"]["file_size"] = database_size(self.system, db_path)

    def step_export_import(self, round_number: int, rounds: int) -> None:
        """Full streaming export of the filled database to JSON lines, and import into a fresh one.

        Each step runs in its own process and reports its own peak RSS.
        """
        if self.system not in RICH or self.system == "ours_embedding":
            return  # stream.py runs in its own process, without the embedder: that is ours' export again
        lines = os.path.join(self.args.db_dir, f"{self.system}-export.jsonl")
        if has_api("iter_conversations"):
            progress(self.system, "export (iter_conversations) ...")
            self.result["export"] = run_stream(self.system, "export", "--db", self.db_path, "--file", lines)
        if has_api("save_many") and os.path.exists(lines):
            progress(self.system, "import (save_many) ...")
            self.result["import"] = run_stream(
                self.system,
                "import",
                "--db",
                os.path.join(self.args.db_dir, f"{self.system}-import.db"),
                "--file",
                lines,
                "--batch-size",
                str(self.args.batch_size),
            )

    def step_finish(self, round_number: int, rounds: int) -> None:
        """The worker's peak RSS; the results go out with the answer."""
        self.result["peak_rss_mb"] = peak_rss_mb()
        if EMBEDDER is not None:
            embedding = self.result.setdefault("embedding", {})
            embedding.update(EMBEDDER.summary())
            stores = embedding.get("stores", {})
            # Every store the worker fills, at its last count: the corpus (after the deletes), the two long chats.
            last = {}
            for when, counts in stores.items():
                last[when.split(" after ")[0]] = counts
            embedding["embedded"] = sum(c["embedded"] for c in last.values())
            embedding["pending"] = sum(c["pending"] for c in last.values())
        progress(self.system, "done")

    def run_step(self, step: str, round_number: int, rounds: int) -> None:
        """One round of ``step``; ours_embedding's background thread runs only meanwhile (EmbedderGate)."""
        self.round_number = round_number
        if EMBEDDER is not None:
            EMBEDDER.resume()
        try:
            getattr(self, f"step_{step}")(round_number, rounds)
            if EMBEDDER is not None:
                EMBEDDER.drain()
        finally:
            if EMBEDDER is not None:
                EMBEDDER.pause()


# -- the conversation with run.py ----------------------------------------------------


def serve(bench: Bench, answers: Any) -> None:
    """Run each step read from stdin, answering one JSON line per step (the results after "finish")."""
    answer(answers, {"ready": True, "corpus_rss_mb": bench.result["corpus_rss_mb"]})
    for line in sys.stdin:
        order = json.loads(line)
        try:
            bench.run_step(order["step"], order.get("round", 0), order.get("rounds", 1))
        except Exception:  # noqa: BLE001 - any failure is reported to run.py, which drops the column
            answer(answers, {"error": traceback.format_exc()})
            return
        if order["step"] == "finish":
            answer(answers, {"done": True, "result": bench.result})
            return
        answer(answers, {"done": True})


def answer(answers: Any, message: dict) -> None:
    answers.write(json.dumps(message) + "\n")
    answers.flush()


def conversation_count(text: str) -> int | None:
    """``--conversations``: a number, or ``all``."""
    return None if text == "all" else int(text)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", choices=SYSTEMS, required=True)
    parser.add_argument("--corpus", required=True, help="the ShareGPT JSON file")
    parser.add_argument("--conversations", type=conversation_count, default=3000, help="a number or 'all'")
    parser.add_argument("--scale", type=int, default=None, help="repeat the conversations up to this many messages")
    parser.add_argument("--db-dir", required=True, help="an empty folder for the database files")
    parser.add_argument("--queries", required=True, help="comma-separated search words")
    parser.add_argument("--max-queries", type=int, default=1000)
    parser.add_argument("--load-count", type=int, default=500)
    parser.add_argument("--live-sample", type=int, default=470)
    parser.add_argument("--long-turns", type=int, default=1000)
    parser.add_argument("--list-repeats", type=int, default=50)
    parser.add_argument("--time-windows", type=int, default=50)
    parser.add_argument("--deletes", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--random-seed", type=int, default=20240101)
    return parser.parse_args()


def main() -> None:
    # Answers go to the real stdout; whatever a library prints goes to stderr instead.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    args = parse_args()
    corpus = Corpus(args.corpus, args.conversations, args.scale)
    progress(args.system, f"corpus: {len(corpus)} conversations, {corpus.messages} messages")
    result = describe(args.system, corpus)
    if args.system == "ours_embedding":
        from qv_session_manager.embedding import open_embedder

        global EMBEDDER
        EMBEDDER = EmbedderGate(open_embedder(EMBEDDER_SPEC))  # loaded before the timings
        EMBEDDER.inner.embed(["warm up"])
    plan = make_plan(corpus, args)
    # The corpus and the plan live as long as the worker: keep them out of the cyclic
    # collector's passes, whose pauses would otherwise land in the timings' tails.
    gc.freeze()
    if args.system == "postgres":
        drop_postgres_schemas()
    try:
        serve(Bench(args.system, args, corpus, plan, result), answers)
    finally:
        if args.system == "postgres":
            drop_postgres_schemas()


if __name__ == "__main__":
    main()
