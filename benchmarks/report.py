"""The tables run.py prints, and the goals of the seed API judged MET or MISSED.

Every ratio here is a time ratio, ours ÷ the other's: for per-second rows the
inverse of the rates, for ms rows the ms. Above 1 means ours takes longer.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

NAMES = {
    "seed": "0.3.0",
    "ours": "ours",
    "ours_embedding": "ours+embedder",
    "inline": "floor inline",
    "batched": "floor batched",
    "openai": "OpenAI",
    "postgres": "postgres",
}
Paths = dict[str, tuple[str, ...]]


def paths(systems: str, *path: str) -> Paths:
    """The same result path for the named systems (comma-separated)."""
    return {system: path for system in systems.split(",")}


@dataclass(frozen=True)
class Goal:
    """A seed-API goal from issue 14: ours against ``reference`` within ``limit``.

    reference: "batched" (the batched floor), "floor" (the faster of the two floors:
    they do the same work there), "self" (the row's own value for ours, already a
    ratio), "proportional" (close after N deletes against close after N/5) or
    "postgres" (the PostgreSQL plugin against ours, i.e. SQLite, on the same data).
    """

    reference: str
    limit: float

    def describe(self) -> str:
        if self.reference == "self":
            return f"<= {self.limit:g}"
        if self.reference == "proportional":
            return "∝ N"
        if self.reference == "postgres":
            return f"PG <= {self.limit:g}x ours"
        return f"<= {self.limit:g}x {'batched' if self.reference == 'batched' else 'floor'}"


@dataclass(frozen=True)
class Row:
    """One row of a table: a workload, its unit and where each system's value is."""

    label: str
    unit: str
    higher_is_better: bool
    where: Paths
    goal: Goal | None = None


ALL_SEED_API = "seed,ours,ours_embedding,inline,batched,postgres"
SAVE = "seed,ours,ours_embedding,postgres,inline,batched,openai"  # the floors and OpenAI append the newest message
APPEND = "ours,ours_embedding,postgres,inline,batched,openai"

#: The seed-API rows; the floors and SQLiteSession append the newest message where ours saves all.
SEED_ROWS = [
    Row(
        "bulk: save_conversation per conversation",
        "msgs/s",
        True,
        {
            **paths(ALL_SEED_API, "bulk_save", "messages_per_second"),
            **paths("openai", "bulk_save", "messages_per_second"),
        },
        Goal("batched", 1.25),
    ),
    Row("live chat: save_conversation(conv, all)", "saves/s", True, paths(SAVE, "live_chat_save", "saves_per_second")),
    Row(
        "live chat: save_conversation(conv, all)",
        "median ms",
        False,
        paths(SAVE, "live_chat_save", "median_ms"),
        Goal("batched", 1.5),
    ),
    Row("live chat: add_messages", "saves/s", True, paths(APPEND, "live_chat_append", "saves_per_second")),
    Row(
        "live chat: add_messages",
        "median ms",
        False,
        paths(APPEND, "live_chat_append", "median_ms"),
        Goal("batched", 1.5),
    ),
]
for _way, _label, _systems in (("save", "save_conversation", SAVE), ("append", "add_messages", APPEND)):
    _where = paths(_systems, f"long_chat_{_way}")
    SEED_ROWS += [
        Row(
            f"long chat: {_label}, first turns",
            "median ms",
            False,
            {s: (*p, "first", "median_ms") for s, p in _where.items()},
        ),
        Row(
            f"long chat: {_label}, turns 30-40%",
            "median ms",
            False,
            {s: (*p, "middle", "median_ms") for s, p in _where.items()},
        ),
        Row(
            f"long chat: {_label}, last turns",
            "median ms",
            False,
            {s: (*p, "last", "median_ms") for s, p in _where.items()},
            Goal("batched", 1.5),
        ),
        Row(
            f"long chat: {_label}, last ÷ first",
            "ratio",
            False,
            {s: (*p, "last_over_first") for s, p in _where.items()},
            Goal("self", 1.3),
        ),
    ]
