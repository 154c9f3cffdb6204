"""Store openers for the conformance suite: stores by name, closed and dropped after each test.

:func:`managed_opener` turns any ``name -> store`` callable into one that remembers
what it opened, so that a generator ``store_opener`` fixture can clean up after the
test; the suite's URL mode (``QV_SESSION_MANAGER_TEST_URL``) is built on it.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..protocol import Capability, ConversationStore, offers
from ..registry import open_store

StoreOpener = Callable[[str], ConversationStore]

#: This run's id (one per process: each pytest-xdist worker has its own), for ``{run}`` and ``{name}``.
RUN_ID = uuid.uuid4().hex[:10]
_tests = itertools.count(1)


class ManagedOpener:
    """A store opener that remembers the stores it opened and the names it was given."""

    def __init__(self, opener: StoreOpener) -> None:
        self._opener = opener
        self.stores: list[ConversationStore] = []
        self.names: dict[str, None] = {}  # insertion-ordered set
        self.droppable = False

    def __call__(self, name: str) -> ConversationStore:
        store = self._opener(name)
        self.stores.append(store)
        self.names.setdefault(name)
        self.droppable = self.droppable or offers(store, Capability.DROPPABLE)
        return store

    def close_all(self) -> None:
        """Close every store opened (closing twice is harmless, by contract)."""
        for store in self.stores:
            store.close()
        self.stores.clear()

    def drop_all(self) -> None:
        """Open every name once more and drop it, when the stores opened are Droppable."""
        names, self.names = list(self.names), {}
        for name in names if self.droppable else ():
            store = self._opener(name)
            if offers(store, Capability.DROPPABLE):
                store.drop()
            else:
                store.close()


@contextmanager
def managed_opener(opener: StoreOpener) -> Iterator[StoreOpener]:
    """An opener through ``opener`` that cleans up when the ``with`` block ends.

    On exit (also on a failure) it closes every store it opened, then, for each name
    it was given, opens that name once more and calls ``drop()``, if the stores it
    opened are :class:`~qv_session_manager.protocol.Droppable` (otherwise nothing is
    reopened). An error from ``close()`` or ``drop()`` fails the test. Use it in a
    generator ``store_opener``::

        @pytest.fixture
        def store_opener(self):
            namespace = uuid.uuid4().hex  # this test's own: the same for every name
            with managed_opener(lambda name: MyStore(prefix=f"test-{namespace}-{name}")) as opener:
                yield opener
    """
    managed = ManagedOpener(opener)
    try:
        yield managed
    finally:
        try:
            managed.close_all()
        finally:
            managed.drop_all()


def url_opener(url: str, tmp: Path) -> StoreOpener:
    """``name -> open_store(url)`` with the URL's placeholders filled in.

    ``{tmp}`` becomes ``tmp``; ``{run}`` becomes :data:`RUN_ID`; ``{name}`` becomes
    the store's name made unique to this test of this run (``<name>-<run>-<test>``),
    so that tests never share data, even on a server and without cleanup. Each call
    is a new test.
    """
    test = next(_tests)
    filled = url.replace("{tmp}", str(tmp)).replace("{run}", RUN_ID)
    return lambda name: open_store(filled.replace("{name}", f"{name}-{RUN_ID}-{test}"))
