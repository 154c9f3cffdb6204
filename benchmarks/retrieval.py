"""Search by meaning, measured: retrieval quality and speed of text, semantic and hybrid search.

Run it with the python where this project is installed with its ``[semantic]`` extra::

    python benchmarks/retrieval.py --quick                  # smoke run: 300 conversations, 40 queries
    python benchmarks/retrieval.py                          # the first 3,000 ShareGPT conversations
    python benchmarks/retrieval.py --conversations all      # the whole corpus (17.5k conversations)
    python benchmarks/retrieval.py --url postgresql://127.0.0.1/test   # the same on PostgreSQL

The evaluation needs no hand labels (benchmarks/README.md, "Search by meaning"):
every ShareGPT chat that starts with a user message is stored WITHOUT that opening
question, and the question becomes a query whose relevant result is its own chat
(any of the parts ShareGPT split it into). Queries are sampled with a fixed seed
among the questions that are question-sized, unique among the opening questions,
and whose exact token sequence appears in no stored message.

One run, on one SQLite file (in ``--db-dir``, default ``/tmp``), or with ``--url`` on a
PostgreSQL store (the plugin qv-session-manager-postgres) in a fresh schema
``qv_retrieval_<time>_<pid>``, dropped at the end unless ``--keep-db``:

1. stores the corpus with ``save_many`` and embeds it with ``index_embeddings``
   (the offline WordLlama embedder), timing both (and the store's own ``pending_embeddings``
   and ``store_embeddings`` within, where PostgreSQL's HNSW inserts are), and measures the
   index size (SQLite: dbstat; PostgreSQL: pg_relation_size of the vectors' table and indexes);
2. runs every query in every mode (text as the library parses it, text with the
   question's words OR-ed, semantic, hybrid, hybrid with OR-ed words), top 20,
   the modes' order rotating from query to query: recall@10, MRR@10, and the
   latencies;
3. times top-20 searches for single common words (run.py's QUERIES) in the three
   library modes, next to a bare numpy floor (the same float32 vectors as one
   matrix in memory: one matrix-vector product, the best message per conversation,
   argpartition; on PostgreSQL the matrix is read once by SQL), the stages of a semantic
   search on their own, its SQL steps run apart (on PostgreSQL: pgvector's ordered fetch,
   the exact re-rank, with their EXPLAIN ANALYZE), and a cProfile of a few semantic searches;
4. on PostgreSQL, rebuilds the HNSW index in one go (REINDEX, ``--rebuild-mem``), timed,
   to compare with the inserts one by one of step 1;
5. prints the Markdown tables and writes ``benchmarks/results/retrieval-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import inspect
import io
import json
import os
import pstats
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy
from qv_ollama_sdk.domain.models import Conversation, MessageRole

from qv_session_manager import SessionManager
from qv_session_manager.meaning import FUSION_DEPTH, fuse
from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.query import parse
from qv_session_manager.text import tokens
from qv_session_manager.vector_records import VectorSpace, best_per_conversation, ranked, similarities

from corpus import Corpus
from run import QUERIES as WORDS

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
SEED = 20240101
TOP = 20  # every search asks for this many conversations
CUTOFF = 10  # recall@10 and MRR@10
EMBEDDER = "wordllama"
#: The evaluated rankings, in the order of the tables. "library" marks the search_conversations paths.
MODES = ("text", "text_or", "semantic", "hybrid", "hybrid_or")
LABELS = {
    "text": "text (library default: every word required)",
    "text_or": "text, the question's words OR-ed",
    "semantic": "semantic (wordllama, 256 dimensions)",
    "hybrid": "hybrid (library: any of the words but the common ones, + vectors, RRF)",
    "hybrid_or": "hybrid, the question's words OR-ed + vectors (RRF)",
    "floor": "numpy floor (matrix in memory, no database)",
    "floor_embed": "numpy floor + embedding the query",
}
#: index_embeddings' own batch size.
DEFAULT_BATCH: int = inspect.signature(SessionManager.index_embeddings).parameters["batch_size"].default
QUICK = {"conversations": "300", "queries": 40, "word_repeats": 1, "profile_searches": 2, "embedder_sample": 1000}


# -- the evaluation set --------------------------------------------------------------


def chat_of(sharegpt_id: str) -> tuple[str, int]:
    """ShareGPT splits long chats into parts ``<chat>_<n>``: (chat, part number; -1 when unsplit)."""
    chat, _, part = sharegpt_id.rpartition("_")
    return (chat, int(part)) if chat and part.isdigit() else (sharegpt_id, -1)


def opens_chat(corpus: Corpus, number: int) -> bool:
    """Whether conversation ``number`` is the start of a chat that opens with a user message."""
    item = corpus.items[number]
    return chat_of(item.sharegpt_id)[1] <= 0 and item.turns[0][0] == MessageRole.USER


def stored_conversation(corpus: Corpus, number: int) -> Conversation:
    """The conversation as stored: no title (it would repeat the opening question), and a
    chat start without its opening user message."""
    conversation = corpus.conversation(number)
    conversation.title = None
    if opens_chat(corpus, number):
        conversation.messages = conversation.messages[1:]
    return conversation


def candidate_queries(corpus: Corpus, args: argparse.Namespace) -> tuple[list[int], dict[str, int]]:
    """The conversations whose opening question may become a query, and how many each filter dropped."""
    dropped: Counter[str] = Counter()
    openings: dict[int, tuple[str, ...]] = {}
    for number in range(len(corpus)):
        if not opens_chat(corpus, number):
            dropped["not the start of a chat opened by a user message"] += 1
            continue
        openings[number] = tuple(tokens(corpus.items[number].turns[0][1]))
    repeated = Counter(openings.values())
    kept = []
    for number, words in openings.items():
        remainder = corpus.items[number].turns[1:]
        if len(words) < args.min_words:
            dropped[f"fewer than {args.min_words} words"] += 1
        elif len(words) > args.max_words:
            dropped[f"more than {args.max_words} words"] += 1
        elif repeated[words] > 1:
            dropped["the same question opens another chat"] += 1
        elif not any(text.strip() for _, text in remainder):
            dropped["nothing stored after the question"] += 1
        else:
            kept.append(number)
    return kept, dict(dropped)


def phrase(words: Sequence[str]) -> str:
    return '"' + " ".join(words) + '"'


def or_query(words: Sequence[str]) -> str:
    """The question's distinct words as alternatives (tokens are folded to lower case, so none reads as OR)."""
    return " OR ".join(dict.fromkeys(words))


def sample_queries(
    manager: SessionManager, corpus: Corpus, candidates: list[int], count: int, dropped: dict[str, int]
) -> list[dict[str, Any]]:
    """``count`` queries drawn with a fixed seed; a question whose exact words appear in a stored
    message (its own chat's or another's) is skipped and counted."""
    order = list(candidates)
    random.Random(SEED).shuffle(order)
    by_chat: dict[str, list[str]] = {}
    for number in range(len(corpus)):
        by_chat.setdefault(chat_of(corpus.items[number].sharegpt_id)[0], []).append(corpus.conversation_id(number))
    queries = []
    leaked = 0
    for number in order:
        if len(queries) == count:
            break
        item = corpus.items[number]
        words = tokens(item.turns[0][1])
        if manager.search_conversations(phrase(words), limit=1):
            leaked += 1
            continue
        queries.append(
            {
                "number": number,
                "sharegpt_id": item.sharegpt_id,
                "text": item.turns[0][1],
                "words": len(words),
                "or_text": or_query(words),
                "own": corpus.conversation_id(number),
                "relevant": by_chat[chat_of(item.sharegpt_id)[0]],
            }
        )
    dropped["its words appear as a phrase in a stored message (among those drawn)"] = leaked
    return queries


