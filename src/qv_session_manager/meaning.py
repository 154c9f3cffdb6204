"""Search by meaning over any store with message vectors: the backlog, the searches, one fusion rule.

The store keeps vectors (:class:`~qv_session_manager.protocol.VectorStorage`); this
module decides what to embed and how rankings combine, the same for every backend:

- :func:`embed_pending` embeds what the store reports pending, in batches, off the
  save path. What is pending is derived from the stored data itself (a message
  without a vector in the embedder's space), so nothing is lost across crashes or
  restarts and a changed model simply has everything pending in its new space.
- :func:`meaning_search` is ``mode="semantic"`` and ``mode="hybrid"``. Hybrid fuses
  the text ranking (BM25 or the backend's relevance) of any of the query's words
  (:func:`word_ranking_query`) and the vector ranking by
  reciprocal rank fusion (:func:`fuse`). Where vectors cannot be used (no embedder
  reachable, a store without vectors, nothing embedded yet) the search falls back to
  text, and the result says so (:class:`SearchResults`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from .errors import EmbedderError, InvalidInputError
from .protocol import Capability, ConversationFilter, ConversationStore, VectorStorage, offers
from .query import Query
from .records import SearchHit
from .timeutil import time_key
from .vector_records import VectorSpace, ranked

log = logging.getLogger("qv_session_manager")
T = TypeVar("T")

SearchMode = Literal["text", "semantic", "hybrid"]
MODES: tuple[SearchMode, ...] = ("text", "semantic", "hybrid")
#: Reciprocal rank fusion's constant: a hit at rank r adds 1 / (FUSION_K + r). Chosen by
#: benchmarks/fusion.py over 10, 30, 60 (the literature's usual value) and 100, and over
#: weighted variants and min-max score mixing: 10, both rankings weighted alike, had the
#: best recall@10 on the half of the questions it was chosen on and beat either ranking
#: alone on the other half, at 3,000 and at 17,545 ShareGPT chats (benchmarks/README.md).
FUSION_K = 10
#: Hybrid's word ranking leaves out a single word that more than COMMON_SHARE of the
#: stored messages hold, once that is more than COMMON_MINIMUM messages (stores that
#: count them: Capability.TOKEN_COUNTING). Such words weigh almost nothing in BM25 and
#: make up most of its cost: on 120k ShareGPT messages, leaving out the words of over
#: 5% of them took a question's word ranking from 254 to 35 ms p50 at the same recall
#: (benchmarks/README.md, "Search by meaning").
COMMON_SHARE = 0.05
COMMON_MINIMUM = 1000
#: How many hits of each ranking take part in the fusion (more when a page reaches deeper),
#: fixed so that pages within it are slices of one fused ranking.
FUSION_DEPTH = 200


class SearchResults(list[dict[str, Any]]):
    """The result dicts of a search (a plain list to the seed API), with how they were found.

    ``mode`` is the ranking used (``"text"`` when a semantic or hybrid search fell
    back), ``fallback`` why it fell back (None when it did not), and ``pending`` how
    many messages have no vector in the embedder's space (None for text searches). It
    is counted when first read, so searches that do not ask do not pay for the count.
    """

    mode: SearchMode
    fallback: str | None

    def __init__(
        self,
        items: Sequence[dict[str, Any]] = (),
        *,
        mode: SearchMode = "text",
        fallback: str | None = None,
        pending: int | Callable[[], int] | None = None,
    ) -> None:
        super().__init__(items)
        self.mode, self.fallback = mode, fallback
        self._pending = pending

    @property
    def pending(self) -> int | None:
        if callable(self._pending):
            self._pending = self._pending()
        return self._pending


@dataclass(frozen=True)
class EmbeddingProgress:
    """What :func:`embed_pending` did: messages embedded now, and still pending after it."""

    embedded: int
    pending: int


def check_mode(mode: object) -> SearchMode:
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def embed_batch(store: VectorStorage, embedder: Any, space: VectorSpace, batch_size: int) -> tuple[int, int]:
    """Embed one batch of up to ``batch_size`` pending messages: (how many were pending in it, stored)."""
    tasks = store.pending_embeddings(space, limit=batch_size)
    if not tasks:
        return 0, 0
    vectors = embedder.embed([task.text for task in tasks])
    return len(tasks), store.store_embeddings(space, list(zip(tasks, vectors)))


def embed_pending(
    store: ConversationStore,
    embedder: Any,
    *,
    batch_size: int = 32,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EmbeddingProgress:
    """Embed up to ``limit`` (None: all) pending messages of ``store`` with ``embedder``, ``batch_size`` at a time.

    Each batch is stored as soon as it is embedded, so an interruption keeps what was
    done. ``progress(done, pending)`` is called after each batch (``pending`` as
    counted at the start, less what was done since). Raises InvalidInputError for a
    store without vectors, and the embedder's errors (EmbedderUnavailableError,
    EmbeddingModelNotFoundError) as they come; what was stored before stays, and saves
    are never affected.
    """
    if not offers(store, Capability.VECTOR_STORAGE):
        raise InvalidInputError(f"{type(store).__name__} keeps no message vectors")
    for name, value, least in (("batch_size", batch_size, 1), ("limit", limit, 0)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise InvalidInputError(f"{name} must be an int of at least {least}, not {value!r}")
    space = VectorSpace.of(embedder)
    waiting = store.embedding_counts(space)[1] if progress is not None else 0
    done = 0
    while limit is None or done < limit:
        wanted = batch_size if limit is None else min(batch_size, limit - done)
        found, stored = embed_batch(store, embedder, space, wanted)
        done += stored
        if progress is not None and found:
            progress(done, max(0, waiting - done))
        if stored == 0:
            break  # nothing pending, or every task changed meanwhile: the next call sees what is pending now
    return EmbeddingProgress(done, store.embedding_counts(space)[1])


def fuse(rankings: Sequence[Sequence[SearchHit]], field: str) -> list[SearchHit]:
    """Reciprocal rank fusion of conversation rankings into one.

    A conversation scores the sum of 1 / (FUSION_K + rank) over the rankings that hold
    it (ranks from 1). Its hit (message id, text) is the one of the ranking where it
    ranks best, the earlier ranking among equals. Equal scores go newest first by
    ``field``, then by descending id (the rule of every search).
    """
    scores: dict[str, float] = {}
    chosen: dict[str, tuple[int, SearchHit]] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            key = hit.conversation.id
            scores[key] = scores.get(key, 0.0) + 1.0 / (FUSION_K + rank)
            if key not in chosen or rank < chosen[key][0]:
                chosen[key] = (rank, hit)
    fused = [SearchHit(hit.conversation, hit.message_id, hit.text, scores[key]) for key, (_, hit) in chosen.items()]
    return ranked(
        fused,
        lambda hit: hit.score or 0.0,
        lambda hit: time_key(getattr(hit.conversation, field)),
        lambda hit: hit.conversation.id,
    )


def word_ranking_query(store: ConversationStore, query: Query) -> Query:
    """Hybrid's word query: :meth:`Query.loosened`, without the store's common words (see COMMON_SHARE)."""
    words = query.single_tokens()
    if not words or not offers(store, Capability.TOKEN_COUNTING):
        return query.loosened()
    return query.loosened(store.common_tokens(words, share=COMMON_SHARE, minimum=COMMON_MINIMUM))


def meaning_search(
    store: ConversationStore,
    embedder: Any,
    text: str,
    query: Query,
    filter: ConversationFilter,
    *,
    mode: SearchMode,
    limit: int | None,
    offset: int,
    with_text: bool,
) -> tuple[list[SearchHit], SearchMode, str | None, Callable[[], int] | None]:
    """A semantic or hybrid search: (hits, mode used, why it fell back, a count of the messages pending).

    Falls back to the text ranking (by relevance) when the store keeps no vectors, the
    embedder fails (unreachable, model missing: logged at WARNING), or no conversation
    passing the filter has a vector in its space yet. The count is a function: counting
    reads every message, so only callers that report it call it.
    """

    def text_ranking(depth: int | None, skip: int = 0, words: Query = query) -> list[SearchHit]:
        return store.search(words, filter, order="relevance", limit=depth, offset=skip, with_text=with_text)

    if not offers(store, Capability.VECTOR_STORAGE):
        reason = f"{type(store).__name__} keeps no message vectors"
        return text_ranking(limit, offset), "text", reason, None
    try:
        space = VectorSpace.of(embedder)  # may ask the server for the model's dimension
        (vector,) = embedder.embed_queries([text])
    except EmbedderError as exc:
        log.warning("searching by text only: the embedder failed: %s", exc)
        return text_ranking(limit, offset), "text", str(exc), None

    def pending() -> int:
        return store.embedding_counts(space)[1]

    reason = f"no conversation passing the filter has a vector of {space.key} yet"
    if mode == "semantic":
        hits = store.vector_search(space, vector, filter, limit=limit, offset=offset, with_text=with_text)
        if hits or (offset > 0 and store.vector_search(space, vector, filter, limit=1)):
            return hits, "semantic", None, pending  # a page past the end is empty, not a fallback
        return text_ranking(limit, offset), "text", reason, pending
    depth = None if limit is None else max(FUSION_DEPTH, offset + limit)
    words = in_thread(lambda: text_ranking(depth, words=word_ranking_query(store, query)))
    meaning = store.vector_search(space, vector, filter, limit=depth, with_text=with_text)
    by_words = words()  # raises what the word ranking raised
    if not meaning:  # no vector of this space passes the filter: what words find is all there is
        return text_ranking(limit, offset), "text", reason, pending
    end = None if limit is None else offset + limit
    return fuse([by_words, meaning], filter.field)[offset:end], "hybrid", None, pending


def in_thread(call: Callable[[], T]) -> Callable[[], T]:
    """Start ``call`` in a new thread; the function returned waits for it and returns its
    result or raises its exception.

    Hybrid search ranks words this way while the calling thread ranks vectors: on
    PostgreSQL the two run on two connections, on SQLite the vector products run
    outside the store's lock. A thread per search, not a pool: nothing outlives the
    search, and a forked process starts clean.
    """
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller, which re-raises it
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="qv-session-manager-words", daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        succeeded, value = outcome[0]
        if not succeeded:
            raise value
        return cast(T, value)

    return result
