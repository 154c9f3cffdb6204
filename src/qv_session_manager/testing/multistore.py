"""The multi-store clause of the conformance suite: two store objects on the same data, written at once.

A backend declaring ``Capability.MULTI_PROCESS`` promises that several store objects
(in one process or many) can share its data. :class:`MultiStoreRun` drives threads
over two such objects and checks that the result is that of *some* serial order of
the operations, which is all the protocol promises:

- ``pool`` only receives appends (each message id written once, by one thread) and
  saves that change its title without messages: in the end it holds exactly every
  appended message, each thread's in its order, and one of the written titles (a
  lost update, from reading and writing without a lock shared by both objects, drops
  messages). Stores that offer them also change the title through ``save_many``, and
  add some messages by a read-modify-write: ``save_revisioned`` gives a revision, the
  pool is loaded, then saved with ``replace=True`` and ``expected=`` that revision.
  That save must be refused when anything wrote in between, or it would drop the
  other threads' messages.
- ``hot0`` and ``hot1`` receive whole states (``save(replace=True)``), deletes and
  appends. Every state read during the run or at its end is one written state (its
  title names it) followed only by appended messages: never the messages of two
  states, never half a state.
- At the end both objects load the same data and every message id ever written is
  found by a search for its own word exactly when it is stored.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import cast

from ..protocol import Capability, ConversationFilter, ConversationStore, RevisionedSaving, offers
from ..query import parse
from ..records import ConversationRecord, MessageRecord, StoredConversation

THREADS = 4
ROUNDS = 25
HOT = ("hot0", "hot1")
#: Seconds the threads may take in all before the run counts as hung.
TIME_LIMIT = 120.0
_AT = datetime(2025, 1, 20, 12, 0, 0)


def _record(conversation_id: str, title: str) -> ConversationRecord:
    return ConversationRecord(id=conversation_id, title=title, model_name="llama3", created_at=_AT, updated_at=_AT)


def _message(message_id: str) -> MessageRecord:
    """A message whose content is one word found nowhere else: ``word`` + its id."""
    return MessageRecord(id=message_id, role="user", content=f"word{message_id}", created_at=_AT)


def _thread_and_round(message_id: str) -> tuple[int, int]:
    """(thread, round) of a message id ``w{thread}r{round}{letter}``."""
    thread, rest = message_id[1:].split("r", 1)
    return int(thread), int(rest[:-1])


def _in_thread_order(message_ids: Sequence[str]) -> bool:
    """Whether the ids each thread wrote come in the order of its rounds."""
    last: dict[int, int] = {}
    for message_id in message_ids:
        thread, round = _thread_and_round(message_id)
        if last.get(thread, -1) >= round:
            return False
        last[thread] = round
    return True


class MultiStoreRun:
    """One run of the clause over ``stores`` (two objects opened on the same name).

    Call :meth:`start`, then read :attr:`errors` (failures seen during the run) and
    call :meth:`check_final`. Assertion messages start with "contract multi-process".
    """

    def __init__(self, stores: Sequence[ConversationStore]) -> None:
        self.stores = list(stores)
        self.errors: list[str] = []
        self._guard = threading.Lock()
        self._pool_titles = {"pool start"}
        self._pool_ids: list[str] = []
        self._pool_tried: set[str] = set()  # conditional writes attempted, saved or refused
        #: hot id -> title -> the message ids of the state saved with that title.
        self._states: dict[str, dict[str, tuple[str, ...]]] = {hot: {} for hot in HOT}
        self._tried: dict[str, set[str]] = {hot: set() for hot in HOT}  # appends attempted
        self._appended: dict[str, set[str]] = {hot: set() for hot in HOT}  # appends that returned True

    # -- the run ------------------------------------------------------------------

    def start(self) -> None:
        """Seed the conversations, run the threads, wait for them (at most :data:`TIME_LIMIT`)."""
        self.stores[0].save(_record("pool", "pool start"), [])
        for hot in HOT:
            self._replace(self.stores[0], hot, f"{hot}seed", ())
        barrier = threading.Barrier(THREADS)
        threads = [threading.Thread(target=self._work, args=(n, barrier), daemon=True) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIME_LIMIT)
            if thread.is_alive():
                self.errors.append(f"the threads did not finish within {TIME_LIMIT:.0f} s (a deadlock?)")
                return

    def _work(self, number: int, barrier: threading.Barrier) -> None:
        try:
            barrier.wait()
            for round in range(ROUNDS):
                tag = f"w{number}r{round}"
                store, other = self.stores[(number + round) % 2], self.stores[(number + round + 1) % 2]
                self._pool_step(store, tag, round)
                hot = HOT[(number + round // 2) % 2]
                operation = (number + round) % 3
                if operation == 0:
                    self._replace(store, hot, f"{tag}s", (f"{tag}a", f"{tag}b"))
                elif operation == 1:
                    store.delete(hot)
                else:
                    self._append(store, hot, f"{tag}x")
                for problem in self._problems(other.load(hot), hot, final=False):
                    self._fail(f"{hot} read during the run: {problem}")
        except Exception as exc:  # noqa: BLE001  # any failure in a thread is reported by the test, with the others
            self._fail(f"thread {number}: {type(exc).__name__}: {exc}")

    def _fail(self, problem: str) -> None:
        with self._guard:
            self.errors.append(problem)

    def _pool_step(self, store: ConversationStore, tag: str, round: int) -> None:
        message_id = f"{tag}p"
        if round % 3 == 2 and offers(store, Capability.REVISIONED_SAVING):
            self._pool_conditional(store, tag, message_id)
        else:
            with self._guard:
                self._pool_ids.append(message_id)
            if not store.append("pool", [_message(message_id)]):
                self._fail(f"append to pool ({message_id}) returned False, but pool is never deleted")
        with self._guard:
            self._pool_titles.add(f"pool {tag}")
        title_change = _record("pool", f"pool {tag}")  # a title change that must keep every message
        if round % 2 and offers(store, Capability.BULK_SAVING):
            store.save_many([(title_change, [])])
        else:
            store.save(title_change, [])

    def _pool_conditional(self, store: RevisionedSaving, tag: str, message_id: str) -> None:
        """Read, then write back with one message more, only at the revision read."""
        with self._guard:
            self._pool_tried.add(message_id)
            self._pool_titles.add(f"pool {tag}c")
        revision = store.save_revisioned(_record("pool", f"pool {tag}c"), [])
        stored = cast(ConversationStore, store).load("pool")
        if stored is None:
            self._fail("pool vanished during the run")
            return
        messages = [*stored.messages, _message(message_id)]
        with self._guard:  # noted before the save: a reader may see it at once
            self._pool_ids.append(message_id)
        if store.save_revisioned(stored.conversation, messages, replace=True, expected=revision) is None:
            with self._guard:
                self._pool_ids.remove(message_id)

    def _replace(self, store: ConversationStore, hot: str, title: str, message_ids: tuple[str, ...]) -> None:
        with self._guard:  # noted first, so that a concurrent reader knows the state
            self._states[hot][title] = message_ids
        store.save(_record(hot, title), [_message(i) for i in message_ids], replace=True)

    def _append(self, store: ConversationStore, hot: str, message_id: str) -> None:
        with self._guard:
            self._tried[hot].add(message_id)
        if store.append(hot, [_message(message_id)]):
            with self._guard:
                self._appended[hot].add(message_id)

    # -- checks ---------------------------------------------------------------------

    def _problems(self, stored: StoredConversation | None, hot: str, *, final: bool) -> list[str]:
        """What is wrong with a state of ``hot`` read from a store (nothing: [])."""
        if stored is None:
            return []
        with self._guard:
            states = dict(self._states[hot])
            appended = set(self._appended[hot] if final else self._tried[hot])
        title = stored.conversation.title or ""
        ids = [m.id for m in stored.messages]
        base = states.get(title)
        if base is None:
            return [f"title {title!r} was never saved"]
        problems = []
        if tuple(ids[: len(base)]) != base:
            problems.append(f"the state saved as {title!r} holds {list(base)}, but its messages are {ids}")
        rest = ids[len(base) :]
        if not set(rest) <= appended or len(set(rest)) != len(rest):
            problems.append(f"after the state {title!r}, {rest} are not all distinct successful appends")
        elif not _in_thread_order(rest):
            problems.append(f"appended messages {rest} are out of their thread's order")
        torn = [m.id for m in stored.messages if m.content != f"word{m.id}"]
        if torn:
            problems.append(f"messages {torn} hold another message's text")
        return problems

    def check_final(self) -> None:
        """Fail unless the end state is that of a serial order (see the module docstring)."""
        first, second = self.stores
        for conversation_id in ("pool", *HOT):
            assert first.load(conversation_id) == second.load(conversation_id), (
                f"contract multi-process: the two store objects load {conversation_id} differently"
            )
        pool = first.load("pool")
        assert pool is not None, "contract multi-process: pool vanished"
        assert pool.conversation.title in self._pool_titles, (
            f"contract multi-process: pool has the title {pool.conversation.title!r}, which was never saved"
        )
        got = [m.id for m in pool.messages]
        missing = sorted(set(self._pool_ids) - set(got))
        assert not missing and len(got) == len(self._pool_ids), (
            f"contract multi-process: appends were lost (or doubled) on pool: missing {missing}, "
            f"{len(got)} messages for {len(self._pool_ids)} appends"
        )
        assert _in_thread_order(got), f"contract multi-process: appends to pool are out of their thread's order: {got}"
        for hot in HOT:
            problems = self._problems(first.load(hot), hot, final=True)
            assert not problems, f"contract multi-process: {hot} ends in no serial state: {problems}"
        self._check_index(first, second)

    def _check_index(self, *stores: ConversationStore) -> None:
        """Each message id ever written is found by its word exactly when it is stored, by both objects."""
        everything = {"pool": set(self._pool_ids) | self._pool_tried}
        for hot in HOT:
            everything[hot] = {i for ids in self._states[hot].values() for i in ids} | self._tried[hot]
        for conversation_id, message_ids in everything.items():
            stored = stores[0].load(conversation_id)
            present = {m.id for m in stored.messages} if stored is not None else set()
            for message_id in sorted(message_ids):
                want = [(conversation_id, message_id)] if message_id in present else []
                for store in stores:
                    hits = store.search(parse(f"word{message_id}"), ConversationFilter())
                    got = [(hit.conversation.id, hit.message_id) for hit in hits]
                    assert got == want, (
                        f"contract multi-process: search for message {message_id} of {conversation_id} gave {got}, "
                        f"the stored data {want}: the search index lost or kept an entry"
                    )