# -- measuring --------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def spread(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p95 and mean in milliseconds."""
    return {
        "p50_ms": percentile(seconds, 0.5) * 1000,
        "p95_ms": percentile(seconds, 0.95) * 1000,
        "mean_ms": statistics.fmean(seconds) * 1000 if seconds else float("nan"),
        "count": len(seconds),
    }


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = call()
    return value, time.perf_counter() - started


def file_bytes(path: Path) -> int:
    """The database file after a checkpoint (plus whatever WAL is left)."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def table_bytes(path: Path, names: Sequence[str]) -> dict[str, int] | None:
    """Bytes of pages of each table or index (SQLite's dbstat; None where it is not compiled in)."""
    try:
        with sqlite3.connect(path) as db:
            marks = ",".join("?" * len(names))
            rows = db.execute(
                f"SELECT name, sum(pgsize) FROM dbstat WHERE name IN ({marks}) GROUP BY name", list(names)
            ).fetchall()
        db.close()
    except sqlite3.OperationalError:
        return None
    return {name: int(size) for name, size in rows}


def page_kinds(path: Path, name: str) -> dict[str, Any] | None:
    """The page size, and the pages of one table by kind (dbstat: internal, leaf, overflow), with their payload."""
    try:
        with sqlite3.connect(path) as db:
            (page_size,) = db.execute("PRAGMA page_size").fetchone()
            rows = db.execute(
                "SELECT pagetype, count(*), sum(pgsize), sum(payload), sum(unused) FROM dbstat WHERE name = ? "
                "GROUP BY pagetype",
                (name,),
            ).fetchall()
        db.close()
    except sqlite3.OperationalError:
        return None
    kinds = {
        kind: {"pages": pages, "bytes": size, "payload": payload, "unused": unused}
        for kind, pages, size, payload, unused in rows
    }
    return {"page_size": page_size, "kinds": kinds}


# -- the store under test: an SQLite file (the default) or a PostgreSQL schema (--url) ----------


class StoreTimer:
    """Time spent in the store's ``pending_embeddings`` and ``store_embeddings`` (wrapped on the instance),
    apart from the embedder's: on PostgreSQL ``store_embeddings`` holds the HNSW index's inserts."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.seconds = {"pending_embeddings": 0.0, "store_embeddings": 0.0}
        self.calls = {"pending_embeddings": 0, "store_embeddings": 0}
        self.first_store_seconds: float | None = None
        for name in self.seconds:
            setattr(store, name, self._wrapped(name, getattr(store, name)))

    def _wrapped(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            value, took = timed(lambda: method(*args, **kwargs))
            self.seconds[name] += took
            self.calls[name] += 1
            if name == "store_embeddings" and self.first_store_seconds is None:
                self.first_store_seconds = took
            return value

        return call

    def restore(self) -> None:
        for name in self.seconds:
            delattr(self.store, name)

    def snapshot(self) -> dict[str, float]:
        return dict(self.seconds)


class SqliteTarget:
    """One new SQLite file in a temporary folder of ``--db-dir``."""

    kind = "sqlite"

    def __init__(self, args: argparse.Namespace) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="qv-retrieval-", dir=args.db_dir))
        self.path = self.folder / "retrieval.db"
        self.describe = f"SQLite {sqlite3.sqlite_version} in {args.db_dir}"

    def open(self) -> SessionManager:
        return SessionManager(self.path, embedder=EMBEDDER)

    def storage_bytes(self) -> int:
        return file_bytes(self.path)

    def index_sizes(self) -> dict[str, Any]:
        return {
            "table_bytes": table_bytes(self.path, ["message_vectors", "message_vectors_by_message"]),
            "vector_pages": page_kinds(self.path, "message_vectors"),
        }

    def floor(self, space: VectorSpace) -> Floor:
        with sqlite3.connect(self.path) as db:
            rows = db.execute(
                """SELECT c.id, v.vector FROM message_vectors v JOIN messages m ON m.pk = v.message_pk
                   JOIN conversations c ON c.pk = m.conversation_pk
                   WHERE v.space = ? AND m.content <> '' ORDER BY c.pk, m.position""",
                (space.key,),
            ).fetchall()
        db.close()
        matrix = numpy.frombuffer(b"".join(row[1] for row in rows), dtype="<f4").reshape(len(rows), -1).copy()
        return Floor([row[0] for row in rows], matrix)

    def diagnose(
        self, manager: SessionManager, space: VectorSpace, vector: Sequence[float], repeats: int
    ) -> dict[str, Any]:
        return {"steps": diagnose(self.path, space, vector, repeats)}

    def prepare(self, args: argparse.Namespace) -> dict[str, Any]:
        return {}

    def after(self, manager: SessionManager, space: VectorSpace, args: argparse.Namespace) -> dict[str, Any]:
        return {}

    def cleanup(self, keep: bool) -> None:
        if keep:
            print(f"database kept: {self.path}")
        else:
            shutil.rmtree(self.folder, ignore_errors=True)


class Recording:
    """A cursor that keeps every statement run through it (to time and explain a search's SQL apart)."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.statements: list[tuple[str, Any]] = []

    def execute(self, sql: str, params: Any = None) -> Any:
        self.statements.append((sql, params))
        return self.cursor.execute(sql, params)


class PostgresTarget:
    """A fresh schema on the server of ``--url`` (dropped at the end unless ``--keep-db``).

    The store is opened as the library opens a URL (``SessionManager(url=..., schema=...)``);
    the benchmark's own SQL (sizes, the floor's vectors, the steps run apart, the index
    rebuilds) goes through a separate psycopg connection to the same database.
    """

    kind = "postgres"

    def __init__(self, args: argparse.Namespace, stamp: str) -> None:
        import psycopg

        from qv_session_manager.redact import mask_url
        from qv_session_manager_postgres import split_url

        self.psycopg = psycopg
        self.url = args.url
        self.conninfo, options = split_url(args.url)
        if "schema" in options:
            sys.exit("--url must not name a schema: each run makes a fresh one (and drops it unless --keep-db)")
        self.schema = f"qv_retrieval_{stamp}_{os.getpid()}"
        self.quoted = '"' + self.schema + '"'
        with self.connect() as connection:
            (version,) = connection.execute("SHOW server_version").fetchone()
        self.describe = f"PostgreSQL {version.split()[0]} at {mask_url(self.conninfo)}, schema {self.schema}"
        self.store: Any = None

    def connect(self) -> Any:
        return self.psycopg.connect(self.conninfo, autocommit=True)

    def open(self) -> SessionManager:
        manager = SessionManager(url=self.url, embedder=EMBEDDER, schema=self.schema)
        self.store = manager.store
        print(f"  store: vector layout {self.store.vector_layout}, searches {self.store.vectors}", flush=True)
        return manager

    def storage_bytes(self) -> int:
        """Every relation of the schema, with its indexes and TOAST."""
        with self.connect() as connection:
            (size,) = connection.execute(
                """SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'""",
                (self.schema,),
            ).fetchone()
        return int(size)

    def index_sizes(self) -> dict[str, Any]:
        """``qv_message_vectors``: its heap, TOAST and each index (pg_relation_size), with the index's method."""
        table = f"{self.quoted}.qv_message_vectors"
        with self.connect() as connection:
            heap, toast, rows = connection.execute(
                """SELECT pg_relation_size(t.oid),
                          CASE WHEN t.reltoastrelid = 0 THEN 0 ELSE pg_total_relation_size(t.reltoastrelid) END,
                          t.reltuples FROM pg_class t WHERE t.oid = %s::regclass""",
                (table,),
            ).fetchone()
            indexes = connection.execute(
                """SELECT i.relname, am.amname, pg_relation_size(i.oid) FROM pg_index x
                   JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam
                   WHERE x.indrelid = %s::regclass ORDER BY i.relname""",
                (table,),
            ).fetchall()
        return {
            "vector_table": {"heap_bytes": int(heap), "toast_bytes": int(toast), "reltuples": float(rows)},
            "vector_indexes": [{"name": name, "method": method, "bytes": int(size)} for name, method, size in indexes],
        }

    def hnsw_index(self) -> str | None:
        for index in self.index_sizes()["vector_indexes"]:
            if index["method"] == "hnsw":
                return str(index["name"])
        return None

    def _vector_column(self, connection: Any) -> str:
        """The stored vector as packed float32 bytes: pgvector's ``vector_send`` (big-endian, after a
        4-byte header) or the bytea layout's little-endian values."""
        if self.store.vector_layout != "pgvector":
            return "v.embedding"
        (extension_schema,) = connection.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'vector'"
        ).fetchone()
        return f'"{extension_schema}".vector_send(v.embedding)'

    def floor(self, space: VectorSpace) -> Floor:
        """The space's vectors read once by SQL (as the library reads them: live conversations, messages with text)."""
        with self.connect() as connection:
            column = self._vector_column(connection)
            rows = connection.execute(
                f"""SELECT c.id, {column} FROM {self.quoted}.qv_message_vectors v
                    JOIN {self.quoted}.qv_messages m ON m.pk = v.message_pk
                    JOIN {self.quoted}.qv_conversations c ON c.pk = m.conversation_pk
                    WHERE v.space = %s COLLATE "C" AND m.content <> '' ORDER BY c.pk, m.position""",
                (space.key,),
            ).fetchall()
        if self.store.vector_layout == "pgvector":
            joined = b"".join(bytes(row[1])[4:] for row in rows)
            matrix = numpy.frombuffer(joined, dtype=">f4").astype("<f4").reshape(len(rows), space.dimension)
        else:
            joined = b"".join(bytes(row[1]) for row in rows)
            matrix = numpy.frombuffer(joined, dtype="<f4").reshape(len(rows), space.dimension).copy()
        return Floor([row[0] for row in rows], matrix)

    def diagnose(
        self, manager: SessionManager, space: VectorSpace, vector: Sequence[float], repeats: int
    ) -> dict[str, Any]:
        """A pgvector search's vector step (``VectorSql.nearest``) on a connection of its own: the whole
        step, each of its statements alone, and their plans (EXPLAIN ANALYZE, BUFFERS) for one word.

        Reaches into the plugin (``_vectors``, ``_where``): the statements are the library's own.
        """
        from qv_session_manager_postgres.store import _TIME_FIELDS

        store = self.store
        sql = store._vectors
        where, params = store._where(ConversationFilter())
        key = _TIME_FIELDS["updated_at"]
        assert manager.embedder is not None
        seconds: dict[str, list[float]] = {}
        rounds: list[int] = []
        deep_rounds: list[int] = []
        plans: dict[str, str] = {}
        with self.psycopg.connect(self.conninfo) as connection:
            column = self._vector_column(connection)
            whole = f"""SELECT {column} FROM {self.quoted}.qv_message_vectors v WHERE v.space = %s COLLATE "C" """
            settings = "SELECT set_config('hnsw.ef_search', %s, true)"
            if sql._iterative:
                settings += ", set_config('hnsw.iterative_scan', 'relaxed_order', true)"
            for turn in range(repeats):
                for word in WORDS:
                    (query,) = manager.embedder.embed_queries([word])
                    cursor = Recording(connection.cursor())
                    if sql.mode != "pgvector":
                        _, took = timed(
                            lambda query=query, cursor=cursor: sql.exact(cursor, space, query, where, params, key)
                        )
                        seconds.setdefault("the exact step (every vector of the space, ranked)", []).append(took)
                        connection.rollback()
                        continue
                    _, took = timed(
                        lambda query=query, cursor=cursor: sql.nearest(cursor, space, query, where, params, key, TOP)
                    )
                    connection.rollback()
                    seconds.setdefault("nearest(): the whole vector step (its SQL + exact re-rank)", []).append(took)
                    fetches = [(s, p) for s, p in cursor.statements if "ORDER BY distance" in s]
                    rounds.append(len(fetches))
                    first_fetch, rerank = fetches[0], cursor.statements[2]
                    deep = Recording(connection.cursor())  # what a hybrid search asks: FUSION_DEPTH conversations
                    _, took = timed(
                        lambda query=query, deep=deep: sql.nearest(deep, space, query, where, params, key, FUSION_DEPTH)
                    )
                    connection.rollback()
                    seconds.setdefault(f"nearest() of {FUSION_DEPTH} conversations (the hybrid's depth)", []).append(
                        took
                    )
                    deep_rounds.append(sum("ORDER BY distance" in s for s, _ in deep.statements))
                    for name, (statement, values), ef in (
                        (f"sql: the {first_fetch[1]['fetch']} nearest messages (ef_search 1000)", first_fetch, "1000"),
                        (f"sql: the {first_fetch[1]['fetch']} nearest messages (ef_search 40)", first_fetch, "40"),
                        ("sql: every vector of the fetched messages' conversations", rerank, "1000"),
                    ):
                        connection.execute(settings, (ef,)).fetchall()
                        _, took = timed(
                            lambda statement=statement, values=values: connection.execute(statement, values).fetchall()
                        )
                        connection.rollback()
                        seconds.setdefault(name, []).append(took)
                        if turn == 0 and word == WORDS[0]:
                            connection.execute(settings, (ef,)).fetchall()
                            plan = connection.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, values).fetchall()
                            connection.rollback()
                            plans[name] = re.sub(
                                r"'\[[^\]]{100,}\]'", "'[the query vector]'", "\n".join(r[0] for r in plan)
                            )
            for _ in range(repeats):
                _, took = timed(lambda: connection.execute(whole, (space.key,)).fetchall())
                connection.rollback()
                seconds.setdefault("sql: every vector of the space (what the exact mode reads)", []).append(took)
        with self.connect() as connection:
            stats = connection.execute(
                """SELECT n_live_tup, last_analyze, last_autoanalyze FROM pg_stat_user_tables
                   WHERE schemaname = %s AND relname = 'qv_message_vectors'""",
                (self.schema,),
            ).fetchone()
        return {
            "steps": {name: spread(values) for name, values in seconds.items()},
            "fetch_rounds": {"p50": percentile(rounds, 0.5), "max": max(rounds, default=0), "searches": len(rounds)},
            "fetch_rounds_hybrid_depth": {"p50": percentile(deep_rounds, 0.5), "max": max(deep_rounds, default=0)},
            "plans": plans,
            "vector_table_stats": None if stats is None else [str(value) for value in stats],
        }

    def prepare(self, args: argparse.Namespace) -> dict[str, Any]:
        """After the build: ANALYZE the schema's tables (unless --no-analyze), as autovacuum would in time.

        Without statistics the planner guesses, e.g. a sequential scan of every message in
        the re-rank of a pgvector search; the server's ``autovacuum`` setting is recorded.
        """
        with self.connect() as connection:
            (autovacuum,) = connection.execute("SHOW autovacuum").fetchone()
            took = None
            if args.analyze:
                tables = connection.execute(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname",
                    (self.schema,),
                ).fetchall()
                started = time.perf_counter()
                for (table,) in tables:
                    connection.execute(f'ANALYZE {self.quoted}."{table}"')
                took = time.perf_counter() - started
                print(f"  ANALYZE of the schema's tables in {took:.1f} s (server autovacuum: {autovacuum})", flush=True)
        return {"autovacuum": autovacuum, "analyze_seconds": took}

    def after(self, manager: SessionManager, space: VectorSpace, args: argparse.Namespace) -> dict[str, Any]:
        """The HNSW index built in one go over the stored vectors (REINDEX), against the inserts one by one."""
        index = self.hnsw_index()
        if index is None or not args.rebuild_mem:
            return {}
        rebuilds = []
        with self.connect() as connection:
            notices: list[str] = []
            connection.add_notice_handler(lambda diagnostic: notices.append(str(diagnostic.message_primary)))
            (workers,) = connection.execute("SHOW max_parallel_maintenance_workers").fetchone()
            for memory in args.rebuild_mem:
                notices.clear()
                if memory != "default":
                    connection.execute(f"SET maintenance_work_mem = '{memory}'")
                (used,) = connection.execute("SHOW maintenance_work_mem").fetchone()
                _, took = timed(lambda: connection.execute(f"REINDEX INDEX {self.quoted}.{index}"))
                (size,) = connection.execute(
                    "SELECT pg_relation_size(%s::regclass)", (f"{self.quoted}.{index}",)
                ).fetchone()
                rebuilds.append(
                    {
                        "maintenance_work_mem": used,
                        "parallel_workers_allowed": int(workers),
                        "seconds": took,
                        "index_bytes": int(size),
                        "notices": list(notices),
                    }
                )
                print(f"  REINDEX of the HNSW index, maintenance_work_mem {used}: {took:.1f} s {notices}", flush=True)
                connection.execute("RESET maintenance_work_mem")
        return {"hnsw_rebuilds": rebuilds}

    def cleanup(self, keep: bool) -> None:
        if keep:
            print(f"schema kept: {self.schema} ({self.describe})")
            return
        try:
            with self.connect() as connection:
                connection.execute(f"DROP SCHEMA IF EXISTS {self.quoted} CASCADE")
        except self.psycopg.Error as exc:
            print(f"could not drop schema {self.schema}: {exc}", file=sys.stderr)


