"""The examples run and print what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_basic_usage_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "basic_usage.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Loaded: Python Help with 3 messages" in lines
    assert "Tool call kept: get_weather({'city': 'Paris'})" in lines
    assert "resume -> ['Weather in Paris']" in lines
    assert "pyth* OR paris -> ['Weather in Paris', 'Python Help']" in lines
    assert "updated today: 2 conversations" in lines
    assert "remaining: ['Python Help']" in lines
    assert list(tmp_path.iterdir()) == [], "the example must not write into the working directory"


def test_custom_backend_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_backend.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "found: ['Audited chat']"
    assert lines[1].startswith("audit: save ") and lines[1].endswith("(+1 messages)")
    assert lines[2].startswith("audit: delete ") and lines[2].endswith(": True")
