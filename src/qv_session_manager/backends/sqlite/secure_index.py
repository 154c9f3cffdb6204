"""FTS5 secure-delete: deleted text leaves the search index at once, where SQLite has it.

Without it (SQLite before 3.42), FTS5 marks a deleted row's entries as deleted but
keeps its tokens in the index segments until they are merged, so the store merges
the whole index (``optimize``) once after deletes, at :meth:`SQLiteStore.purge` or
close: a cost in proportion to the whole index. With it, each delete removes the
row's entries from the segments themselves, so a purge only has to empty the WAL:
a cost in proportion to what was written since.

A store turns it on for both indexes the first time a driver with SQLite 3.42 or
later opens the file for writing (``"pysqlite3"``, SQLCipher, or a Python built
with a recent SQLite). It is one-way: FTS5 then writes its index in a newer format
that SQLite before 3.42 cannot read, and such a driver is refused at open
(SchemaVersionError, the file untouched) instead of failing at the first search.
"""

from __future__ import annotations

import sqlite3

from ...errors import SchemaVersionError
from .schema import immediate

#: The first SQLite whose FTS5 has the ``secure-delete`` option.
SINCE = (3, 42, 0)
INDEXES = ("message_index", "title_index")
#: The index format FTS5 before 3.42 reads; secure-delete moves an index past it.
_OLD_FORMAT = 4


def _exists(db: sqlite3.Connection, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None


def _setting(db: sqlite3.Connection, index: str, name: str) -> int | None:
    row = db.execute(f"SELECT v FROM {index}_config WHERE k = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def is_on(db: sqlite3.Connection) -> bool:
    """Whether both search indexes delete securely, in the format older SQLite cannot write.

    False for a file without search indexes yet.
    """
    for index in INDEXES:
        if not _exists(db, f"{index}_config"):
            return False
        if not _setting(db, index, "secure-delete") or (_setting(db, index, "version") or 0) <= _OLD_FORMAT:
            return False
    return True


def check_readable(db: sqlite3.Connection, version: tuple[int, int, int]) -> None:
    """Refuse a file whose search index this SQLite (``version``) cannot read.

    Reads FTS5's own settings table only, so it works on any SQLite and changes
    nothing. Raises SchemaVersionError naming the fix.
    """
    if version >= SINCE:
        return
    for index in INDEXES:
        if _exists(db, f"{index}_config") and (_setting(db, index, "version") or 0) > _OLD_FORMAT:
            found = ".".join(map(str, version))
            raise SchemaVersionError(
                f"the search index of this file deletes securely (FTS5 secure-delete), which needs SQLite 3.42 "
                f"or later; this driver has SQLite {found}. Open it with driver='pysqlite3' "
                "(pip install pysqlite3-binary) or a Python built with a newer SQLite"
            )


def turn_on(db: sqlite3.Connection, version: tuple[int, int, int]) -> bool:
    """Turn secure-delete on for both indexes where ``version`` has it; True if it is on.

    One ``BEGIN IMMEDIATE`` transaction (a concurrent opener waits, then finds it
    on). Tokens that earlier deletes left in the segments are merged away first
    when a purge is due, so "on" always means no deleted text is left in the index;
    the purge itself stays due, for the WAL. A row is then added to each index and
    deleted again, which makes FTS5 write its newer format at once: from then on an
    older SQLite (another process, 0.3.0, the ``sqlite3`` shell) fails to change
    the index instead of deleting insecurely, leaving tokens no purge would merge.
    """
    if version < SINCE:
        return False
    if is_on(db):
        return True
    with immediate(db):
        if not is_on(db):
            if db.execute("SELECT 1 FROM store_info WHERE key = 'purge_pending'").fetchone() is not None:
                for index in INDEXES:
                    db.execute(f"INSERT INTO {index} ({index}) VALUES ('optimize')")
            for index in INDEXES:
                db.execute(f"INSERT INTO {index} ({index}, rank) VALUES ('secure-delete', 1)")
                # Keys are AUTOINCREMENT from 1: no stored row is ever 0.
                db.execute(f"INSERT INTO {index} (rowid, body) VALUES (0, 'x')")
                db.execute(f"INSERT INTO {index} ({index}, rowid, body) VALUES ('delete', 0, 'x')")
    return True


#: What one removal under secure-delete costs, in index entries merged in the same time.
#: Measured on ShareGPT (21.6k and 129k messages, SQLite 3.51): on tmpfs 0.7-0.9 ms a
#: removal against 0.0045 ms an entry for ``optimize`` (180 entries); on an ext4 disk
#: about 4 ms against 0.006 ms (680 entries), the removals' page writes going through
#: the WAL. Secure-delete's cost does not grow with the index; a merge's does. 400 is
#: between the two, so either choice costs at most about twice the other one.
REMOVAL_COST_IN_ENTRIES = 400


def removals_are_few(db: sqlite3.Connection) -> bool:
    """Whether removing the waiting entries one by one is cheaper than merging the whole index.

    The index size is estimated from the key counters (rows ever written, an upper bound).
    """
    waiting = db.execute("SELECT count(*) FROM index_removals").fetchone()[0]
    written = db.execute(
        "SELECT coalesce(sum(seq), 0) FROM sqlite_sequence WHERE name IN ('messages', 'conversations')"
    ).fetchone()[0]
    return int(waiting) * REMOVAL_COST_IN_ENTRIES <= int(written)


def set_on(db: sqlite3.Connection, on: bool) -> None:
    """Switch secure-delete for both indexes (in the caller's transaction; the format stays the newer one)."""
    for index in INDEXES:
        db.execute(f"INSERT INTO {index} ({index}, rank) VALUES ('secure-delete', ?)", (int(on),))