class Floor:
    """The same float32 vectors as one matrix in memory, ranked with numpy only.

    ``ids`` names each row's conversation, the rows of a conversation together (as the
    store reads them: by conversation, then message position).
    """

    def __init__(self, ids: Sequence[str], matrix: numpy.ndarray) -> None:
        self.matrix = matrix
        firsts = [i for i in range(len(ids)) if i == 0 or ids[i - 1] != ids[i]]
        self.starts = numpy.asarray(firsts, dtype=numpy.intp)
        self.ids = [ids[i] for i in firsts]

    def top(self, vector: Sequence[float], count: int) -> list[tuple[str, float]]:
        """The ``count`` conversations whose best message is most similar, best first, with that similarity."""
        scores = self.matrix @ numpy.asarray(vector, dtype=numpy.float32)
        best = numpy.maximum.reduceat(scores, self.starts)
        count = min(count, len(best))
        chosen = numpy.argpartition(-best, count - 1)[:count]
        chosen = chosen[numpy.argsort(-best[chosen], kind="stable")]
        return [(self.ids[i], float(best[i])) for i in chosen]


class Searches:
    """Every ranking of the benchmark over one manager, each giving (conversation id, score) best first."""

    def __init__(self, manager: SessionManager, floor: Floor | None) -> None:
        self.manager = manager
        self.store: Any = manager.store
        assert manager.embedder is not None
        self.embedder = manager.embedder
        self.space = VectorSpace.of(self.embedder)
        self.filter = ConversationFilter()
        self.floor = floor
        self.fallbacks: Counter[str] = Counter()

    def library(self, text: str, mode: str) -> list[tuple[str, float]]:
        if mode == "text":
            found = self.manager.search_conversations(text, order="relevance", limit=TOP)
        else:
            found = self.manager.search_conversations(text, mode=mode, limit=TOP)
            if found.fallback is not None:
                self.fallbacks[found.fallback] += 1
        return [(item["id"], item["score"]) for item in found]

    def hybrid_or(self, text: str, alternatives: str) -> list[tuple[str, float]]:
        """meaning_search's hybrid with the OR-ed words as the text ranking (the question itself is embedded)."""
        (vector,) = self.embedder.embed_queries([text])
        depth = max(FUSION_DEPTH, TOP)
        rankings = [
            self.store.search(parse(alternatives), self.filter, order="relevance", limit=depth),
            self.store.vector_search(self.space, vector, self.filter, limit=depth),
        ]
        return [(hit.conversation.id, hit.score or 0.0) for hit in fuse(rankings, self.filter.field)[:TOP]]

    def floor_with_embedding(self, text: str) -> list[tuple[str, float]]:
        assert self.floor is not None
        (vector,) = self.embedder.embed_queries([text])
        return self.floor.top(vector, TOP)

    def run(self, mode: str, query: dict[str, Any]) -> list[tuple[str, float]]:
        text = query["text"]
        if mode == "text_or":
            return self.library(query["or_text"], "text")
        if mode == "hybrid_or":
            return self.hybrid_or(text, query["or_text"])
        if mode == "floor_embed":
            return self.floor_with_embedding(text)
        return self.library(text, mode)


