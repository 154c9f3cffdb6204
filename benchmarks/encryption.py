"""The cost of encryption at rest: plain SQLite, SQLCipher whole-file, field-level EncryptedStore.

Run it with the python where this project is installed with its ``[test]`` extra
(``sqlcipher3`` and ``cryptography``)::

    python benchmarks/encryption.py                     # first 3000 ShareGPT conversations
    python benchmarks/encryption.py --conversations 500 --appends 100 --rounds 1   # quicker

Three stores hold the same conversations (the corpus of ``run.py``, installed into
``benchmarks/.cache/sharegpt`` on first use), each through ``SessionManager``:

- ``plain``: ``SQLiteStore`` (the default backend);
- ``sqlcipher``: ``SQLiteStore(key=<32 random bytes>)``, the whole file encrypted;
- ``field-level``: ``EncryptedStore`` (AES-GCM per field) over a plain ``SQLiteStore``.

All three are open at once and every measurement is interleaved (one operation on
each store in turn), so a change of machine load during the run hits them alike.
Timed, as medians:

- append-save: ``add_messages(id, [one message])`` to a stored conversation, one
  durable commit (``synchronous=FULL``) each;
- search top 20: ``search_conversations(q, limit=20, order="relevance", snippets=True)``;
- search all hits: ``search_conversations(q)``;
- open: opening the filled store (SQLCipher also with a passphrase, whose PBKDF2
  derivation runs at every open).

Ratios are against ``plain`` in the same run. The table is printed and written to
``benchmarks/results/<timestamp>-encryption.json`` with every raw number.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from qv_ollama_sdk.domain.models import Message, MessageRole

from qv_session_manager import SessionManager
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.encryption import EncryptedStore

from corpus import Corpus
from run import QUERIES, REPO_DIR, RESULTS_DIR, ensure_corpus
from worker import file_size, progress, summarize, timed

SYSTEMS = ("plain", "sqlcipher", "field-level")
PASSPHRASE = "correct horse battery staple"


def open_manager(system: str, path: str, keys: dict) -> SessionManager:
    if system == "plain":
        return SessionManager(store=SQLiteStore(path))
    if system == "sqlcipher":
        return SessionManager(store=SQLiteStore(path, key=keys["sqlcipher"]))
    return SessionManager(store=EncryptedStore(SQLiteStore(path), keys["field-level"], current="k1"))


def interleaved(operations: list[Callable[[str], object]], systems: tuple[str, ...]) -> dict[str, list[float]]:
    """Run each operation on every system in turn (a fresh random order each time); seconds per system."""
    times: dict[str, list[float]] = {system: [] for system in systems}
    shuffler = random.Random(7)
    for operation in operations:
        order = list(systems)
        shuffler.shuffle(order)
        for system in order:
            seconds, _ = timed(operation, system)
            times[system].append(seconds)
    return times


def fill(managers: dict[str, SessionManager], corpus: Corpus) -> dict[str, float]:
    """save_many of the whole corpus into each store (timed, for information)."""
    seconds = {}
    for system, manager in managers.items():
        progress(system, f"saving {len(corpus)} conversations")
        seconds[system], _ = timed(manager.save_many, iter(corpus), batch_size=200)
    return seconds


def bench_appends(managers: dict[str, SessionManager], corpus: Corpus, count: int) -> dict[str, list[float]]:
    """One new message appended to a random stored conversation, ``count`` times per store."""
    pick = random.Random(11)
    ids = corpus.ids()
    texts = corpus.texts(count)
    moment = datetime(2030, 1, 1)
    operations = []
    for n in range(count):
        conversation_id = ids[pick.randrange(len(ids))]
        # The same Message object goes to every store: each stores its own copy.
        message = Message(role=MessageRole.USER, content=texts[n], created_at=moment + timedelta(seconds=n))
        operations.append(lambda system, c=conversation_id, m=message: managers[system].add_messages(c, [m]))
    return interleaved(operations, tuple(managers))


def bench_search(
    managers: dict[str, SessionManager], queries: list[str], rounds: int, **options: object
) -> dict[str, list[float]]:
    """Each query ``rounds`` times on every store."""
    for manager in managers.values():
        manager.search_conversations(queries[0], **options)  # warm-up, untimed
    operations = [
        lambda system, q=query: managers[system].search_conversations(q, **options)
        for _ in range(rounds)
        for query in queries
    ]
    return interleaved(operations, tuple(managers))


def same_hits(managers: dict[str, SessionManager], queries: list[str]) -> dict[str, int]:
    """Hits of each query, checked to be the same in every store (they hold the same data)."""
    hits = {}
    for query in queries:
        found = {
            system: sorted(h["id"] for h in manager.search_conversations(query)) for system, manager in managers.items()
        }
        if len({tuple(ids) for ids in found.values()}) != 1:
            sys.exit(f"the stores disagree on {query!r}: {[len(ids) for ids in found.values()]} hits")
        hits[query] = len(found["plain"])
    return hits


def bench_open(paths: dict[str, str], keys: dict, repeats: int) -> dict[str, list[float]]:
    """Open and close each filled store ``repeats`` times (SQLCipher with its raw key)."""

    def open_and_close(system: str) -> None:
        open_manager(system, paths[system], keys).close()

    return interleaved([open_and_close] * repeats, tuple(paths))


def bench_passphrase_open(directory: Path, repeats: int) -> list[float]:
    """Opening a small passphrase-keyed file: the cost of SQLCipher's key derivation."""
    path = directory / "passphrase.db"
    SQLiteStore(path, key=PASSPHRASE).close()
    return [timed(lambda: SQLiteStore(path, key=PASSPHRASE).close())[0] for _ in range(repeats)]