SEED_ROWS += [
    Row(
        "load_conversation",
        "median ms",
        False,
        paths(ALL_SEED_API + ",openai", "load", "median_ms"),
        Goal("floor", 1.5),
    ),
    Row(
        "search_conversations(q), all hits",
        "median ms",
        False,
        paths(ALL_SEED_API, "search_all", "median_ms"),
        Goal("floor", 2.0),
    ),
    Row("list_conversations()", "median ms", False, paths(ALL_SEED_API, "list_all", "median_ms"), Goal("floor", 1.1)),
    Row(
        "search_by_time, one-day window",
        "median ms",
        False,
        paths(ALL_SEED_API, "time_search", "median_ms"),
        Goal("floor", 1.3),
    ),
    Row(
        "delete_conversation",
        "median ms",
        False,
        paths(ALL_SEED_API + ",openai", "delete", "median_ms"),
        Goal("floor", 1.25),
    ),
    Row(
        "close() after N/5 deletes",
        "ms",
        False,
        paths("ours,ours_embedding,inline,batched,postgres", "delete", "close_after_few_ms"),
    ),
    Row(
        "close() after N deletes",
        "ms",
        False,
        paths("ours,ours_embedding,inline,batched,postgres", "delete", "close_after_many_ms"),
        Goal("proportional", 4.0),
    ),
]
#: The PostgreSQL plugin within 3x of SQLite on the same data (disk regime only).
SEED_ROWS += [
    Row(f"postgres: {label}", "median ms", False, paths("ours,postgres", section, "median_ms"), Goal("postgres", 3.0))
    for label, section in (
        ("search_conversations(q), all hits", "search_all"),
        ("list_conversations()", "list_all"),
        ("search_by_time, one-day window", "time_search"),
    )
]

RICH = "ours,inline,batched,postgres"
RICH_ROWS = [
    Row("search, top 20 by relevance + snippets", "median ms", False, paths(RICH, "search_top20", "median_ms")),
    Row("search, top 20 by relevance + snippets", "p95 ms", False, paths(RICH, "search_top20", "p95_ms")),
    Row("list a page of 20 at depth, limit/offset", "median ms", False, paths(RICH, "list_page_offset", "median_ms")),
    Row("list a page of 20 at depth, keyset after=", "median ms", False, paths(RICH, "list_page_keyset", "median_ms")),
    Row("save_many, batches of 500", "msgs/s", True, paths(RICH, "save_many", "messages_per_second")),
    Row(
        "export: iter_conversations -> JSON lines",
        "msgs/s",
        True,
        paths("ours,postgres", "export", "messages_per_second"),
    ),
    Row(
        "export: iter_conversations -> JSON lines",
        "peak RSS MB",
        False,
        paths("ours,postgres", "export", "peak_rss_mb"),
    ),
    Row("import: JSON lines -> save_many", "msgs/s", True, paths("ours,postgres", "import", "messages_per_second")),
    Row("import: JSON lines -> save_many", "peak RSS MB", False, paths("ours,postgres", "import", "peak_rss_mb")),
    Row("load_conversation", "p95 ms", False, paths(RICH + ",seed,openai", "load", "p95_ms")),
    Row("search_conversations(q), all hits", "p95 ms", False, paths(RICH + ",seed", "search_all", "p95_ms")),
    Row("delete_conversation", "p95 ms", False, paths(RICH + ",seed,openai", "delete", "p95_ms")),
    Row("database size (corpus only)", "MB", False, paths(RICH + ",seed,openai", "file_size", "total_bytes")),
    Row("whole worker (incl. the corpus in memory)", "peak RSS MB", False, paths(RICH + ",seed,openai", "peak_rss_mb")),
]