def rotated(modes: Sequence[str], turn: int) -> list[str]:
    shift = turn % len(modes)
    return [*modes[shift:], *modes[:shift]]


def evaluate(searches: Searches, queries: list[dict[str, Any]], budget: float | None = None) -> dict[str, Any]:
    """Every query in every mode (plus the floor), the order of modes rotating: quality and latency.

    With a ``budget`` (seconds), the queries stop after the one during which it ran out: the
    first ``evaluated`` queries of the fixed random order are the sample then.
    """
    started = time.perf_counter()
    modes = (*MODES, "floor_embed")
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    ranks: dict[str, list[int | None]] = {mode: [] for mode in modes}
    own_ranks: dict[str, list[int | None]] = {mode: [] for mode in modes}
    answered: Counter[str] = Counter()
    agree = 0
    for turn, query in enumerate(queries):
        found: dict[str, list[tuple[str, float]]] = {}
        for mode in rotated(modes, turn):
            found[mode], took = timed(lambda mode=mode, query=query: searches.run(mode, query))
            seconds[mode].append(took)
        relevant = set(query["relevant"])
        for mode in modes:
            ids = [ident for ident, _ in found[mode]]
            answered[mode] += bool(ids)
            ranks[mode].append(next((i for i, ident in enumerate(ids, 1) if ident in relevant), None))
            own_ranks[mode].append(next((i for i, ident in enumerate(ids, 1) if ident == query["own"]), None))
        agree += same_scores(found["floor_embed"][:CUTOFF], found["semantic"][:CUTOFF])
        spent = time.perf_counter() - started
        if (turn + 1) % 50 == 0:
            print(f"    {turn + 1} queries in {spent:.0f} s", flush=True)
        if budget is not None and spent > budget and turn + 1 < len(queries):
            print(f"    the evaluation's budget of {budget:.0f} s ran out after {turn + 1} queries", flush=True)
            queries = queries[: turn + 1]
            break
    quality = {}
    for mode in modes:
        quality[mode] = {
            **scores(ranks[mode], len(queries)),
            "own_part_only": scores(own_ranks[mode], len(queries)),
            "answered": answered[mode] / len(queries),
        }
    return {
        "quality": quality,
        "latency": {mode: spread(seconds[mode]) for mode in modes},
        "floor_matches_semantic_top10": agree / len(queries),
        "ranks": ranks,
        "evaluated": len(queries),
    }


