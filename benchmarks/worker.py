"""Run every workload against ONE system and write its timings as JSON.

Started by ``run.py``, once per system, each in its own process:

- ``--system seed``: run with the seed venv's python; ``qv_session_manager`` is
  PyPI's qv-session-manager 0.3.0 there.
- ``--system ours``: run with the python where this project is installed.
- ``--system bare``: plain sqlite3 (the floor), same python as ``ours``.

The seed and this project share the seed API (``SessionManager(db_path=...)``,
``save_conversation``, ``load_conversation``, ``search_conversations``,
``list_conversations``), so the same workload code drives both; only the import
differs. :class:`BareStore` offers those method names over plain SQL. The richer
API of this project (``add_messages``, paged lists, ranked search with snippets)
is measured for ``ours`` only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sqlite3
import statistics
import sys
import time

from qv_ollama_sdk.domain.models import Conversation, MessageRole

from corpus import load_conversations

# -- statistics ---------------------------------------------------------------


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


def progress(system: str, text: str) -> None:
    print(f"[{system}] {text}", file=sys.stderr, flush=True)


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
CREATE INDEX IF NOT EXISTS conversations_by_updated ON conversations (updated_at);
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
"""


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
        conversation_id = str(conversation.id)
        rows = [
            (str(m.id), conversation_id, m.role.value, m.content, m.created_at.isoformat(), json.dumps(m.metadata))
            for m in messages
        ]
        self.db.execute("BEGIN")
        self.db.execute(
            """INSERT INTO conversations (id, title, model_name, created_at, updated_at, metadata)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (id) DO UPDATE SET title = excluded.title, updated_at = excluded.updated_at""",
            (
                conversation_id,
                conversation.title,
                conversation.model_name,
                conversation.created_at.isoformat(),
                conversation.updated_at.isoformat(),
                json.dumps(conversation.metadata),
            ),
        )
        self.db.executemany(
            """INSERT INTO messages (id, conversation_id, role, content, created_at, metadata)
               VALUES (?, ?, ?, ?, ?, ?)""",
            rows,
        )
        self.db.execute("COMMIT")

    def load_conversation(self, conversation_id: str):
        conversation = self.db.execute(
            "SELECT id, title, model_name, created_at, updated_at, metadata FROM conversations WHERE id = ?",
            (conversation_id,),
        ).fetchone()
        messages = self.db.execute(
            "SELECT id, role, content, created_at, metadata FROM messages WHERE conversation_id = ? ORDER BY pk",
            (conversation_id,),
        ).fetchall()
        return conversation, messages

    def search_conversations(self, word: str) -> list:
        return self.db.execute(
            """SELECT DISTINCT m.conversation_id FROM messages_fts
               JOIN messages m ON m.pk = messages_fts.rowid WHERE messages_fts MATCH ?""",
            ('"' + word.replace('"', '""') + '"',),
        ).fetchall()

    def list_conversations(self, limit: int = -1, offset: int = 0) -> list:
        return self.db.execute(
            """SELECT id, title, model_name, created_at, updated_at, metadata FROM conversations
               ORDER BY updated_at DESC LIMIT ? OFFSET ?""",
            (limit, offset),
        ).fetchall()

    def close(self) -> None:
        self.db.close()


