"""A space's vectors as one float32 matrix in memory, so a search reads no blob (needs numpy).

The matrix holds every vector of the space with the keys of its message and
conversation, grouped by conversation in stored message order. It is rebuilt when
``store_info.vectors_version`` (bumped by triggers on every vector added or removed,
in any process) differs from the one it was built at; saves that add no vector
leave it valid. Filters are not cached: each search asks SQL which conversations
pass, so expiry, time and metadata filters are always current.

A search ranks in two steps: float32 matrix products choose the candidates (every
conversation whose best score could reach the page), then the candidates' scores are
computed exactly as the shared rule says (float64 from the float32 values, see
:func:`~qv_session_manager.vector_records.similarities`) and ordered by
:func:`~qv_session_manager.vector_records.ranked`.

The products need no database, so the store runs them outside its lock
(:func:`prepare` under it, :func:`rank` outside, :func:`finish` under it again), and
another thread's search or save proceeds meanwhile: hybrid search ranks words while
the vectors are ranked. If a vector was added or removed in between, the store ranks
again under the lock; conversations changed in between are checked against the
filter again when their facts are read.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...vector_records import Candidate, VectorSpace, ranked_candidates

#: float32 products of unit vectors are within this of the exact float64 score (scaled by
#: the norms for others); candidates are taken that far below the page's last score, so
#: the exact step sees every tie.
_MARGIN = 1e-4


@dataclass(frozen=True)
class _Matrix:
    version: str
    matrix: Any  # numpy (rows, dimension) float32
    message_pks: Any  # numpy int64, one per row
    message_ids: list[str]
    starts: Any  # numpy int64: first row of each conversation group
    conversations: Any  # numpy int64: the conversation key of each group
    largest_norm: float


def available() -> bool:
    """Whether numpy is installed (the ``[semantic]`` extra); without it searches read the blobs."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


class VectorCache:
    """The matrices of one store's spaces (one per space, replaced when stale); thread-safe."""

    def __init__(self) -> None:
        self._matrices: dict[str, _Matrix] = {}
        self._lock = threading.Lock()

    def matrix(self, db: sqlite3.Connection, space: VectorSpace) -> _Matrix | None:
        """The current matrix of ``space`` (built when missing or stale), None when it has no vector."""
        import numpy

        (version,) = db.execute("SELECT value FROM store_info WHERE key = 'vectors_version'").fetchone()
        with self._lock:
            held = self._matrices.get(space.key)
            if held is not None and held.version == version:
                return held
        # Unordered: an ORDER BY would copy every blob into a sorter. Vectors exist only for
        # messages with content (an edit to empty content drops its vector).
        rows = db.execute(
            """SELECT m.conversation_pk, m.position, m.pk, m.id, v.vector FROM message_vectors v
               JOIN messages m ON m.pk = v.message_pk WHERE v.space = ?""",
            (space.key,),
        ).fetchall()
        if not rows:
            return None
        count = len(rows)
        conversations = numpy.fromiter((row[0] for row in rows), dtype=numpy.int64, count=count)
        message_pks = numpy.fromiter((row[2] for row in rows), dtype=numpy.int64, count=count)
        order = numpy.lexsort(
            (message_pks, numpy.fromiter((row[1] for row in rows), dtype=numpy.int64, count=count), conversations)
        )
        stacked = numpy.frombuffer(b"".join(row[4] for row in rows), dtype="<f4").reshape(count, space.dimension)
        matrix = stacked[order]
        conversation_of_row = conversations[order]
        first = numpy.flatnonzero(numpy.r_[True, conversation_of_row[1:] != conversation_of_row[:-1]])
        built = _Matrix(
            version,
            matrix,
            message_pks[order],
            [rows[index][3] for index in order.tolist()],
            first,
            conversation_of_row[first],
            float(numpy.sqrt((matrix.astype(numpy.float64) ** 2).sum(axis=1).max())),
        )
        with self._lock:
            self._matrices[space.key] = built
        return built

    def clear(self) -> None:
        with self._lock:
            self._matrices.clear()


@dataclass(frozen=True)
class Prepared:
    """What a search reads under the store's lock: the space's matrix and which of its groups pass the filter."""

    held: _Matrix
    passing: Any  # numpy bool, one per conversation group


