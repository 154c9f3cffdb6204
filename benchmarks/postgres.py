"""PostgreSQL next to SQLite: the same workloads of worker.py, through SessionManager.

    python benchmarks/postgres.py --conversations 3000

Needs the PostgreSQL plugin installed (``pip install -e plugins/qv-session-manager-postgres``)
and a server at QV_SESSION_MANAGER_POSTGRES_URL (default
``postgresql://postgres@127.0.0.1:5432/test``); the run's schemas are dropped at the end.
Prints medians of both backends from one run and their ratio.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import run

ROWS = [
    ("append (add_messages), live chat", "live_chat_append"),
    ("save_conversation(conv, all), live chat", "live_chat_save"),
    ("load", "load"),
    ("search, all hits", "search_all"),
    ("search, top 20 by relevance + snippets", "search_top20"),
    ("list a page of 20", "list_page"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=3000)
    parser.add_argument("--load-count", type=int, default=500)
    parser.add_argument("--live-sample", type=int, default=200)
    parser.add_argument("--long-turns", type=int, default=200)
    args = parser.parse_args()
    args.seed_queries = 0
    corpus = run.ensure_corpus(run.ensure_seed_venv())
    run.check_ours()
    db_dir = Path(tempfile.mkdtemp(prefix="qvsm-bench-pg-", dir="/tmp"))
    try:
        results = {system: run.run_worker(system, Path(sys.executable), corpus, db_dir, args)
                   for system in ("ours", "postgres")}
    finally:
        shutil.rmtree(db_dir, ignore_errors=True)
    stats = results["ours"]["corpus"]
    print(f"\n{stats['conversations']} ShareGPT conversations, {stats['messages']} messages; medians in ms (p95)")
    print(f"{'workload':<42} {'SQLite':>16} {'PostgreSQL':>16} {'PG/SQLite':>10}")
    for label, key in ROWS:
        sqlite, postgres = results["ours"][key], results["postgres"][key]
        print(f"{label:<42} {sqlite['median_ms']:>7.3f} ({sqlite['p95_ms']:>6.2f}) "
              f"{postgres['median_ms']:>7.3f} ({postgres['p95_ms']:>6.2f}) "
              f"{postgres['median_ms'] / sqlite['median_ms']:>10.2f}")


if __name__ == "__main__":
    main()