#: "Save-path speed unchanged with an embedder attached": ours_embedding ÷ ours, per seed-API row.
EMBEDDING_LIMIT = 1.10
#: The rows judged against that limit: medians (and bulk's msgs/s), which have a value per round.
EMBEDDING_JUDGED_UNITS = ("median ms", "msgs/s")
#: Where a row's per-round values are, next to its value (their spread is the row's noise).
ROUND_VALUES = {"median_ms": "round_medians_ms", "messages_per_second": "round_rates"}

# -- numbers ----------------------------------------------------------------------


def lookup(result: dict | None, path: tuple[str, ...]) -> float | None:
    """The number at ``path`` in one system's results, or None."""
    value: object = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number / 1e6 if path[-1] == "total_bytes" else number


def time_ratio(ours: float | None, other: float | None, higher_is_better: bool) -> float | None:
    """ours' time ÷ the other's: the inverse ratio of rates, the ratio of ms."""
    if not ours or not other:
        return None
    return other / ours if higher_is_better else ours / other


def row_values(row: Row, results: dict) -> dict[str, float | None]:
    return {system: lookup(results.get(system), path) for system, path in row.where.items()}


def judge(row: Row, values: dict[str, float | None]) -> tuple[float | None, bool | None]:
    """The ratio the goal is judged on, and whether it is met (None: not measurable here)."""
    goal, ours = row.goal, values.get("ours")
    if goal is None or ours is None:
        return None, None
    if goal.reference == "self":
        return ours, ours <= goal.limit
    if goal.reference == "postgres":
        ratio = time_ratio(values.get("postgres"), ours, row.higher_is_better)
        return ratio, None if ratio is None else ratio <= goal.limit
    if goal.reference == "batched":
        ratio = time_ratio(ours, values.get("batched"), row.higher_is_better)
        return ratio, None if ratio is None else ratio <= goal.limit
    if goal.reference == "floor":
        floors = [v for v in (values.get("inline"), values.get("batched")) if v]
        ratio = time_ratio(ours, min(floors), row.higher_is_better) if floors else None
        return ratio, None if ratio is None else ratio <= goal.limit
    return None, None  # "proportional" needs two rows: see judge_close


def judge_close(results: dict) -> tuple[float | None, bool | None]:
    """close() after N deletes ∝ N: the part above a plain close grows ~5x from N/5 to N deletes.

    A plain close is the faster floor's close after N deletes. Met when ours' close
    after N is within 1.25x of that (nothing left to grow), or when its excess over
    it after N deletes is >= 4x (5 ÷ 1.25) its excess after N/5. Returns that growth.
    """
    ours = results.get("ours", {}).get("delete", {})
    floors = [results[f]["delete"]["close_after_many_ms"] for f in ("inline", "batched") if f in results]
    few, many = ours.get("close_after_few_ms"), ours.get("close_after_many_ms")
    if few is None or many is None or not floors:
        return None, None
    plain = min(floors)
    if many <= 1.25 * plain:
        return many / plain, True
    growth = (many - plain) / max(few - plain, 1e-6)
    return growth, growth >= 4.0


def round_spread(row: Row, result: dict | None) -> tuple[float, float] | None:
    """ours' own rounds of a row, as time ratios to the row's value: (the fastest round, the slowest)."""
    path = row.where.get("ours")
    if path is None or path[-1] not in ROUND_VALUES:
        return None
    value = lookup(result, path)
    rounds: object = result
    for key in (*path[:-1], ROUND_VALUES[path[-1]]):
        rounds = rounds.get(key) if isinstance(rounds, dict) else None
    if not value or not isinstance(rounds, list) or len(rounds) < 2:
        return None
    ratios = [r / value if not row.higher_is_better else value / r for r in rounds if r]
    return (min(ratios), max(ratios)) if ratios else None


