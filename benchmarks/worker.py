"""Run every workload against ONE system and write its timings as JSON.

Started by ``run.py``, once per system, each in its own process:

- ``--system seed``: run with the seed venv's python; ``qv_session_manager`` is
  PyPI's qv-session-manager 0.3.0 there.
- ``--system ours``: run with the python where this project is installed.
- ``--system postgres``: this project through its PostgreSQL plugin (same python).
- ``--system bare``: plain sqlite3 (the floor), same python as ``ours``.

The seed and this project share the seed API (``SessionManager(db_path=...)``,
``save_conversation``, ``load_conversation``, ``search_conversations``,
``search_by_time``, ``list_conversations``, ``delete_conversation``), so the same
workload code drives both; only the import differs. :class:`BareStore` offers those
method names over plain SQL. The richer API of this project (``add_messages``,
paged lists, ranked search with snippets, ``save_many``, ``iter_conversations``) is
measured for ``ours`` and ``postgres`` only (and its floor for ``bare``).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

from qv_ollama_sdk.domain.models import Conversation, MessageRole

from corpus import Corpus

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
RICH = ("ours", "postgres")  # the systems with this project's richer API

# -- measuring ----------------------------------------------------------------


def summarize(seconds: list[float]) -> dict:
    """Median, p95 (nearest rank) and total of per-operation times."""
    ordered = sorted(seconds)
    total = sum(ordered)
    return {
        "n": len(ordered),
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[math.ceil(0.95 * len(ordered)) - 1] * 1000,
        "total_s": total,
        "per_second": len(ordered) / total if total else None,
    }


def timed(function, *args, **kwargs) -> tuple[float, object]:
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
    print(f"[{system}] {text}", file=sys.stderr, flush=True)


def batches(iterable, size: int):
    """Lists of ``size`` items (the last one may be shorter)."""
    iterator = iter(iterable)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def file_size(path: str) -> dict:
    sizes = {}
    for suffix in ("", "-wal", "-journal"):
        if os.path.exists(path + suffix):
            sizes["main" if not suffix else suffix[1:]] = os.path.getsize(path + suffix)
    sizes["total_bytes"] = sum(sizes.values())
    return sizes


# -- the floor ------------------------------------------------------------------

BARE_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, title TEXT, model_name TEXT,
    created_at TEXT, updated_at TEXT, metadata TEXT
);
CREATE INDEX IF NOT EXISTS conversations_by_updated ON conversations (updated_at, id);
CREATE TABLE IF NOT EXISTS messages (
    pk INTEGER PRIMARY KEY, id TEXT NOT NULL, conversation_id TEXT NOT NULL,
    role TEXT, content TEXT, created_at TEXT, metadata TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5 (
    content, content = 'messages', content_rowid = 'pk'
);
CREATE TRIGGER IF NOT EXISTS messages_to_fts AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.pk, new.content);
END;
CREATE TRIGGER IF NOT EXISTS messages_from_fts AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.pk, old.content);
END;
"""

CONVERSATION_COLUMNS = "id, title, model_name, created_at, updated_at, metadata"
UPSERT_CONVERSATION = f"""INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET title = excluded.title, updated_at = excluded.updated_at"""
INSERT_MESSAGE = """INSERT INTO messages (id, conversation_id, role, content, created_at, metadata)
    VALUES (?, ?, ?, ?, ?, ?)"""


def conversation_row(conversation) -> tuple:
    return (
        str(conversation.id),
        conversation.title,
        conversation.model_name,
        conversation.created_at.isoformat(),
        conversation.updated_at.isoformat(),
        json.dumps(conversation.metadata),
    )


def message_rows(conversation_id: str, messages) -> list[tuple]:
    return [
        (str(m.id), conversation_id, m.role.value, m.content, m.created_at.isoformat(), json.dumps(m.metadata))
        for m in messages
    ]


