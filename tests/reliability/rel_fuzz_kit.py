"""Shared pieces of the fuzz tests: the four backends and the figures they report.

Every backend is opened through its URL (``open_store``), as an application would.
:func:`rel_fuzz_opener` returns a function opening a *new* store instance over the
same data each time it is called, so a test can write through one instance and read
through another (persistent backends then prove the data reached disk or the server,
not a cache). The in-memory backend has nothing to reopen: it hands back one instance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qv_session_manager.protocol import ConversationStore
from qv_session_manager.registry import open_store

from rel_report import report

#: Every backend the fuzz tests run on (PostgreSQL skips, saying why, without a server).
REL_FUZZ_BACKENDS = ("memory", "sqlite", "jsonl", "postgres")

StoreOpener = Callable[[], ConversationStore]


def rel_fuzz_opener(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreOpener:
    """A function opening a fresh instance of ``backend`` over one location per test."""
    if backend == "memory":
        only = open_store("memory://")
        return lambda: only
    # Durability is not what these tests check: commits skip fsync where the engine allows,
    # which keeps the bounded run short (the crash tests run with the defaults).
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fuzz.db'}?synchronous=normal"
    elif backend == "jsonl":
        url = f"jsonl:///{tmp_path / 'fuzz-jsonl'}"
    elif backend == "postgres":
        base = request.getfixturevalue("postgres_url")
        schema = request.getfixturevalue("postgres_schema")
        url = f"{base}{'&' if '?' in base else '?'}schema={schema}&pool_max_size=2&options=-csynchronous_commit%3Doff"
    else:
        raise ValueError(f"unknown backend {backend!r}")
    return lambda: open_store(url)


def rel_fuzz_report(request: pytest.FixtureRequest, name: str, counts: Counter[str], extra: dict[str, Any]) -> None:
    """Show ``counts`` at the end of a module (through rel_report, which keeps them as JSON in the long run)."""
    figures = {**dict(sorted(counts.items())), **extra}
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        report(name, figures)
        return
    with capture.global_and_fixture_disabled():  # output of a teardown is captured otherwise
        report(name, figures)