def embedding_table(results: dict) -> list[dict]:
    """Every seed-API row of ours with and without the background embedder: ratio, ours' rounds, verdict.

    Judged (<= EMBEDDING_LIMIT) where the row is a median or bulk's rate; not judged when
    the embedder embedded nothing in this run (then nothing competed with the saves).
    """
    worked = bool(results.get("ours_embedding", {}).get("embedding", {}).get("texts_embedded"))
    table = []
    for row in SEED_ROWS:
        if "ours_embedding" not in row.where or row.unit == "ratio":
            continue
        values = row_values(row, results)
        ours, embedding = values.get("ours"), values.get("ours_embedding")
        ratio = time_ratio(embedding, ours, row.higher_is_better)
        judged = row.unit in EMBEDDING_JUDGED_UNITS
        met = None if ratio is None or not worked else ratio <= EMBEDDING_LIMIT
        table.append(
            {
                "workload": f"embedder attached: {row.label}",
                "unit": row.unit,
                "values": {"ours": ours, "ours_embedding": embedding},
                "ours_rounds": round_spread(row, results.get("ours")),
                "goal": f"<= {EMBEDDING_LIMIT:g}x ours" if judged else "",
                "goal_ratio": ratio,
                "verdict": verdict_text(met) if judged else "",
            }
        )
    return table


def print_embedding_table(table: list[dict], results: dict) -> None:
    header = [
        "workload",
        "unit",
        "ours",
        "ours+embedder",
        "ours+embedder/ours",
        "ours' rounds / ours",
        "goal",
        "verdict",
    ]
    lines = []
    for entry in table:
        spread = entry["ours_rounds"]
        lines.append(
            [
                entry["workload"].removeprefix("embedder attached: "),
                entry["unit"],
                number(entry["values"]["ours"]),
                number(entry["values"]["ours_embedding"]),
                number(entry["goal_ratio"]),
                f"{number(spread[0])}-{number(spread[1])}" if spread else "-",
                entry["goal"],
                entry["verdict"],
            ]
        )
    print_grid(header, lines)
    embedding = results.get("ours_embedding", {}).get("embedding", {})
    stores = embedding.get("stores", {})
    print(
        f"the background thread ({embedding.get('embedder', '?')}) embedded {embedding.get('texts_embedded', 0)} "
        f"messages in {embedding.get('embed_calls', 0)} calls ({embedding.get('embed_seconds', 0.0):.2f} s inside "
        f"embed); at the end {embedding.get('embedded', 0)} messages had a vector and {embedding.get('pending', 0)} "
        f"were pending (embedded / pending: "
        + "; ".join(f"{when} {c['embedded']} / {c['pending']}" for when, c in stores.items())
        + ")"
    )
    print(
        f"untimed between steps, the thread finished what each step left pending in "
        f"{embedding.get('drain_seconds', 0.0):.2f} s in all"
    )
    if embedding.get("drain_timeouts"):
        print(
            f"WARNING: the background thread did not finish within a step's pause {embedding['drain_timeouts']} times"
        )
    if embedding.get("park_timeouts"):
        print(f"WARNING: the background thread did not stop between steps {embedding['park_timeouts']} times")
    if not embedding.get("texts_embedded"):
        print(
            "WARNING: the background embedder embedded nothing in this run: nothing competed with ours+embedder's "
            "calls, so these rows say nothing about an embedder attached (not judged)"
        )


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


def verdict_text(met: bool | None) -> str:
    return {True: "MET", False: "MISSED", None: "n/a"}[met]


# -- tables ---------------------------------------------------------------------------


def print_grid(header: list[str], lines: list[list[str]], left: int = 2) -> None:
    """Columns padded to their widest cell; the first ``left`` columns left-aligned."""
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(line: list[str]) -> str:
        cells = [t.ljust(w) if i < left else t.rjust(w) for i, (t, w) in enumerate(zip(line, widths))]
        return "  ".join(cells).rstrip()

    print(render(header))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print(render(line))