def same_scores(floor: list[tuple[str, float]], library: list[tuple[str, float]]) -> bool:
    """Whether two rankings hold the same similarities (float32 against float64: to 1e-5), ties in any order."""
    return len(floor) == len(library) and all(abs(a[1] - b[1]) <= 1e-5 for a, b in zip(floor, library))


def scores(ranks: Sequence[int | None], count: int) -> dict[str, float]:
    within = [rank for rank in ranks if rank is not None and rank <= CUTOFF]
    return {
        "recall@10": len(within) / count,
        "mrr@10": sum(1 / rank for rank in within) / count,
        "recall@20": sum(rank is not None for rank in ranks) / count,
    }


def word_latency(searches: Searches, repeats: int) -> dict[str, Any]:
    """Top-20 searches for single common words: the three library modes, the floor, and a semantic search's stages."""
    modes = ("text", "semantic", "hybrid", "floor", "floor_embed")
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    stages: dict[str, list[float]] = {"embedding_counts": [], "embed_queries": [], "vector_search": []}
    store, space, embedder, floor = searches.store, searches.space, searches.embedder, searches.floor
    assert floor is not None
    for mode in ("text", "semantic", "hybrid"):  # warm-up, untimed
        searches.library(WORDS[0], mode)
    turn = 0
    for _ in range(repeats):
        for word in WORDS:
            (vector,) = embedder.embed_queries([word])
            calls: dict[str, Callable[[], Any]] = {
                "text": lambda word=word: searches.library(word, "text"),
                "semantic": lambda word=word: searches.library(word, "semantic"),
                "hybrid": lambda word=word: searches.library(word, "hybrid"),
                "floor": lambda vector=vector: floor.top(vector, TOP),
                "floor_embed": lambda word=word: searches.floor_with_embedding(word),
            }
            for mode in rotated(modes, turn):
                seconds[mode].append(timed(calls[mode])[1])
            stages["embedding_counts"].append(timed(lambda: store.embedding_counts(space))[1])
            stages["embed_queries"].append(timed(lambda word=word: embedder.embed_queries([word]))[1])
            stages["vector_search"].append(
                timed(lambda vector=vector: store.vector_search(space, vector, searches.filter, limit=TOP))[1]
            )
            turn += 1
    return {
        "latency": {mode: spread(seconds[mode]) for mode in modes},
        "semantic_stages": {stage: spread(values) for stage, values in stages.items()},
    }


def profile(searches: Searches, count: int) -> dict[str, str]:
    """cProfile of ``count`` semantic top-20 searches (single words), by own time and by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for word in WORDS[:count]:
        searches.library(word, "semantic")
    profiler.disable()
    texts = {}
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(key).print_stats(14)
        texts[key] = out.getvalue()
    return texts


#: The vector rows a semantic search reads, with and without the test of the message's content
#: (written here to time the steps apart; the library's query also applies the conversation filter).
_JOINED = """SELECT c.pk, c.updated_key, c.id, m.id, m.pk, v.vector
    FROM message_vectors v JOIN messages m ON m.pk = v.message_pk JOIN conversations c ON c.pk = m.conversation_pk
    WHERE v.space = :space {test} ORDER BY c.pk, m.position, m.pk"""
DIAGNOSIS = {
    "sql: the space's vector blobs alone": "SELECT vector FROM message_vectors WHERE space = :space",
    "sql: every message's content <> '' (count)": "SELECT count(*) FROM messages WHERE content <> ''",
    "sql: vector rows joined, no content test": _JOINED.format(test=""),
    "sql: vector rows joined, with content <> ''": _JOINED.format(test="AND m.content <> ''"),
}


def diagnose(path: Path, space: VectorSpace, vector: Sequence[float], repeats: int) -> dict[str, dict[str, float]]:
    """Where a semantic search's time goes: its steps run apart, each ``repeats`` times (a separate connection)."""
    seconds: dict[str, list[float]] = {}
    with sqlite3.connect(path) as db:
        for _ in range(repeats):
            for name, sql in DIAGNOSIS.items():
                rows, took = timed(lambda sql=sql: db.execute(sql, {"space": space.key}).fetchall())
                seconds.setdefault(name, []).append(took)
            blobs = [row[5] for row in rows]
            scored, took = timed(lambda blobs=blobs: similarities(blobs, vector, space.dimension))
            seconds.setdefault("python: similarities() (join, float64, matrix product, list)", []).append(took)
            triples = (((row[0], row[1], row[2]), (row[3], row[4]), score) for row, score in zip(rows, scored))
            best, took = timed(lambda triples=triples: best_per_conversation(triples))
            seconds.setdefault("python: best_per_conversation()", []).append(took)
            items = [(key, score) for key, (_, score) in best.items()]
            _, took = timed(lambda items=items: ranked(items, lambda i: i[1], lambda i: i[0][1], lambda i: i[0][2]))
            seconds.setdefault("python: ranked() of the conversations", []).append(took)
    db.close()
    return {name: spread(values) for name, values in seconds.items()}


# -- building the store -----------------------------------------------------------------


