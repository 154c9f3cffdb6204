"""Worker processes of the reliability tests: start them, release them together, collect them.

A worker is a script in this directory run as ``python script.py ACTION ARGS...``. It
prints ``ready`` once it has imported and opened everything, waits for a line on
standard input (so that all workers start their work at the same moment), and ends by
printing one JSON line. Its standard error goes to a file, named in failures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


@dataclass
class Worker:
    process: subprocess.Popen[str]
    stderr_path: Path

    def errors(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")[-4000:]


def spawn(script: str, args: Sequence[str], stderr_path: Path) -> Worker:
    """Start ``script`` (a file in this directory) with ``args``."""
    with open(stderr_path, "w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(HERE / script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    return Worker(process, stderr_path)


def wait_ready(worker: Worker) -> None:
    """Block until the worker printed ``ready``; fail with its stderr if it ended instead."""
    assert worker.process.stdout is not None
    line = worker.process.stdout.readline().strip()
    if line != "ready":
        worker.process.wait()
        raise AssertionError(f"worker did not start (said {line!r}):\n{worker.errors()}")


def release(workers: Sequence[Worker]) -> None:
    """Wait until every worker is ready, then let them all go (or end them all if one failed)."""
    try:
        for worker in workers:
            wait_ready(worker)
    except BaseException:
        for worker in workers:
            worker.process.kill()
            worker.process.communicate()
        raise
    for worker in workers:
        assert worker.process.stdin is not None
        worker.process.stdin.write("go\n")
        worker.process.stdin.flush()


def result(worker: Worker, timeout: float) -> dict[str, Any]:
    """The worker's final JSON line, after checking that it exited cleanly within ``timeout`` seconds."""
    try:
        out, _ = worker.process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        worker.process.communicate()
        raise AssertionError(f"a worker hung for {timeout} s:\n{worker.errors()}") from None
    assert worker.process.returncode == 0, f"a worker failed (exit {worker.process.returncode}):\n{worker.errors()}"
    lines = out.strip().splitlines()
    assert lines, f"a worker printed nothing:\n{worker.errors()}"
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def go_signal() -> None:
    """In a worker: say ready and wait for the go line."""
    print("ready", flush=True)
    sys.stdin.readline()