def seed_table(results: dict, present: list[str]) -> list[dict]:
    """Every seed-API row: values, ratios of ours against each peer, goal and verdict."""
    table = []
    for row in SEED_ROWS:
        values = row_values(row, results)
        ratio, met = judge_close(results) if row.goal and row.goal.reference == "proportional" else judge(row, values)
        ours = values.get("ours")
        ratios = {
            other: time_ratio(ours, values.get(other), row.higher_is_better)
            for other in ("inline", "batched", "seed", "openai")
            if other in present
        }
        if row.unit == "ratio" or (row.goal and row.goal.reference == "postgres"):
            ratios = {}
        table.append(
            {
                "workload": row.label,
                "unit": row.unit,
                "values": values,
                "ratios": ratios,
                "goal": row.goal.describe() if row.goal else "",
                "goal_ratio": ratio,
                "verdict": verdict_text(met) if row.goal else "",
            }
        )
    return table


def print_seed_table(table: list[dict], present: list[str]) -> None:
    """The seed-API table (ours+embedder's column too; its ratios are in the embedder table)."""
    others = [o for o in ("inline", "batched", "seed", "openai") if o in present]
    header = [
        "workload",
        "unit",
        *[NAMES[s] for s in present],
        *[f"ours/{NAMES[o]}" for o in others],
        "goal",
        "judged",
        "verdict",
    ]
    lines = []
    for entry in table:
        lines.append(
            [
                entry["workload"],
                entry["unit"],
                *[number(entry["values"].get(s)) for s in present],
                *[number(entry["ratios"].get(o)) for o in others],
                entry["goal"],
                number(entry["goal_ratio"]) if entry["goal"] else "",
                entry["verdict"],
            ]
        )
    print_grid(header, lines)


def rich_table(results: dict, present: list[str]) -> list[dict]:
    table = []
    for row in RICH_ROWS:
        values = row_values(row, results)
        if not any(values.get(s) is not None for s in present):
            continue
        ours = values.get("ours")
        ratios = {
            other: time_ratio(ours, values.get(other), row.higher_is_better)
            for other in ("inline", "batched", "postgres")
            if other in present
        }
        table.append({"workload": row.label, "unit": row.unit, "values": values, "ratios": ratios})
    return table


def print_rich_table(table: list[dict], present: list[str]) -> None:
    systems = [s for s in present if any(e["values"].get(s) is not None for e in table)]
    others = [o for o in ("inline", "batched", "postgres") if o in present]
    header = ["workload", "unit", *[NAMES[s] for s in systems], *[f"ours/{NAMES[o]}" for o in others]]
    lines = [
        [
            e["workload"],
            e["unit"],
            *[number(e["values"].get(s)) for s in systems],
            *[number(e["ratios"].get(o)) for o in others],
        ]
        for e in table
    ]
    print_grid(header, lines)


def print_queries(results: dict, present: list[str], queries: list[str]) -> None:
    """Per query, each system's time and hits (all hits; top 20 for the richer API)."""
    sections = [(s, "search_all", NAMES[s]) for s in present if s != "openai"]
    sections += [(s, "search_top20", f"{NAMES[s]} top-20") for s in ("ours", "inline", "batched") if s in present]
    header = ["query", *[label for _, _, label in sections]]
    lines = []
    for query in queries:
        cells = [query]
        for system, section, _ in sections:
            found = results[system].get(section, {}).get("queries", {}).get(query)
            cells.append(f"{found['ms']:.2f} / {found['hits']}" if found else "-")
        lines.append(cells)
    totals = ["hits in all"]
    for system, section, _ in sections:
        totals.append(str(results[system].get(section, {}).get("hits", "-")))
    print_grid(header, [*lines, totals], left=1)


