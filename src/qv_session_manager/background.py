"""Embedding off the save path: one worker thread that embeds what saves left pending.

A save only wakes the worker (it never waits for an embedder). The worker embeds the
store's pending messages in batches (:func:`qv_session_manager.meaning.embed_batch`),
so the backlog is whatever the store reports: nothing to lose in a crash, and a
restarted process carries on where the last one stopped. When the embedder fails
(Ollama down, model not pulled) the failure is logged once at WARNING and the worker
tries again later, waiting longer each time (up to :data:`LONGEST_WAIT`), or at the
next save; the messages stay pending meanwhile, and text search is unaffected.

The worker gives way to saves. A batch shares the store (its lock, its connection, a
commit) and the interpreter with the saves, so a save that arrives while a batch runs
waits for it. The worker therefore runs a batch once saves have paused for
:data:`QUIET_SECONDS` (a chat saves a message every few seconds: the backlog goes in
the pauses; the first batch after a wake waits that long at most), and while saves
keep coming without a pause it spends at most
:data:`BUSY_SHARE` of the time embedding (after a batch that took *t*, it rests
*t* x (1 - share) / share), so a stream of saves slows down by about that share at
worst and the backlog still shrinks.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .errors import SessionStoreError
from .meaning import embed_batch
from .protocol import VectorStorage
from .vector_records import VectorSpace

log = logging.getLogger("qv_session_manager")

#: Seconds before the first retry after a failure; each further failure doubles it.
FIRST_WAIT = 5.0
#: The longest wait between retries, in seconds.
LONGEST_WAIT = 300.0
#: A pause in saves this long lets the worker run its next batch at once (seconds).
QUIET_SECONDS = 0.05
#: While saves come without such a pause, the share of the time the worker may spend embedding.
BUSY_SHARE = 0.1


class BackgroundEmbedder:
    """Embeds ``store``'s pending messages with ``embedder`` on one daemon thread, ``batch_size`` at a time.

    :meth:`wake` after writes; :meth:`wait_idle` blocks until nothing is pending or the
    worker is waiting after a failure; :meth:`close` stops it after the batch under way.
    ``last_error`` is the failure of the last attempt (None once one succeeds).
    """

    def __init__(self, store: VectorStorage, embedder: Any, *, batch_size: int = 32) -> None:
        self._store = store
        self._embedder = embedder
        self._batch_size = batch_size
        self._wakeup = threading.Event()
        self._idle = threading.Event()
        self._stop = threading.Event()
        self._stopping = False
        self._last_wake = 0.0  # time.monotonic() of the last wake (a save)
        self._rested_at = 0.0  # when the rest after the last batch ends
        self.last_error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="qv-session-manager-embedder", daemon=True)
        self._thread.start()
        self.wake()  # a backlog left by an earlier process

    def wake(self) -> None:
        """Ask the worker to look for pending messages (cheap: call it after every save)."""
        self._last_wake = time.monotonic()
        self._idle.clear()
        self._wakeup.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until the worker has nothing to do (or failed and waits); False on timeout."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker after the batch under way (waiting at most ``timeout`` seconds)."""
        self._stopping = True
        self._stop.set()
        self._wakeup.set()
        self._thread.join(timeout)

    def _give_way(self) -> None:
        """Wait until saves pause for QUIET_SECONDS or the rest after the last batch is over."""
        while not self._stopping:
            now = time.monotonic()
            quiet = now - self._last_wake
            if quiet >= QUIET_SECONDS or now >= self._rested_at:
                return
            self._stop.wait(min(QUIET_SECONDS - quiet, self._rested_at - now))

    def _batch(self, space: VectorSpace) -> tuple[int, int]:
        self._give_way()
        if self._stopping:
            return 0, 0
        started = time.monotonic()
        try:
            return embed_batch(self._store, self._embedder, space, self._batch_size)
        finally:
            took = time.monotonic() - started
            self._rested_at = time.monotonic() + took * (1 - BUSY_SHARE) / BUSY_SHARE

    def _run(self) -> None:
        wait: float | None = None
        while True:
            self._wakeup.wait(wait)
            self._wakeup.clear()
            if self._stopping:
                return
            # Woken by a save, which may be the first of a stream: the first batch, too,
            # waits for a pause or rests QUIET_SECONDS first.
            self._rested_at = max(self._rested_at, time.monotonic() + QUIET_SECONDS)
            try:
                space = VectorSpace.of(self._embedder)  # may ask the server for the model's dimension
                while not self._stopping:
                    found, stored = self._batch(space)
                    if stored == 0 or found < self._batch_size:
                        break
            except Exception as exc:  # embedder and storage errors alike (a plugin's own too): retry later
                if self.last_error is None:
                    log.warning(
                        "embedding in the background failed, will retry: %s",
                        exc,
                        exc_info=not isinstance(exc, SessionStoreError),
                    )
                self.last_error = exc
                wait = FIRST_WAIT if wait is None else min(LONGEST_WAIT, wait * 2)
            else:
                if self.last_error is not None:
                    log.info("embedding in the background works again")
                self.last_error, wait = None, None
            if not self._wakeup.is_set():
                self._idle.set()
