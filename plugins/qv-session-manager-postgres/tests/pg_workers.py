"""A separate process for the multi-process tests (not a test module).

    python pg_workers.py open URL SCHEMA
    python pg_workers.py append URL SCHEMA WRITER TURNS

Each worker imports everything, prints ``ready``, waits for a line on stdin (so
that all workers start at the same moment), does its work and prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta


def main() -> None:
    action, url, schema, *rest = sys.argv[1:]
    from qv_session_manager import ConversationRecord, MessageRecord
    from qv_session_manager_postgres import PostgresStore

    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    if action == "open":
        store = PostgresStore(url, schema=schema)
        store.close()
        print(json.dumps({"ok": True, "seconds": time.monotonic() - started}), flush=True)
    elif action == "append":
        writer, turns = int(rest[0]), int(rest[1])
        base = datetime(2025, 1, 20, 12)
        store = PostgresStore(url, schema=schema)
        acknowledged = []
        for turn in range(turns):
            at = base + timedelta(seconds=turn)
            record = ConversationRecord("shared", base, at, title=f"writer {writer}", metadata={"w": writer})
            message_id = f"{writer}-{turn}"
            store.save(record, [MessageRecord(message_id, "user", f"turn {turn} of writer {writer}", at)])
            acknowledged.append(message_id)
        store.close()
        print(json.dumps({"ok": True, "acknowledged": acknowledged}), flush=True)
    else:
        raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    main()