def print_header(outcome: dict, args: argparse.Namespace, corpus: Path) -> None:
    results = outcome["systems"]
    any_result = next(iter(results.values()))
    stats = any_result["corpus"]
    fsync = outcome["fsync"]
    print(
        f"\n=== {outcome['regime']} ({fsync['filesystem']} at {outcome['db_dir']}): fsync of a 4 KiB append "
        f"median {fsync['median_ms']:.3f} ms (p95 {fsync['p95_ms']:.3f}); load average "
        f"{outcome['load_average_before']} before, {outcome['load_average_after']} after ==="
    )
    print(
        f"corpus: {corpus.name}, {stats['conversations']} conversations, {stats['messages']} messages, "
        f"{stats['characters'] / 1e6:.1f} M characters; SQLite {any_result['sqlite_version']}"
    )
    live = results.get("ours", any_result).get("live_chat_save") or any_result.get("live_chat_append", {})
    print(
        f"{args.load_count} loads, {args.time_windows} time windows, {args.list_repeats} lists and pages, "
        f"{args.deletes} + {max(1, args.deletes // 5)} deletes, {args.live_sample} live chats "
        f"({live.get('n', '?')} saves), a {args.long_turns}-turn chat, {args.rounds} rounds"
    )
    for system, result in results.items():
        print(
            f"  {NAMES[system]:<13} {result.get('module_file', 'sqlite3 module')}  (busy {result['wall_seconds']:.0f}"
            f" s, RSS with the corpus {result['corpus_rss_mb']:.0f} MB)"
        )
    if outcome["failed_systems"]:
        print(f"  failed: {', '.join(outcome['failed_systems'])}")
    if outcome.get("floors_agree"):
        agree = outcome["floors_agree"]
        print(
            f"  both floors found the same hits for every query: {agree['search_all_hits']} (all hits), "
            f"{agree['search_top20_hits']} (top 20), {agree.get('hits_after_live', '?')} (all hits right after "
            f"the live chats)"
        )
        same = agree.get("ours_same_after_live")
        if same is not None:
            print(f"  ours right after the live chats: {'the same hits' if same else 'DIFFERENT hits'} as the floors")


def print_goal_summary(tables: dict[str, list[dict]]) -> list[dict]:
    """Every goal row of every regime side by side; returns them for the JSON."""
    regimes = list(tables)
    summary = []
    first = tables[regimes[0]]
    for index, entry in enumerate(first):
        if not entry["goal"]:
            continue
        cells = {r: tables[r][index] for r in regimes}
        summary.append(
            {
                "workload": entry["workload"],
                "unit": entry["unit"],
                "goal": entry["goal"],
                **{f"{r} ratio": cells[r]["goal_ratio"] for r in regimes},
                **{f"{r} verdict": cells[r]["verdict"] for r in regimes},
            }
        )
    header = ["workload", "unit", "goal", *[f"{r} judged" for r in regimes], *regimes]
    lines = [
        [
            s["workload"],
            s["unit"],
            s["goal"],
            *[number(s[f"{r} ratio"]) for r in regimes],
            *[s[f"{r} verdict"] for r in regimes],
        ]
        for s in summary
    ]
    attached = [s for s in summary if s["workload"].startswith("embedder attached: ")]
    also = " and with an embedder attached (ours+embedder ÷ ours)" if attached else ""
    print(f"\ngoals of the seed API (issue 14){also}, ours judged in each regime:")
    print_grid(header, lines, left=3)
    met = sum(s[f"{r} verdict"] == "MET" for s in summary for r in regimes)
    missed = sum(s[f"{r} verdict"] == "MISSED" for s in summary for r in regimes)
    print(f"{met} MET, {missed} MISSED", end="")
    if attached:
        attached_met = sum(s[f"{r} verdict"] == "MET" for s in attached for r in regimes)
        attached_missed = sum(s[f"{r} verdict"] == "MISSED" for s in attached for r in regimes)
        print(f" (of them with an embedder attached: {attached_met} MET, {attached_missed} MISSED)", end="")
    print()
    return summary