def prepare(
    db: sqlite3.Connection,
    cache: VectorCache,
    space: VectorSpace,
    where: str,
    params: dict[str, Any],
    everything: bool = False,
) -> Prepared | None:
    """The matrix of ``space`` and the groups passing ``where``; None when the space has no vector.

    ``everything``: the filter keeps every conversation that has not expired (no time
    range, no metadata), so the conversations are not read to know which pass.
    """
    import numpy

    held = cache.matrix(db, space)
    if held is None:
        return None
    if everything:  # only expiry filters: the few expired conversations are left out
        expired = db.execute(
            "SELECT pk FROM conversations WHERE expires_key IS NOT NULL AND expires_key <= :now", params
        ).fetchall()
        passing = ~numpy.isin(held.conversations, numpy.array([pk for (pk,) in expired], dtype=numpy.int64))
    else:
        allowed = numpy.fromiter(
            (pk for (pk,) in db.execute(f"SELECT c.pk FROM conversations c WHERE {where}", params)), dtype=numpy.int64
        )
        passing = numpy.isin(held.conversations, allowed)
    return Prepared(held, passing)


def current(db: sqlite3.Connection, prepared: Prepared) -> bool:
    """Whether no vector was added or removed since ``prepared`` was read."""
    (version,) = db.execute("SELECT value FROM store_info WHERE key = 'vectors_version'").fetchone()
    return bool(version == prepared.held.version)


def rank(prepared: Prepared, query: Sequence[float], wanted: int | None) -> dict[int, tuple[str, int, float]]:
    """conversation key -> (message id, message key, exact score) of the candidates for the first
    ``wanted`` (None: all) places. Reads no database: it runs outside the store's lock, and
    numpy's products let other threads run meanwhile."""
    import numpy

    held = prepared.held
    vector32 = numpy.asarray(query, dtype=numpy.float32)
    scores = held.matrix @ vector32
    best = numpy.maximum.reduceat(scores, held.starts)
    groups = numpy.flatnonzero(prepared.passing)
    if wanted is not None and wanted < len(groups):
        cutoff = numpy.partition(best[groups], len(groups) - wanted)[len(groups) - wanted]
        margin = _MARGIN * max(1.0, float(numpy.linalg.norm(vector32)) * held.largest_norm)
        groups = groups[best[groups] >= cutoff - margin]
    if not len(groups):
        return {}
    # The candidates' rows, group after group, scored exactly in one product.
    starts = held.starts[groups]
    lengths = numpy.r_[held.starts[1:], len(held.message_ids)][groups] - starts
    offsets = numpy.cumsum(lengths) - lengths
    rows = numpy.arange(int(lengths.sum())) + numpy.repeat(starts - offsets, lengths)
    vector64 = numpy.frombuffer(numpy.asarray(query, dtype="<f4").tobytes(), dtype="<f4").astype(numpy.float64)
    exact = held.matrix[rows].astype(numpy.float64) @ vector64
    maxima = numpy.maximum.reduceat(exact, offsets)
    at_maximum = numpy.flatnonzero(exact == numpy.repeat(maxima, lengths))
    best_rows = rows[at_maximum[numpy.searchsorted(at_maximum, offsets)]]  # the first of equal scores: stored order
    return {
        conversation: (held.message_ids[row], message_pk, score)
        for conversation, row, message_pk, score in zip(
            held.conversations[groups].tolist(),
            best_rows.tolist(),
            held.message_pks[best_rows].tolist(),
            maxima.tolist(),
        )
    }


def finish(
    db: sqlite3.Connection,
    chosen: dict[int, tuple[str, int, float]],
    where: str,
    params: dict[str, Any],
    key: str,
    wanted: int | None,
) -> list[Candidate]:
    """The chosen conversations that pass ``where`` now, ranked: the rows of vectors.candidates."""
    facts: dict[int, tuple[str, str]] = {}
    pks = list(chosen)
    for index in range(0, len(pks), 500):
        batch = pks[index : index + 500]
        named = {f"pk{number}": pk for number, pk in enumerate(batch)}
        marks = ",".join(f":{name}" for name in named)
        sql = f"SELECT c.pk, c.{key}, c.id FROM conversations c WHERE c.pk IN ({marks}) AND {where}"
        for pk, time, ident in db.execute(sql, {**params, **named}):
            facts[pk] = (time, ident)
    ordered = ranked_candidates((pk, *facts[pk], *chosen[pk]) for pk in pks if pk in facts)
    return ordered if wanted is None else ordered[:wanted]