def build(manager: SessionManager, corpus: Corpus, target: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Store and embed the corpus; time both (the store's own part of the embedding apart) and measure the index."""
    stored_messages = sum(len(item.turns) - opens_chat(corpus, n) for n, item in enumerate(corpus.items))
    conversations = (stored_conversation(corpus, number) for number in range(len(corpus)))
    saved, save_seconds = timed(lambda: manager.save_many(conversations, batch_size=500))
    print(f"  saved in {save_seconds:.1f} s", flush=True)
    before = target.storage_bytes()
    chunks = []
    space = VectorSpace.of(manager.embedder)
    pending = manager.store.embedding_counts(space)[1]
    tail = args.default_batch_tail
    timer = StoreTimer(manager.store)
    try:
        while pending:
            # The last ``tail`` messages go in the library's default batches, timed on their own.
            batch, limit = (DEFAULT_BATCH, pending) if pending <= tail else (args.embed_batch, args.embed_chunk)
            if pending > tail > 0:
                limit = min(limit, pending - tail)
            was = timer.snapshot()
            progress, took = timed(
                lambda batch=batch, limit=limit: manager.index_embeddings(limit=limit, batch_size=batch)
            )
            now = timer.snapshot()
            chunk = {"embedded": progress.embedded, "seconds": took, "pending": progress.pending, "batch_size": batch}
            chunk.update({f"{name}_seconds": now[name] - was[name] for name in now})
            chunks.append(chunk)
            print(
                f"  embedded {progress.embedded} in {took:.1f} s ({progress.embedded / took:,.0f} msgs/s, "
                f"batches of {batch}; store_embeddings {chunk['store_embeddings_seconds']:.1f} s, "
                f"pending_embeddings {chunk['pending_embeddings_seconds']:.1f} s), {progress.pending} pending",
                flush=True,
            )
            pending = progress.pending
            if progress.embedded == 0:
                break
    finally:
        timer.restore()
    embedded = sum(chunk["embedded"] for chunk in chunks)
    embed_seconds = sum(chunk["seconds"] for chunk in chunks)
    after = target.storage_bytes()
    store_seconds = timer.seconds["store_embeddings"]
    return {
        "conversations_saved": saved,
        "messages_stored": stored_messages,
        "save_many_seconds": save_seconds,
        "embedded": embedded,
        "embed_seconds": embed_seconds,
        "embed_msgs_per_s": embedded / embed_seconds if embed_seconds else None,
        "embed_chunks": chunks,
        "embed_batch_size": args.embed_batch,
        "store_embeddings_seconds": store_seconds,
        "store_embeddings_calls": timer.calls["store_embeddings"],
        "store_embeddings_ms_per_vector": store_seconds * 1000 / embedded if embedded else None,
        "first_store_embeddings_seconds": timer.first_store_seconds,
        "pending_embeddings_seconds": timer.seconds["pending_embeddings"],
        "file_bytes_before_vectors": before,
        "file_bytes_after_vectors": after,
        **target.index_sizes(),
        "raw_vector_bytes": embedded * space.dimension * 4,
    }


def embedder_alone(manager: SessionManager, corpus: Corpus, sample: int, batch: int) -> dict[str, Any]:
    """The embedder's own throughput on the first ``sample`` stored message texts (no store)."""
    texts: list[str] = []
    for number, item in enumerate(corpus.items):
        texts += [text for _, text in item.turns[opens_chat(corpus, number) :] if text]
        if len(texts) >= sample:
            break
    texts = texts[:sample]
    assert manager.embedder is not None
    embed = manager.embedder.embed
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        embed(texts[start : start + batch])
    took = time.perf_counter() - started
    return {"messages": len(texts), "seconds": took, "msgs_per_s": len(texts) / took if took else None}


# -- reporting ---------------------------------------------------------------------------


def markdown(data: dict[str, Any]) -> str:
    build_data, quality, latency = data["build"], data["evaluation"]["quality"], data["evaluation"]["latency"]
    words = data["words"]
    corpus = data["corpus_summary"]
    lines = [
        f"Retrieval: {corpus['conversations']:,} conversations ({build_data['messages_stored']:,} messages "
        f"stored), {data['query_count']} queries (seed {SEED}), top {TOP}, {data['store']}",
        "",
        "| ranking | recall@10 | MRR@10 | recall@20 | own part only: recall@10 | answered | top-20 p50 ms | p95 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode in (*MODES, "floor_embed"):
        q, t = quality[mode], latency[mode]
        lines.append(
            f"| {LABELS[mode]} | {q['recall@10']:.3f} | {q['mrr@10']:.3f} | {q['recall@20']:.3f} | "
            f"{q['own_part_only']['recall@10']:.3f} | {q['answered']:.0%} | {t['p50_ms']:.1f} | {t['p95_ms']:.1f} |"
        )
    wl, stages = words["latency"], words["semantic_stages"]
    lines += [
        "",
        f"Top-20 latency, {len(WORDS)} single words x {data['arguments']['word_repeats']} "
        f"(run.py's QUERIES), modes rotating:",
        "",
        "| search | p50 ms | p95 ms |",
        "| --- | ---: | ---: |",
    ]
    for mode in ("text", "semantic", "hybrid", "floor", "floor_embed"):
        lines.append(f"| {LABELS[mode]} | {wl[mode]['p50_ms']:.2f} | {wl[mode]['p95_ms']:.2f} |")
    for stage, values in stages.items():
        lines.append(f"| semantic stage: `{stage}` | {values['p50_ms']:.2f} | {values['p95_ms']:.2f} |")
    diagnosis = data["diagnosis"]
    lines += ["", "| a semantic search's steps, run apart | p50 ms | p95 ms |", "| --- | ---: | ---: |"]
    lines += [
        f"| {name} | {values['p50_ms']:.1f} | {values['p95_ms']:.1f} |" for name, values in diagnosis["steps"].items()
    ]
    if diagnosis.get("fetch_rounds"):
        rounds = diagnosis["fetch_rounds"]
        lines.append(f"| ordered fetches per search (`nearest`), p50 / max | {rounds['p50']} / {rounds['max']} | |")
        deep = diagnosis["fetch_rounds_hybrid_depth"]
        lines.append(f"| the same for {FUSION_DEPTH} conversations, p50 / max | {deep['p50']} / {deep['max']} | |")
    goals = data["goals"]
    lines += [
        "",
        f"The floor's top-10 similarities equal the semantic search's for "
        f"{data['evaluation']['floor_matches_semantic_top10']:.1%} of the questions.",
        "",
        "| goal | measured | verdict |",
        "| --- | ---: | --- |",
        f"| hybrid top-20 p50 <= 2x text top-20 p50 (single words) | {goals['hybrid_vs_text']:.1f}x | "
        f"{'MET' if goals['hybrid_vs_text'] <= 2 else 'MISSED'} |",
        f"| the same on the evaluation questions | {goals['hybrid_vs_text_questions']:.1f}x | "
        f"{'MET' if goals['hybrid_vs_text_questions'] <= 2 else 'MISSED'} |",
        f"| vector part (`vector_search` p50) <= 1.3x the numpy floor p50 | {goals['vector_vs_floor']:.1f}x | "
        f"{'MET' if goals['vector_vs_floor'] <= 1.3 else 'MISSED'} |",
        "",
        "| build | value |",
        "| --- | ---: |",
        f"| `save_many` | {build_data['save_many_seconds']:.1f} s |",
    ]
    if build_data.get("embed_seconds"):
        growth = build_data["file_bytes_after_vectors"] - build_data["file_bytes_before_vectors"]
        lines += [
            f"| `index_embeddings` (batch {build_data['embed_batch_size']}) | {build_data['embedded']:,} messages in "
            f"{build_data['embed_seconds']:.1f} s = {build_data['embed_msgs_per_s']:,.0f} msgs/s |",
            *chunk_lines(build_data),
            *store_time_lines(build_data),
            f"| the embedder alone (`embed`, no store) | {data['embedder_alone']['msgs_per_s']:,.0f} msgs/s |",
            *size_lines(build_data),
            *page_lines(build_data.get("vector_pages")),
            *rebuild_lines(data.get("after", {})),
            *analyze_lines(build_data.get("prepared") or {}),
            f"| raw float32 payload | {build_data['raw_vector_bytes'] / 2**20:.1f} MB |",
            f"| {'file' if data['backend'] == 'sqlite' else 'schema'} growth | {growth / 2**20:.1f} MB ({build_data['file_bytes_before_vectors'] / 2**20:.1f} -> "
            f"{build_data['file_bytes_after_vectors'] / 2**20:.1f} MB) |",
        ]
    lines += compare_lines(data)
    return "\n".join(lines)


def store_time_lines(build_data: dict[str, Any]) -> list[str]:
    """The store's share of index_embeddings (on PostgreSQL: the HNSW index's inserts are in store_embeddings)."""
    if build_data.get("store_embeddings_ms_per_vector") is None:
        return []
    hnsw = any(index["method"] == "hnsw" for index in build_data.get("vector_indexes", []))
    return [
        f"| of which `store_embeddings` (the writes{', HNSW inserts' if hnsw else ''}) | "
        f"{build_data['store_embeddings_seconds']:.1f} s in {build_data['store_embeddings_calls']:,} calls = "
        f"{build_data['store_embeddings_ms_per_vector']:.2f} ms per vector |",
        f"| of which `pending_embeddings` (finding the next batch) | {build_data['pending_embeddings_seconds']:.1f} s |",
    ]


def size_lines(build_data: dict[str, Any]) -> list[str]:
    """The vectors' table and indexes: dbstat on SQLite, pg_relation_size on PostgreSQL."""
    if "vector_table" in build_data:
        table = build_data["vector_table"]
        indexes = ", ".join(
            f"{index['method']} `{index['name']}` {index['bytes'] / 2**20:.1f} MB"
            for index in build_data["vector_indexes"]
        )
        return [
            f"| `qv_message_vectors` heap + TOAST (pg_relation_size) | {table['heap_bytes'] / 2**20:.1f} MB + "
            f"{table['toast_bytes'] / 2**20:.1f} MB |",
            f"| its indexes | {indexes} |",
        ]
    tables = build_data.get("table_bytes") or {}
    return [
        f"| `message_vectors` table + its index (dbstat) | {tables.get('message_vectors', 0) / 2**20:.1f} MB + "
        f"{tables.get('message_vectors_by_message', 0) / 2**20:.1f} MB |"
    ]


def analyze_lines(prepared: dict[str, Any]) -> list[str]:
    if "autovacuum" not in prepared:
        return []
    done = "not run (--no-analyze)" if prepared["analyze_seconds"] is None else f"{prepared['analyze_seconds']:.1f} s"
    return [f"| ANALYZE after the build (server autovacuum: {prepared['autovacuum']}) | {done} |"]


def rebuild_lines(after: dict[str, Any]) -> list[str]:
    return [
        f"| the HNSW index rebuilt in one go (REINDEX, maintenance_work_mem {rebuild['maintenance_work_mem']}, "
        f"up to {rebuild['parallel_workers_allowed']} parallel workers) | {rebuild['seconds']:.1f} s, "
        f"{rebuild['index_bytes'] / 2**20:.1f} MB |"
        for rebuild in after.get("hnsw_rebuilds", [])
    ]


#: The rows of the comparison with another run (--compare): (label, section, mode).
COMPARED = [
    ("questions: text", "evaluation", "text"),
    ("questions: text, OR-ed", "evaluation", "text_or"),
    ("questions: semantic", "evaluation", "semantic"),
    ("questions: hybrid", "evaluation", "hybrid"),
    ("questions: hybrid, OR-ed", "evaluation", "hybrid_or"),
    ("single words: text", "words", "text"),
    ("single words: semantic", "words", "semantic"),
    ("single words: hybrid", "words", "hybrid"),
]


def compared_latency(data: dict[str, Any], section: str, mode: str) -> dict[str, float]:
    return data[section]["latency"][mode]


def compare_lines(data: dict[str, Any]) -> list[str]:
    """This run's top-20 latencies next to another run's (--compare), e.g. PostgreSQL against SQLite."""
    other = data.get("compared")
    if not other:
        return []
    lines = [
        "",
        f"Against {other['file']} ({other['store']}, {other['conversations']:,} conversations, "
        f"{other['query_count']} queries); goal: PostgreSQL semantic and hybrid p50 within 3x of SQLite:",
        "",
        "| top-20 search | this p50 ms | other p50 ms | ratio | this p95 ms | other p95 ms | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, section, mode in COMPARED:
        mine, theirs = compared_latency(data, section, mode), other["latency"][f"{section}:{mode}"]
        lines.append(
            f"| {label} | {mine['p50_ms']:.1f} | {theirs['p50_ms']:.1f} | {mine['p50_ms'] / theirs['p50_ms']:.1f}x | "
            f"{mine['p95_ms']:.1f} | {theirs['p95_ms']:.1f} | {mine['p95_ms'] / theirs['p95_ms']:.1f}x |"
        )
    return lines


def load_compared(path: Path) -> dict[str, Any]:
    """What --compare needs of another run's results JSON."""
    other = json.loads(path.read_text(encoding="utf-8"))
    return {
        "file": str(path),
        "store": other.get("store", f"SQLite in {other.get('db_dir')}"),
        "conversations": other["corpus_summary"]["conversations"],
        "query_count": other["query_count"],
        "latency": {f"{section}:{mode}": compared_latency(other, section, mode) for _, section, mode in COMPARED},
    }


def chunk_lines(build_data: dict[str, Any]) -> list[str]:
    """Each timed index_embeddings call: messages/s, so a slowdown as the store fills shows."""
    rates = ", ".join(
        f"{chunk['embedded'] / chunk['seconds']:,.0f} (batch {chunk.get('batch_size', build_data['embed_batch_size'])})"
        for chunk in build_data["embed_chunks"]
        if chunk["seconds"]
    )
    return [f"| each `index_embeddings` call, msgs/s in order | {rates} |"]


def page_lines(pages: dict[str, Any] | None) -> list[str]:
    if not pages:
        return []
    kinds = ", ".join(
        f"{kind}: {numbers['pages']:,} pages, {numbers['payload'] / 2**20:.1f} MB payload"
        for kind, numbers in sorted(pages["kinds"].items())
    )
    return [f"| `message_vectors` pages of {pages['page_size']:,} bytes | {kinds} |"]


# -- the run -----------------------------------------------------------------------------


def find_corpus(given: Path | None) -> Path:
    if given is not None:
        return given.resolve()
    cached = sorted((CACHE_DIR / "sharegpt").rglob("*.json"), key=lambda path: path.stat().st_size)
    if not cached:
        sys.exit(f"no ShareGPT corpus under {CACHE_DIR / 'sharegpt'}: run benchmarks/run.py once, or pass --corpus")
    return cached[-1]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 conversations, 40 queries")
    parser.add_argument("--conversations", help="the first N ShareGPT conversations, or all (default 3000)")
    parser.add_argument("--queries", type=int, help="queries sampled (default 300)")
    parser.add_argument("--min-words", type=int, default=4, help="shortest question kept, in words (default 4)")
    parser.add_argument("--max-words", type=int, default=64, help="longest question kept, in words (default 64)")
    parser.add_argument("--word-repeats", type=int, help="rounds of the single-word latency queries (default 5)")
    parser.add_argument("--profile-searches", type=int, help="semantic searches profiled (default 5)")
    parser.add_argument("--embedder-sample", type=int, help="messages embedded without the store (default 5000)")
    parser.add_argument(
        "--embed-batch", type=int, default=DEFAULT_BATCH, help=f"index_embeddings batch_size (default {DEFAULT_BATCH})"
    )
    parser.add_argument(
        "--default-batch-tail",
        type=int,
        default=0,
        help=f"embed the last N messages in batches of {DEFAULT_BATCH} (the default), timed apart (default 0)",
    )
    parser.add_argument("--embed-chunk", type=int, default=8192, help="messages per timed index_embeddings call")
    parser.add_argument("--corpus", type=Path, help="a ShareGPT-shaped JSON file instead of the cached corpus")
    parser.add_argument("--db-dir", type=Path, default=Path("/tmp"), help="where the SQLite file goes (default /tmp)")
    parser.add_argument(
        "--url",
        help="a PostgreSQL store URL (postgresql://host/db, no schema): build and evaluate in a fresh schema there",
    )
    parser.add_argument(
        "--rebuild-mem",
        nargs="*",
        default=["default", "1GB"],
        help="PostgreSQL: after the searches, REINDEX the HNSW index once per maintenance_work_mem given "
        "('default': the server's), timed (default: default 1GB; none: skip)",
    )
    parser.add_argument(
        "--eval-budget", type=float, help="seconds for the queries: stop after the one that runs past it (default none)"
    )
    parser.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="PostgreSQL: leave the tables unanalyzed after the build (default: ANALYZE them, as autovacuum would)",
    )
    parser.add_argument("--compare", type=Path, help="another run's results JSON: its latencies next to this run's")
    parser.add_argument("--keep-db", action="store_true", help="keep the SQLite file (or the PostgreSQL schema)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results JSON goes")
    args = parser.parse_args(argv)
    defaults = {"conversations": "3000", "queries": 300, "word_repeats": 5, "profile_searches": 5}
    defaults["embedder_sample"] = 5000
    for name, value in (QUICK if args.quick else defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    started = time.perf_counter()
    started_at = datetime.now()
    args = parse_args(argv)
    corpus_path = find_corpus(args.corpus)
    count = None if args.conversations == "all" else int(args.conversations)
    corpus = Corpus(str(corpus_path), count)
    print(f"corpus: {corpus.summary()}; load average {os.getloadavg()[0]:.2f}", flush=True)
    compared = load_compared(args.compare) if args.compare else None
    target: Any = PostgresTarget(args, started_at.strftime("%Y%m%d_%H%M%S")) if args.url else SqliteTarget(args)
    print(f"store: {target.describe}", flush=True)
    try:
        manager = target.open()
        build_data = build(manager, corpus, target, args)
        build_data["prepared"] = target.prepare(args)
        candidates, dropped = candidate_queries(corpus, args)
        queries = sample_queries(manager, corpus, candidates, args.queries, dropped)
        if not queries:
            sys.exit("no query survived the filters")
        print(f"queries: {len(queries)} of {len(candidates)} candidates; dropped: {dropped}", flush=True)
        assert manager.embedder is not None
        space = VectorSpace.of(manager.embedder)
        floor, took = timed(lambda: target.floor(space))
        print(f"  the floor's matrix of {len(floor.matrix):,} vectors read in {took:.1f} s", flush=True)
        searches = Searches(manager, floor)
        gc.collect()
        gc.freeze()
        evaluation, took = timed(lambda: evaluate(searches, queries, args.eval_budget))
        queries = queries[: evaluation["evaluated"]]
        print(f"  evaluated in {took:.0f} s", flush=True)
        words, took = timed(lambda: word_latency(searches, args.word_repeats))
        print(f"  single-word latencies in {took:.0f} s", flush=True)
        profiled = profile(searches, args.profile_searches)
        (vector,) = manager.embedder.embed_queries([WORDS[0]])
        diagnosis, took = timed(lambda: target.diagnose(manager, space, vector, args.word_repeats))
        print(f"  steps run apart in {took:.0f} s", flush=True)
        alone = embedder_alone(manager, corpus, args.embedder_sample, args.embed_batch)
        after = target.after(manager, space, args)
        manager.close()
    finally:
        target.cleanup(args.keep_db)
    wl = words["latency"]
    data = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "corpus": str(corpus_path),
        "corpus_summary": corpus.summary(),
        "db_dir": str(args.db_dir),
        "backend": target.kind,
        "store": target.describe,
        "schema": getattr(target, "schema", None),
        "embedder": EMBEDDER,
        "candidates": len(candidates),
        "dropped": dropped,
        "query_count": len(queries),
        "query_words": {"p50": percentile([q["words"] for q in queries], 0.5), "max": max(q["words"] for q in queries)},
        "queries_with_split_siblings": sum(len(q["relevant"]) > 1 for q in queries),
        "queries": [{k: q[k] for k in ("sharegpt_id", "text", "words", "relevant")} for q in queries],
        "build": build_data,
        "embedder_alone": alone,
        "evaluation": evaluation,
        "words": words,
        "fallbacks": dict(searches.fallbacks),
        "goals": {
            "hybrid_vs_text": wl["hybrid"]["p50_ms"] / wl["text"]["p50_ms"],
            "vector_vs_floor": words["semantic_stages"]["vector_search"]["p50_ms"] / wl["floor"]["p50_ms"],
            "hybrid_vs_text_questions": evaluation["latency"]["hybrid"]["p50_ms"]
            / evaluation["latency"]["text"]["p50_ms"],
        },
        "profile": profiled,
        "diagnosis": diagnosis,
        "after": after,
        "compared": compared,
        "load_average_end": os.getloadavg()[0],
    }
    data["wall_seconds"] = time.perf_counter() - started
    table = markdown(data)
    data["markdown"] = table
    print("\n" + table + "\n")
    print("cProfile of semantic searches, by own time:\n" + profiled["tottime"])
    for name, plan in diagnosis.get("plans", {}).items():
        print(f"EXPLAIN (ANALYZE, BUFFERS) of {name} ({WORDS[0]!r}):\n{plan}\n")
    if searches.fallbacks:
        print(f"fallbacks to text: {dict(searches.fallbacks)}")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    output = args.results_dir / f"retrieval-{started_at.strftime('%Y%m%d-%H%M%S')}.json"
    output.write_text(json.dumps(data, indent=2), encoding="utf-8")
    print(f"results written to {output}; whole run {data['wall_seconds']:.0f} s, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