LEGEND = """\
ours/X: ours' time ÷ X's (rates inverted), so above 1 = ours slower. "judged": the ratio the goal is judged on
(against the batched floor, or against the faster of the two floors for reads and deletes; for "last ÷ first"
ours' own ratio; for close() the growth of its cost above a plain close from N/5 to N deletes, >= 4 = ∝ N).
The floors and OpenAI's SQLiteSession append only the newest message where ours and 0.3.0 save the whole
conversation: that is the floor for persisting one new message. "-": no such API (OpenAI has no search or list;
0.3.0 has no close, add_messages or richer API)."""


def print_report(regimes: dict, args: argparse.Namespace, corpus: Path, queries: list[str]) -> dict:
    """Print every table of every regime and the goal summary; returns what goes in the JSON."""
    seed_tables: dict[str, list[dict]] = {}
    rich_tables: dict[str, list[dict]] = {}
    embedding_tables: dict[str, list[dict]] = {}
    for regime, outcome in regimes.items():
        results = outcome["systems"]
        if not results:
            continue
        present = [s for s in NAMES if s in results]
        print_header(outcome, args, corpus)
        print(f"\nseed API, {regime}:")
        seed_tables[regime] = seed_table(results, present)
        print_seed_table(seed_tables[regime], present)
        if "ours_embedding" in results:
            print(
                f"\nseed API with an embedder attached, {regime}: ours+embedder = ours with embedder='wordllama', "
                "embed_in_background=True (its thread runs during ours+embedder's own steps only); "
                f"goal: median <= {EMBEDDING_LIMIT:g}x ours; \"ours' rounds\": ours' fastest and slowest round "
                "÷ ours' value (the noise):"
            )
            embedding_tables[regime] = embedding_table(results)
            print_embedding_table(embedding_tables[regime], results)
        print(f"\nricher API and the rest, {regime} (not judged; --compare shows changes against an earlier run):")
        rich_tables[regime] = rich_table(results, present)
        print_rich_table(rich_tables[regime], present)
        print(f"\nsearch per query, {regime} (ms / hits; 0.3.0 matches substrings with LIKE, also in titles):")
        print_queries(results, present, queries)
    print()
    print(LEGEND)
    goal_tables = dict(seed_tables)
    if embedding_tables:  # the same rows in every regime (n/a where ours+embedder did not run)
        for regime, results in ((r, o["systems"]) for r, o in regimes.items() if r in seed_tables):
            goal_tables[regime] = seed_tables[regime] + embedding_tables.get(regime, embedding_table(results))
    summary = print_goal_summary(goal_tables) if goal_tables else []
    if args.compare:
        print_comparison(
            {**{f"{r} seed": t for r, t in seed_tables.items()}, **{f"{r} rich": t for r, t in rich_tables.items()}},
            args.compare,
        )
    return {
        "summary": summary,
        "seed_tables": seed_tables,
        "rich_tables": rich_tables,
        "embedding_tables": embedding_tables,
    }


def print_comparison(tables: dict[str, list[dict]], path: Path) -> None:
    """Ours of this run next to ours of an earlier results JSON, row by row."""
    earlier = json.loads(path.read_text(encoding="utf-8")).get("goals", {})
    before_tables = {
        **{f"{r} seed": t for r, t in earlier.get("seed_tables", {}).items()},
        **{f"{r} rich": t for r, t in earlier.get("rich_tables", {}).items()},
    }
    lines = []
    for name, table in tables.items():
        before = {(e["workload"], e["unit"]): e["values"].get("ours") for e in before_tables.get(name, [])}
        for entry in table:
            then, now = before.get((entry["workload"], entry["unit"])), entry["values"].get("ours")
            if then is not None and now is not None:
                lines.append([name, entry["workload"], entry["unit"], number(then), number(now), number(now / then)])
    print(f"\nours in this run next to ours in {path.name}:")
    print_grid(["table", "workload", "unit", "earlier", "this run", "this/earlier"], lines, left=3)
