"""Which fusion rule for hybrid search: reciprocal rank fusion's constant and weights against score mixing.

Run it with the python where this project is installed with its ``[semantic]`` extra,
on a store that ``retrieval.py --keep-db`` left behind (the same corpus and size)::

    python benchmarks/retrieval.py --conversations all --keep-db --db-dir /tmp/rdb
    python benchmarks/fusion.py --db /tmp/rdb/qv-retrieval-*/retrieval.db --conversations all

It samples the evaluation questions as retrieval.py does (same seed), takes for each
the two rankings hybrid search fuses, 200 deep (the words ranked by relevance, any of
them but the store's common ones: ``meaning.word_ranking_query``; the vectors by cosine), and scores every candidate rule by
recall@10 and MRR@10 on two halves of the questions: the rule is chosen on the first
half (even draws) and confirmed on the second (odd draws), so a rule that only fits
the noise of one sample shows it.

Rules: ``rrf k=K w=W`` scores W / (K + text rank) + 1 / (K + vector rank);
``mix a=A`` scores A x text + (1 - A) x vector, each ranking's scores scaled to 0..1
over its own 200 hits (min-max), 0 where a ranking lacks the conversation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from qv_session_manager import SessionManager
from qv_session_manager.meaning import FUSION_DEPTH, FUSION_K, fuse, word_ranking_query
from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.query import parse
from qv_session_manager.records import SearchHit
from qv_session_manager.vector_records import VectorSpace

from corpus import Corpus
from retrieval import CUTOFF, EMBEDDER, RESULTS_DIR, candidate_queries, find_corpus, sample_queries, scores

Ranking = list[tuple[str, float]]
Rule = Callable[[Sequence[SearchHit], Sequence[SearchHit]], list[str]]
#: The rule search_conversations(mode="hybrid") applies.
LIBRARY = f"library: rrf k={FUSION_K} w=1.0"


def pairs(hits: Sequence[SearchHit]) -> Ranking:
    return [(hit.conversation.id, hit.score or 0.0) for hit in hits]


def library(words: Sequence[SearchHit], meaning: Sequence[SearchHit]) -> list[str]:
    """meaning.fuse itself, ties and all."""
    return [hit.conversation.id for hit in fuse([words, meaning], ConversationFilter().field)]


def rrf(k: float, weight: float) -> Rule:
    def fused(words: Sequence[SearchHit], meaning: Sequence[SearchHit]) -> list[str]:
        total: dict[str, float] = {}
        for share, ranking in ((weight, pairs(words)), (1.0, pairs(meaning))):
            for rank, (ident, _) in enumerate(ranking, 1):
                total[ident] = total.get(ident, 0.0) + share / (k + rank)
        return sorted(total, key=lambda ident: -total[ident])

    return fused


def mix(alpha: float) -> Rule:
    def scaled(ranking: Ranking) -> dict[str, float]:
        if not ranking:
            return {}
        values = [score for _, score in ranking]
        low, high = min(values), max(values)
        return {ident: (score - low) / (high - low) if high > low else 1.0 for ident, score in ranking}

    def fused(words: Sequence[SearchHit], meaning: Sequence[SearchHit]) -> list[str]:
        a, b = scaled(pairs(words)), scaled(pairs(meaning))
        total = {ident: alpha * a.get(ident, 0.0) + (1 - alpha) * b.get(ident, 0.0) for ident in {*a, *b}}
        return sorted(total, key=lambda ident: -total[ident])

    return fused


RULES: dict[str, Rule] = {
    LIBRARY: library,
    "words only": lambda words, meaning: [hit.conversation.id for hit in words],
    "vectors only": lambda words, meaning: [hit.conversation.id for hit in meaning],
    **{f"rrf k={k} w={w}": rrf(k, w) for k in (10, 30, 60, 100) for w in (1.0, 1.5, 2.0, 3.0)},
    **{f"mix a={a}": mix(a) for a in (0.3, 0.5, 0.7)},
}


def study(manager: SessionManager, queries: list[dict[str, Any]]) -> dict[str, Any]:
    assert manager.embedder is not None
    store: Any = manager.store
    space = VectorSpace.of(manager.embedder)
    everything = ConversationFilter()
    rankings = []
    started = time.perf_counter()
    for query in queries:
        (vector,) = manager.embedder.embed_queries([query["text"]])
        words_query = word_ranking_query(store, parse(query["text"]))
        words = store.search(words_query, everything, order="relevance", limit=FUSION_DEPTH)
        meaning = store.vector_search(space, vector, everything, limit=FUSION_DEPTH)
        rankings.append((words, meaning))
    seconds = time.perf_counter() - started
    halves = {"first half (choose)": range(0, len(queries), 2), "second half (confirm)": range(1, len(queries), 2)}
    halves["all"] = range(len(queries))
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name, rule in RULES.items():
        ranks = []
        for query, (words, meaning) in zip(queries, rankings):
            relevant = set(query["relevant"])
            order = rule(words, meaning)[:CUTOFF]
            ranks.append(next((i for i, ident in enumerate(order, 1) if ident in relevant), None))
        table[name] = {half: scores([ranks[i] for i in chosen], len(chosen)) for half, chosen in halves.items()}
    return {"rankings_seconds": seconds, "rules": table}


def markdown(result: dict[str, Any], halves: Sequence[str]) -> str:
    lines = ["| rule | " + " | ".join(f"{half}: recall@10 / MRR@10" for half in halves) + " |"]
    lines.append("| --- |" + " ---: |" * len(halves))
    for name, by_half in result["rules"].items():
        cells = [f"{by_half[half]['recall@10']:.3f} / {by_half[half]['mrr@10']:.3f}" for half in halves]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True, help="a store kept by retrieval.py --keep-db")
    parser.add_argument("--conversations", default="3000", help="the corpus size that store was built from")
    parser.add_argument("--queries", type=int, default=300, help="queries sampled (default 300)")
    parser.add_argument("--min-words", type=int, default=4)
    parser.add_argument("--max-words", type=int, default=64)
    parser.add_argument("--corpus", type=Path, help="a ShareGPT-shaped JSON file instead of the cached corpus")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results JSON goes")
    args = parser.parse_args(argv)
    if not args.db.exists():
        sys.exit(f"no store at {args.db}")
    count = None if args.conversations == "all" else int(args.conversations)
    corpus = Corpus(str(find_corpus(args.corpus)), count)
    with SessionManager(args.db, embedder=EMBEDDER) as manager:
        candidates, dropped = candidate_queries(corpus, args)
        queries = sample_queries(manager, corpus, candidates, args.queries, dropped)
        result = study(manager, queries)
    table = markdown(result, ["first half (choose)", "second half (confirm)", "all"])
    print(
        f"{len(queries)} queries, {corpus.summary()['conversations']:,} conversations; rankings in "
        f"{result['rankings_seconds']:.0f} s\n\n{table}"
    )
    args.results_dir.mkdir(parents=True, exist_ok=True)
    output = args.results_dir / f"fusion-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    output.write_text(
        json.dumps(
            {
                "arguments": {
                    key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
                },
                "queries": len(queries),
                **result,
                "markdown": table,
            },
            indent=2,
        )
    )
    print(f"results written to {output}")


if __name__ == "__main__":
    main()
