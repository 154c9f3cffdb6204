"""The writer the crash tests kill with SIGKILL (run as a script, not a test module).

    python rel_crash_writer.py URL LOG SEED INCARNATION

Opens the store, prints ``ready``, then runs random operations (rel_crash_ops) until
it is killed. Before each operation it appends ``{"intent": op}`` to LOG, and after the
call returned ``{"ack": answer}``, each line in one write and fsynced, so the checker
knows every acknowledged operation and the one that may have been in flight.
"""

from __future__ import annotations

import json
import os
import random
import sys

from qv_session_manager import open_store

from rel_crash_ops import apply, make_op


def _log(fd: int, entry: dict[str, object]) -> None:
    os.write(fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))
    os.fsync(fd)


def main() -> None:
    url, log_path, seed, incarnation = sys.argv[1:]
    store = open_store(url)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    rng = random.Random(int(seed))
    print("ready", flush=True)
    serial = int(incarnation) * 1_000_000
    while True:
        op = make_op(rng, store, serial)
        _log(fd, {"intent": op})
        _log(fd, {"ack": apply(store, op)})
        serial += 1


if __name__ == "__main__":
    main()