def table_rows(results: dict) -> list[tuple[str, dict[str, float | None]]]:
    medians = {
        name: {system: summary["median_ms"] for system, summary in per_system.items()}
        for name, per_system in results["workloads"].items()
    }
    return list(medians.items())


def print_table(results: dict) -> None:
    header = f"{'workload (median ms)':<34}" + "".join(f"{system:>24}" for system in SYSTEMS)
    print(header)
    print("-" * len(header))
    for name, medians in table_rows(results):
        plain = medians.get("plain")
        cells = []
        for system in SYSTEMS:
            value = medians.get(system)
            if value is None:
                cells.append(f"{'-':>24}")
                continue
            ratio = "" if system == "plain" or not plain else f" ({value / plain:.2f}x)"
            cells.append(f"{value:>14.3f}{ratio:>10}")
        print(f"{name:<34}" + "".join(cells))
    print()
    print(f"open with a passphrase (SQLCipher, PBKDF2): {results['passphrase_open']['median_ms']:.1f} ms median")
    sizes = ", ".join(f"{system} {results['sizes'][system]['total_bytes'] / 2**20:.1f} MB" for system in SYSTEMS)
    print(f"database size (file + WAL): {sizes}")
    corpus = results["corpus"]
    print(
        f"corpus: {corpus['conversations']} conversations, {corpus['messages']} messages; "
        f"load average at start {results['load_average_at_start'][0]:.1f}"
    )
    fills = ", ".join(f"{system} {seconds:.1f} s" for system, seconds in results["fill_seconds"].items())
    print(f"filling with save_many: {fills}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=3000, help="ShareGPT conversations to store")
    parser.add_argument("--appends", type=int, default=300, help="append-saves per store")
    parser.add_argument("--rounds", type=int, default=3, help="times each of the 20 search words is searched")
    parser.add_argument("--opens", type=int, default=20, help="opens per store")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    corpus_file = ensure_corpus(Path(sys.executable))
    corpus = Corpus(str(corpus_file), args.conversations)
    keys = {"sqlcipher": os.urandom(32), "field-level": {"k1": os.urandom(32)}}
    results: dict = {
        "corpus": corpus.summary(),
        "appends": args.appends,
        "rounds": args.rounds,
        "queries": QUERIES,
        "load_average_at_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="qv-encryption-bench-") as folder:
        directory = Path(folder)
        paths = {system: str(directory / f"{system}.db") for system in SYSTEMS}
        managers = {system: open_manager(system, paths[system], keys) for system in SYSTEMS}
        try:
            results["fill_seconds"] = fill(managers, corpus)
            gc.collect()
            progress("all", f"{args.appends} append-saves per store")
            workloads = {"append-save (add_messages, 1 msg)": bench_appends(managers, corpus, args.appends)}
            progress("all", "search, top 20 with snippets")
            workloads["search, top 20 + snippets"] = bench_search(
                managers, QUERIES, args.rounds, limit=20, order="relevance", snippets=True
            )
            progress("all", "search, all hits")
            workloads["search, all hits"] = bench_search(managers, QUERIES, args.rounds)
            results["hits"] = same_hits(managers, QUERIES)
        finally:
            for manager in managers.values():
                manager.close()
        results["sizes"] = {system: file_size(path) for system, path in paths.items()}
        progress("all", "opening")
        workloads["open + close"] = bench_open(paths, keys, args.opens)
        results["passphrase_open"] = summarize(bench_passphrase_open(directory, max(5, args.opens // 4)))
    results["workloads"] = {
        name: {system: summarize(seconds) for system, seconds in per_system.items()}
        for name, per_system in workloads.items()
    }
    results["ratios_to_plain"] = {
        name: {
            system: summary["median_ms"] / per_system["plain"]["median_ms"] for system, summary in per_system.items()
        }
        for name, per_system in results["workloads"].items()
    }
    results["python"] = sys.version.split()[0]
    print_table(results)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    target = RESULTS_DIR / f"{datetime.now():%Y%m%d-%H%M%S}-encryption.json"
    target.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {target.relative_to(REPO_DIR)}")


if __name__ == "__main__":
    main()
