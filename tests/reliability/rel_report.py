"""Figures of the concurrency and crash tests: printed always, kept as JSON in the long run.

The long run (``QV_SESSION_MANAGER_RELIABILITY=long``) writes each test's figures to
``tests/reliability/results/<name>.json`` (git-ignored by the directory's .gitignore).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import reliability_kit

RESULTS = Path(__file__).parent / "results"


def report(name: str, figures: dict[str, Any]) -> None:
    """Print ``figures`` under ``name``; in the long run also write them to results/<name>.json."""
    text = json.dumps({"test": name, "long_run": reliability_kit.LONG_RUN, **figures}, indent=2, sort_keys=True)
    print(f"\n{text}")
    if not reliability_kit.LONG_RUN:
        return
    RESULTS.mkdir(exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    (RESULTS / f"{safe}.json").write_text(text + "\n", encoding="utf-8")