class BareStore:
    """Plain sqlite3: the least work that stores, finds and loads the same data.

    One connection, WAL with synchronous=FULL (the same durability as this
    project's default), one transaction per save with ``executemany``, an FTS5
    index with external content (no title index), results as raw row tuples.
    ``save_conversation`` only inserts the messages it is given, so saving just
    the newest message is a plain append.
    """

    def __init__(self, db_path: str) -> None:
        self.db = sqlite3.connect(db_path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.executescript(BARE_SCHEMA)

    def save_conversation(self, conversation, messages) -> None:
        self.db.execute("BEGIN")
        self.db.execute(UPSERT_CONVERSATION, conversation_row(conversation))
        self.db.executemany(INSERT_MESSAGE, message_rows(str(conversation.id), messages))
        self.db.execute("COMMIT")

    def save_many(self, conversations, batch_size: int) -> int:
        """Each batch of conversations with all their messages: one executemany each, one transaction."""
        saved = 0
        for batch in batches(conversations, batch_size):
            self.db.execute("BEGIN")
            self.db.executemany(UPSERT_CONVERSATION, map(conversation_row, batch))
            self.db.executemany(
                INSERT_MESSAGE, (row for c in batch for row in message_rows(str(c.id), c.messages))
            )
            self.db.execute("COMMIT")
            saved += len(batch)
        return saved

    def load_conversation(self, conversation_id: str):
        conversation = self.db.execute(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        messages = self.db.execute(
            "SELECT id, role, content, created_at, metadata FROM messages WHERE conversation_id = ? ORDER BY pk",
            (conversation_id,),
        ).fetchall()
        return conversation, messages

    def search_conversations(self, word: str, limit: int = -1, order: str = "recent", snippets: bool = False) -> list:
        """Ids of the conversations with a message containing ``word``.

        With ``order="relevance"``: the ``limit`` best conversations by the bm25 rank of
        their best message, each with a snippet of that message (``snippets`` is implied).
        """
        match = '"' + word.replace('"', '""') + '"'
        if order != "relevance":
            return self.db.execute(
                """SELECT DISTINCT m.conversation_id FROM messages_fts
                   JOIN messages m ON m.pk = messages_fts.rowid WHERE messages_fts MATCH ?""",
                (match,),
            ).fetchall()
        # min(rank) picks the best message of each conversation (SQLite's bare-column rule).
        return self.db.execute(
            """WITH best (conversation_id, pk, rank) AS (
                   SELECT m.conversation_id, m.pk, min(messages_fts.rank) FROM messages_fts
                   JOIN messages m ON m.pk = messages_fts.rowid WHERE messages_fts MATCH :match
                   GROUP BY m.conversation_id ORDER BY 3 LIMIT :limit)
               SELECT best.conversation_id, snippet(messages_fts, 0, '**', '**', '...', 16)
               FROM best JOIN messages_fts ON messages_fts.rowid = best.pk
               WHERE messages_fts MATCH :match ORDER BY best.rank""",
            {"match": match, "limit": limit},
        ).fetchall()

    def search_by_time(self, start: str, end: str) -> list:
        """Conversations updated between two ISO timestamps (inclusive), via the index."""
        return self.db.execute(
            f"""SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE updated_at BETWEEN ? AND ?
                ORDER BY updated_at DESC, id DESC""",
            (start, end),
        ).fetchall()

    def list_conversations(self, limit: int = -1, offset: int = 0, after: str | None = None) -> list:
        """Newest first; ``after`` is the id of the last row of the previous page (keyset paging)."""
        where = "WHERE (updated_at, id) < (SELECT updated_at, id FROM conversations WHERE id = ?)" if after else ""
        return self.db.execute(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations {where}"
            " ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?",
            (after, limit, offset) if after else (limit, offset),
        ).fetchall()

    def delete_conversation(self, conversation_id: str) -> bool:
        """The conversation, its messages and (by trigger) their index entries, in one transaction."""
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
        deleted = self.db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount
        self.db.execute("COMMIT")
        return deleted > 0

    def close(self) -> None:
        self.db.close()


# -- opening stores ---------------------------------------------------------------

#: The server the "postgres" system uses; each database file name becomes a schema.
POSTGRES_URL = os.environ.get("QV_SESSION_MANAGER_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
POSTGRES_SCHEMA_PREFIX = "bench_postgres_"


def postgres_schema(db_path: str) -> str:
    return "bench_" + os.path.splitext(os.path.basename(db_path))[0].replace("-", "_")


def open_store(system: str, db_path: str):
    if system == "bare":
        return BareStore(db_path)
    from qv_session_manager import SessionManager

    if system == "postgres":
        return SessionManager(url=POSTGRES_URL, schema=postgres_schema(db_path))
    return SessionManager(db_path=db_path)


def close_store(store) -> None:
    # The seed's SessionManager has no close(): it opens a connection per call.
    if hasattr(store, "close"):
        store.close()


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
        (total,) = connection.execute(
            """SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'""",
            (postgres_schema(db_path),),
        ).fetchone()
    return {"total_bytes": int(total)}


def has_api(name: str) -> bool:
    """Whether this project's SessionManager has ``name`` yet (new APIs are being added)."""
    from qv_session_manager import SessionManager

    return hasattr(SessionManager, name)


# -- ways to persist a chat after each new message --------------------------------


def save_whole_conversation(store, conversation, message) -> None:
    """The seed API's way: save the conversation with all its messages again."""
    store.save_conversation(conversation, conversation.messages)


def add_newest_message(store, conversation, message) -> None:
    """This project's append API (the first message creates the conversation)."""
    if len(conversation.messages) == 1:
        store.save_conversation(conversation, [message])
    else:
        store.add_messages(str(conversation.id), [message])


def bare_append(store, conversation, message) -> None:
    """The floor: one transaction upserting the conversation row and inserting the message."""
    store.save_conversation(conversation, [message])


def add_turn(conversation: Conversation, role: MessageRole, content: str):
    """Append a message the way a chat app does (new id, created_at = now)."""
    if role == MessageRole.ASSISTANT:
        return conversation.add_assistant_message(content)
    if role == MessageRole.SYSTEM:
        return conversation.add_system_message(content)
    return conversation.add_user_message(content)


# -- workloads --------------------------------------------------------------------


def bench_bulk_save(store, conversations) -> dict:
    """save_conversation(conv, conv.messages) once per corpus conversation (built lazily, untimed)."""
    times, messages = [], 0
    for conversation in conversations:
        seconds, _ = timed(store.save_conversation, conversation, conversation.messages)
        times.append(seconds)
        messages += len(conversation.messages)
    result = summarize(times)
    result["messages"] = messages
    result["messages_per_second"] = messages / result["total_s"]
    return result


def bench_save_many(store, conversations, batch_size: int) -> dict:
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


def bench_load(store, conversation_ids: list[str]) -> dict:
    store.load_conversation(conversation_ids[0])  # warm-up, untimed
    times = [timed(store.load_conversation, conversation_id)[0] for conversation_id in conversation_ids]
    return summarize(times)


def bench_search(store, queries: list[str], **options) -> dict:
    """One search per query; records each query's time and number of hits."""
    store.search_conversations(queries[0], **options)  # warm-up, untimed
    times, per_query = [], {}
    for query in queries:
        seconds, hits = timed(store.search_conversations, query, **options)
        times.append(seconds)
        per_query[query] = {"ms": seconds * 1000, "hits": len(hits)}
    result = summarize(times)
    result["queries"] = per_query
    return result


def bench_time_search(store, windows: list[tuple[str, str]]) -> dict:
    """search_by_time(start, end) over each window (ISO strings, both ends inclusive)."""
    store.search_by_time(*windows[0])  # warm-up, untimed
    times, hits = [], []
    for start, end in windows:
        seconds, found = timed(store.search_by_time, start, end)
        times.append(seconds)
        hits.append(len(found))
    result = summarize(times)
    result["median_hits"] = statistics.median(hits)
    return result


def bench_list_all(store, repeats: int) -> tuple[dict, list[str]]:
    """Times list_conversations() and returns the listed ids in order too."""
    store.list_conversations()  # warm-up, untimed
    times, listed = [], []
    for _ in range(repeats):
        listed = []  # let the previous listing go before the next one is built
        seconds, listed = timed(store.list_conversations)
        times.append(seconds)
    result = summarize(times)
    result["rows"] = len(listed)
    return result, [row["id"] if isinstance(row, dict) else row[0] for row in listed]


def bench_list_offset(store, depths: list[int]) -> dict:
    """One page of 20 starting at each depth, with limit/offset."""
    store.list_conversations(limit=20, offset=0)  # warm-up, untimed
    return summarize([timed(store.list_conversations, limit=20, offset=depth)[0] for depth in depths])


def bench_list_keyset(store, listed_ids: list[str], depths: list[int]) -> dict:
    """The same pages with keyset paging: after= the id of the row just before the page."""
    store.list_conversations(limit=20, after=listed_ids[0])  # warm-up, untimed
    times = [timed(store.list_conversations, limit=20, after=listed_ids[depth - 1])[0] for depth in depths]
    return summarize(times)


def bench_delete(store, conversation_ids: list[str]) -> dict:
    """delete_conversation of each id (each one stored)."""
    return summarize([timed(store.delete_conversation, conversation_id)[0] for conversation_id in conversation_ids])


def bench_live_chat(store, sample: list[Conversation], persist) -> dict:
    """Replay each sampled conversation message by message, persisting after each.

    Every replay is a new conversation (new ids), built with the SDK's add_*_message.
    """
    times = []
    for original in sample:
        conversation = Conversation(model_name=original.model_name, title=original.title)
        for turn in original.messages:
            message = add_turn(conversation, turn.role, turn.content)
            seconds, _ = timed(persist, store, conversation, message)
            times.append(seconds)
    result = summarize(times)
    result["saves_per_second"] = result["per_second"]
    return result


def bench_long_chat(store, texts: list[str], persist) -> dict:
    """One conversation growing to len(texts) messages, persisted after each."""
    conversation = Conversation(model_name="llama3", title="1000-turn chat")
    times = []
    for index, text in enumerate(texts):
        role = MessageRole.USER if index % 2 == 0 else MessageRole.ASSISTANT
        message = add_turn(conversation, role, text)
        seconds, _ = timed(persist, store, conversation, message)
        times.append(seconds)
    first, last = summarize(times[:100]), summarize(times[-100:])
    return {
        "turns": len(texts),
        "first_100": first,
        "last_100": last,
        "all": summarize(times),
        "last_over_first": last["median_ms"] / first["median_ms"],
    }


def run_stream(system: str, *arguments: str) -> dict:
    """Run stream.py in its own process (so its peak RSS is its own) and return its JSON."""
    command = [sys.executable, os.path.join(BENCH_DIR, "stream.py"), *arguments, "--system", system]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


# -- the run ----------------------------------------------------------------------


@dataclass
class Plan:
    """The random choices of a run; the same seed gives every system the same ones."""

    load_ids: list[str]
    delete_ids: list[str]
    live_sample: list[Conversation]
    list_repeats: int
    page_depths: list[int]
    time_windows: list[tuple[str, str]]
    long_texts: list[str]
    queries: list[str]


def make_plan(corpus: Corpus, args: argparse.Namespace) -> Plan:
    rng = random.Random(args.random_seed)
    size = len(corpus)
    numbers = range(size)
    loads = rng.sample(numbers, args.load_count) if args.load_count <= size else rng.choices(numbers, k=args.load_count)
    live = rng.sample(range(len(corpus.items)), min(args.live_sample, len(corpus.items)))
    depths = [rng.randrange(1, max(2, size - 20)) for _ in range(args.list_repeats)]
    first, last = corpus.time_span()
    latest_start = max(0, int((last - first - timedelta(days=1)).total_seconds() // 60))
    windows = []
    for _ in range(args.time_windows):
        start = first + timedelta(minutes=rng.randrange(0, latest_start + 1))
        end = start + timedelta(days=1, seconds=-1)
        windows.append((start.isoformat(timespec="seconds"), end.isoformat(timespec="seconds")))
    deletes = rng.sample(numbers, min(args.deletes, size))
    return Plan(
        load_ids=[corpus.conversation_id(n) for n in loads],
        delete_ids=[corpus.conversation_id(n) for n in deletes],
        live_sample=[corpus.conversation(n) for n in live],
        list_repeats=args.list_repeats,
        page_depths=depths,
        time_windows=windows,
        long_texts=corpus.texts(args.long_turns),
        queries=args.queries.split(",")[: args.max_queries],
    )


def describe(system: str, corpus: Corpus) -> dict:
    """The run's facts: versions, corpus size, the imported package."""
    result: dict = {
        "system": system,
        "python": sys.version,
        "sqlite_version": sqlite3.sqlite_version,
        "corpus": corpus.summary(),
        "corpus_rss_mb": peak_rss_mb(),
    }
    if system != "bare":
        import qv_session_manager

        result["module_file"] = qv_session_manager.__file__
        result["module_version"] = getattr(qv_session_manager, "__version__", None)
    return result


def fill_and_read(system: str, corpus: Corpus, plan: Plan, db_path: str, result: dict) -> None:
    """Bulk save the corpus, then every read workload on it; finally the stored size."""
    store = open_store(system, db_path)
    progress(system, f"bulk save of {len(corpus)} conversations ...")
    result["bulk_save"] = bench_bulk_save(store, corpus)
    progress(system, f"load {len(plan.load_ids)} ...")
    result["load"] = bench_load(store, plan.load_ids)
    progress(system, f"search {len(plan.queries)} queries ...")
    result["search_all"] = bench_search(store, plan.queries)
    if system != "seed":
        result["search_top20"] = bench_search(store, plan.queries, limit=20, order="relevance", snippets=True)
    progress(system, f"time search, {len(plan.time_windows)} windows ...")
    result["time_search"] = bench_time_search(store, plan.time_windows)
    progress(system, "list ...")
    result["list_all"], listed_ids = bench_list_all(store, plan.list_repeats)
    if system != "seed":
        result["list_page_offset"] = bench_list_offset(store, plan.page_depths)
        result["list_page_keyset"] = bench_list_keyset(store, listed_ids, plan.page_depths)
    close_store(store)
    # Before the live chat and the deletes: the size of exactly the corpus, the same data everywhere.
    result["file_size"] = database_size(system, db_path)


def live_chat_and_delete(system: str, plan: Plan, db_path: str, result: dict) -> None:
    """Live chats into the filled database (an app with history), then deletes from it."""
    store = open_store(system, db_path)
    progress(system, f"live chat, {len(plan.live_sample)} conversations ...")
    if system == "bare":
        result["live_chat_append"] = bench_live_chat(store, plan.live_sample, bare_append)
    else:
        result["live_chat_save"] = bench_live_chat(store, plan.live_sample, save_whole_conversation)
    if system in RICH:
        result["live_chat_append"] = bench_live_chat(store, plan.live_sample, add_newest_message)
    progress(system, f"delete {len(plan.delete_ids)} ...")
    result["delete"] = bench_delete(store, plan.delete_ids)
    # Ours purges deleted words from its search index when the store closes.
    result["delete"]["close_ms"] = timed(close_store, store)[0] * 1000


def long_chats(system: str, plan: Plan, db_dir: str, result: dict) -> None:
    """The long chat, from a fresh database for each way of persisting."""
    progress(system, f"{len(plan.long_texts)}-turn chat ...")
    ways = {"bare": [("long_chat_append", bare_append)]}.get(system, [("long_chat_save", save_whole_conversation)])
    if system in RICH:
        ways.append(("long_chat_append", add_newest_message))
    for name, persist in ways:
        store = open_store(system, os.path.join(db_dir, f"{system}-{name}.db"))
        result[name] = bench_long_chat(store, plan.long_texts, persist)
        close_store(store)


def bulk_api(system: str, corpus: Corpus, db_dir: str, batch_size: int, result: dict) -> None:
    """save_many of the whole corpus into a fresh database."""
    if system == "seed" or (system in RICH and not has_api("save_many")):
        return
    progress(system, f"save_many, batches of {batch_size} ...")
    db_path = os.path.join(db_dir, f"{system}-bulk_api.db")
    store = open_store(system, db_path)
    result["save_many"] = bench_save_many(store, corpus, batch_size)
    close_store(store)
    result["save_many"]["file_size"] = database_size(system, db_path)


def export_import(system: str, db_path: str, db_dir: str, batch_size: int, result: dict) -> None:
    """Full streaming export of the filled database to JSON lines, and import into a fresh one.

    Each step runs in its own process and reports its own peak RSS.
    """
    if system not in RICH:
        return
    lines = os.path.join(db_dir, f"{system}-export.jsonl")
    if has_api("iter_conversations"):
        progress(system, "export (iter_conversations) ...")
        result["export"] = run_stream(system, "export", "--db", db_path, "--file", lines)
    if has_api("save_many") and os.path.exists(lines):
        progress(system, "import (save_many) ...")
        result["import"] = run_stream(
            system, "import", "--db", os.path.join(db_dir, f"{system}-import.db"), "--file", lines,
            "--batch-size", str(batch_size),
        )


def run(args: argparse.Namespace) -> dict:
    system = args.system
    corpus = Corpus(args.corpus, args.conversations, args.scale)
    progress(system, f"corpus: {len(corpus)} conversations, {corpus.messages} messages")
    result = describe(system, corpus)
    plan = make_plan(corpus, args)
    # The corpus and the plan live as long as the worker: keep them out of the cyclic
    # collector's passes, whose pauses would otherwise land in the timings' tails.
    gc.freeze()
    db_path = os.path.join(args.db_dir, f"{system}-corpus.db")
    if system == "postgres":
        drop_postgres_schemas()
    try:
        fill_and_read(system, corpus, plan, db_path, result)
        live_chat_and_delete(system, plan, db_path, result)
        long_chats(system, plan, args.db_dir, result)
        bulk_api(system, corpus, args.db_dir, args.batch_size, result)
        export_import(system, db_path, args.db_dir, args.batch_size, result)
    finally:
        if system == "postgres":
            drop_postgres_schemas()
    result["peak_rss_mb"] = peak_rss_mb()
    progress(system, "done")
    return result


def conversation_count(text: str) -> int | None:
    """``--conversations``: a number, or ``all``."""
    return None if text == "all" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", choices=["seed", "ours", "bare", "postgres"], required=True)
    parser.add_argument("--corpus", required=True, help="the ShareGPT JSON file")
    parser.add_argument("--conversations", type=conversation_count, default=3000, help="a number or 'all'")
    parser.add_argument("--scale", type=int, default=None, help="repeat the conversations up to this many messages")
    parser.add_argument("--db-dir", required=True, help="an empty folder for the database files")
    parser.add_argument("--output", required=True, help="where to write the JSON results")
    parser.add_argument("--queries", required=True, help="comma-separated search words")
    parser.add_argument("--max-queries", type=int, default=1000)
    parser.add_argument("--load-count", type=int, default=500)
    parser.add_argument("--live-sample", type=int, default=200)
    parser.add_argument("--long-turns", type=int, default=1000)
    parser.add_argument("--list-repeats", type=int, default=50)
    parser.add_argument("--time-windows", type=int, default=50)
    parser.add_argument("--deletes", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--random-seed", type=int, default=20240101)
    args = parser.parse_args()
    result = run(args)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