#: The server the "postgres" system uses; each database file name becomes a schema.
POSTGRES_URL = os.environ.get("QV_SESSION_MANAGER_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_schema(db_path: str) -> str:
    return "bench_" + os.path.splitext(os.path.basename(db_path))[0].replace("-", "_")


def open_store(system: str, db_path: str):
    if system == "bare":
        return BareStore(db_path)
    from qv_session_manager import SessionManager

    if system == "postgres":
        return SessionManager(url=POSTGRES_URL, schema=postgres_schema(db_path))
    return SessionManager(db_path=db_path)


def drop_postgres_schemas(db_dir: str) -> None:
    """Remove the schemas a postgres run created (they are named after the run's files)."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        for name in ("postgres-corpus", "postgres-long_chat_save", "postgres-long_chat_append"):
            connection.execute(f'DROP SCHEMA IF EXISTS "{postgres_schema(name)}" CASCADE')


def close_store(store) -> None:
    # The seed's SessionManager has no close(): it opens a connection per call.
    if hasattr(store, "close"):
        store.close()


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


def bench_bulk_save(store, conversations: list[Conversation]) -> dict:
    """save_conversation(conv, conv.messages) once per corpus conversation."""
    times = []
    for conversation in conversations:
        seconds, _ = timed(store.save_conversation, conversation, conversation.messages)
        times.append(seconds)
    result = summarize(times)
    messages = sum(len(c.messages) for c in conversations)
    result["messages"] = messages
    result["messages_per_second"] = messages / result["total_s"]
    return result


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


def bench_list_all(store, repeats: int) -> dict:
    store.list_conversations()  # warm-up, untimed
    times, rows = [], 0
    for _ in range(repeats):
        seconds, listed = timed(store.list_conversations)
        times.append(seconds)
        rows = len(listed)
    result = summarize(times)
    result["rows"] = rows
    return result


def bench_list_page(store, offsets: list[int]) -> dict:
    store.list_conversations(limit=20, offset=0)  # warm-up, untimed
    times = [timed(store.list_conversations, limit=20, offset=offset)[0] for offset in offsets]
    return summarize(times)


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


# -- the run ----------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    system = args.system
    rng = random.Random(args.random_seed)
    conversations = load_conversations(args.corpus, args.conversations)
    messages = [m for c in conversations for m in c.messages]
    progress(system, f"corpus: {len(conversations)} conversations, {len(messages)} messages")

    result: dict = {
        "system": system,
        "python": sys.version,
        "sqlite_version": sqlite3.sqlite_version,
        "corpus": {
            "conversations": len(conversations),
            "messages": len(messages),
            "characters": sum(len(m.content) for m in messages),
        },
    }
    if system != "bare":
        import qv_session_manager

        result["module_file"] = qv_session_manager.__file__
        result["module_version"] = getattr(qv_session_manager, "__version__", None)

    ids = [str(c.id) for c in conversations]
    load_ids = rng.sample(ids, args.load_count) if args.load_count <= len(ids) else rng.choices(ids, k=args.load_count)
    sample = rng.sample(conversations, min(args.live_sample, len(conversations)))
    page_offsets = [rng.randrange(0, max(1, len(conversations) - 20)) for _ in range(args.list_repeats)]
    long_texts = [messages[i % len(messages)].content for i in range(args.long_turns)]
    queries = args.queries.split(",")[: args.max_queries]

    db_path = os.path.join(args.db_dir, f"{system}-corpus.db")
    if system == "postgres":
        drop_postgres_schemas(args.db_dir)  # leftovers of an interrupted run
    store = open_store(system, db_path)
    progress(system, "bulk save ...")
    result["bulk_save"] = bench_bulk_save(store, conversations)
    progress(system, f"load {len(load_ids)} ...")
    result["load"] = bench_load(store, load_ids)
    progress(system, f"search {len(queries)} queries ...")
    result["search_all"] = bench_search(store, queries)
    if system in ("ours", "postgres"):
        result["search_top20"] = bench_search(store, queries, limit=20, order="relevance", snippets=True)
    progress(system, "list ...")
    result["list_all"] = bench_list_all(store, args.list_repeats)
    if system != "seed":
        result["list_page"] = bench_list_page(store, page_offsets)
    close_store(store)
    if system != "postgres":
        result["file_size"] = file_size(db_path)

    # The live chat goes into the same, already filled database (an app with history).
    store = open_store(system, db_path)
    progress(system, f"live chat, {len(sample)} conversations ...")
    if system == "bare":
        result["live_chat_append"] = bench_live_chat(store, sample, bare_append)
    else:
        result["live_chat_save"] = bench_live_chat(store, sample, save_whole_conversation)
    if system in ("ours", "postgres"):
        result["live_chat_append"] = bench_live_chat(store, sample, add_newest_message)
    close_store(store)

    # The long chat starts from a fresh file for each way of persisting.
    progress(system, f"{len(long_texts)}-turn chat ...")
    ways = {"bare": [("long_chat_append", bare_append)]}.get(
        system, [("long_chat_save", save_whole_conversation)]
    )
    if system in ("ours", "postgres"):
        ways.append(("long_chat_append", add_newest_message))
    for name, persist in ways:
        path = os.path.join(args.db_dir, f"{system}-{name}.db")
        store = open_store(system, path)
        result[name] = bench_long_chat(store, long_texts, persist)
        close_store(store)
    if system == "postgres":
        drop_postgres_schemas(args.db_dir)
    progress(system, "done")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", choices=["seed", "ours", "bare", "postgres"], required=True)
    parser.add_argument("--corpus", required=True, help="the ShareGPT JSON file")
    parser.add_argument("--conversations", type=int, default=3000)
    parser.add_argument("--db-dir", required=True, help="an empty folder for the database files")
    parser.add_argument("--output", required=True, help="where to write the JSON results")
    parser.add_argument("--queries", required=True, help="comma-separated search words")
    parser.add_argument("--max-queries", type=int, default=1000)
    parser.add_argument("--load-count", type=int, default=500)
    parser.add_argument("--live-sample", type=int, default=200)
    parser.add_argument("--long-turns", type=int, default=1000)
    parser.add_argument("--list-repeats", type=int, default=50)
    parser.add_argument("--random-seed", type=int, default=20240101)
    args = parser.parse_args()
    result = run(args)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
