"""``qv-sessions`` with the test embedders registered, for tests that run the command as a process.

The deterministic embedders ``hash`` and ``synonyms`` are registered only by
:func:`qv_session_manager.testing.embedders.install`, never for users, so a process
started by a test does not have them. ``python tests/qv_sessions_test_embedders.py
ARGS...`` registers them (and ``gated``, below) in its own process and then runs the
command's own ``main`` with ARGS, as the installed ``qv-sessions`` script does.
Nothing is added to the environment the other tests share: no entry point, no
``sitecustomize``, no extra distribution.

``gated:N`` is the ``hash`` embedder (the same vector space, so a later
``--embedder hash`` goes on where it stopped) that embeds N batches and then waits in
the next one until the process is interrupted: a slow embedder to press Ctrl-C
during, at a known point.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from qv_session_manager import plugins
from qv_session_manager.cli import main
from qv_session_manager.embedding import Embedder, Vector, split_spec
from qv_session_manager.hookspecs import hookimpl
from qv_session_manager.testing import embedders
from qv_session_manager.testing.embedders import HashEmbedder

PLUGIN_NAME = "tests.gated_embedder"


class GatedEmbedder(HashEmbedder):
    """``hash`` for ``batches`` calls of :meth:`embed`, then a wait until interrupted."""

    def __init__(self, batches: int) -> None:
        super().__init__()
        self._left = batches

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        if self._left == 0:
            while True:  # the test sends Ctrl-C now
                time.sleep(0.05)
        self._left -= 1
        return super().embed(texts)


def _open_gated(spec: str, options: Mapping[str, Any]) -> GatedEmbedder:
    _, rest = split_spec(spec)
    return GatedEmbedder(int(rest or "0"))


@hookimpl
def register_embedders(register: Callable[[Embedder], None]) -> None:
    register(Embedder("gated", _open_gated, "test only: hash, then a wait after N batches"))


def install() -> None:
    """Register ``hash``, ``synonyms`` and ``gated`` in this process."""
    embedders.install()
    if not plugins.pm.has_plugin(PLUGIN_NAME):
        plugins.pm.register(sys.modules[__name__], name=PLUGIN_NAME)


if __name__ == "__main__":
    install()
    main(prog_name="qv-sessions")
