"""Stream a whole store out to JSON lines, or back in, and report rate and peak RSS.

Started by ``worker.py`` (systems ``ours`` and ``postgres``), one process per step,
so that each step's peak RSS is its own::

    python stream.py export --system ours --db filled.db --file all.jsonl
    python stream.py import --system ours --db fresh.db --file all.jsonl --batch-size 500

``export`` writes one line per conversation from ``SessionManager.iter_conversations()``;
``import`` reads the lines one at a time and hands them to ``SessionManager.save_many``
as a lazy iterator. Both print one JSON object: seconds, conversations, messages,
messages per second, file bytes and peak RSS in MB.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from qv_ollama_sdk.domain.models import Conversation, Message

from worker import close_store, open_store, peak_rss_mb


def to_line(conversation: Conversation) -> str:
    return json.dumps(
        {"conversation": conversation.to_db_dict(), "messages": [m.to_db_dict() for m in conversation.messages]}
    )


def from_line(line: str) -> Conversation:
    data = json.loads(line)
    conversation = Conversation.from_db_dict(data["conversation"])
    conversation.messages = [Message.from_db_dict(m) for m in data["messages"]]
    return conversation


class Counter:
    """Counts the conversations and messages that pass through an iterator."""

    def __init__(self) -> None:
        self.conversations = 0
        self.messages = 0

    def count(self, conversations):
        for conversation in conversations:
            self.conversations += 1
            self.messages += len(conversation.messages)
            yield conversation


def export(store, path: str, counter: Counter) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(to_line(c) + "\n" for c in counter.count(store.iter_conversations()))


def import_(store, path: str, counter: Counter, batch_size: int) -> None:
    with open(path, encoding="utf-8") as handle:
        store.save_many(counter.count(from_line(line) for line in handle), batch_size=batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["export", "import"])
    parser.add_argument("--system", choices=["ours", "postgres"], required=True)
    parser.add_argument("--db", required=True, help="the database file (for postgres, its name gives the schema)")
    parser.add_argument("--file", required=True, help="the JSON lines file")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    counter = Counter()
    store = open_store(args.system, args.db)
    started = time.perf_counter()
    if args.step == "export":
        export(store, args.file, counter)
    else:
        import_(store, args.file, counter, args.batch_size)
    seconds = time.perf_counter() - started
    close_store(store)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "conversations": counter.conversations,
                "messages": counter.messages,
                "messages_per_second": counter.messages / seconds if seconds else None,
                "file_bytes": os.path.getsize(args.file),
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
