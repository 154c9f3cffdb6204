"""Sizes of the reliability suite: bounded by default, long on request.

Tests read their sizes through :func:`budget`, so both sizes run the same code. The
long run: ``QV_SESSION_MANAGER_RELIABILITY=long pytest -m reliability tests/reliability``.
"""

from __future__ import annotations

import os

LONG_RUN = os.environ.get("QV_SESSION_MANAGER_RELIABILITY") == "long"


def budget(bounded: int, long: int) -> int:
    """How many iterations a test runs: ``long`` in the long run, else ``bounded``."""
    return long if LONG_RUN else bounded
