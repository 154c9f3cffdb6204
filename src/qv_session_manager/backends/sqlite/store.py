"""The SQLite backend: WAL, one transaction per operation, FTS5 over shared tokens."""

from __future__ import annotations

import builtins
import contextlib

import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import ModuleType
from typing import Any, Literal

from ...errors import CorruptStorageError, EncryptionKeyError, InvalidInputError, StorageError
from ...private_files import touch_private_file
from ...protocol import Capability, ConversationFilter, SaveItem, SearchOrder
from ...query import Query, to_fts5
from ...records import (
    ConversationRecord,
    MessageRecord,
    SearchHit,
    StoredConversation,
    check_append,
    check_save,
    checked_save_items,
    is_storable_id,
    metadata_matches,
)
from ...timeutil import time_key
from ...rules import check_filter, check_order, check_page, check_window, now_key, window_start
from . import cipher, schema
from .errors import EncryptedOrCorruptError, translate
from .rows import (
    CONVERSATION_COLUMNS,
    MESSAGE_COLUMNS,
    decode_conversation,
    decode_message,
    encode_conversation,
    encode_message,
    index_body,
)

log = logging.getLogger("qv_session_manager")

Synchronous = Literal["full", "normal"]
Purge = Literal["on_close", "immediate"]
_TIME_FIELDS = {"updated_at": "updated_key", "created_at": "created_key"}
#: The condition of a conversation ``c`` that has not expired at the parameter ``:now`` (see Capability.EXPIRY).
_LIVE = "(c.expires_key IS NULL OR c.expires_key > :now)"
_ID_BATCH = 500  # ids per IN (...) lookup, well below SQLite's variable limit
#: SQLite's JSON functions cut a string at an escaped NUL (``\u0000``), so json_each would
#: both miss and wrongly match such keys and values. Rows whose metadata text holds that
#: escape are checked by the reference rule (records.metadata_matches) in Python instead.
_METADATA_HAS_NUL = "instr(c.metadata, '\\u0000') > 0"


def _metadata_passes(stored: str, wanted: str) -> int:
    """SQL function ``qv_metadata_matches(metadata, filter)``: both JSON texts."""
    return int(metadata_matches(json.loads(stored), json.loads(wanted)))


def _create_atomically(path: str, connect: Callable[[str], sqlite3.Connection], setup: Any) -> None:
    """Create a new database file so that no other process ever sees it half made.

    The schema is built in a temporary file beside ``path`` (opened with ``connect``,
    so a keyed store is encrypted from its first page) which is then linked into
    place; if another process won the race, its file is kept. The file is owner-only
    (0600) whatever the umask, and so are the -wal and -shm files SQLite makes beside it.
    """
    temporary = f"{path}.{uuid.uuid4().hex}.creating"
    try:
        with contextlib.suppress(OSError):  # if it fails, SQLite's own open reports why
            touch_private_file(temporary)  # SQLite gives -wal and -shm the database's mode
        db = connect(temporary)
        try:
            setup(db)
        finally:
            db.close()
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        for leftover in (temporary, temporary + "-wal", temporary + "-shm"):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass


_SQLITE_MAGIC = b"SQLite format 3\x00"
_SMALLEST_PAGE = 512  # an SQLite (and SQLCipher) file is whole pages of at least this size


def _check_header(path: str, *, keyed: bool) -> None:
    """Refuse, before any driver opens it, a non-empty file that cannot be what is asked for.

    SQLite itself takes a 1-byte file for an empty database and would overwrite it,
    so a file without the SQLite header is refused unless it may be an SQLCipher
    file (whole pages) and a key is given: then SQLCipher checks the key. Without a
    key such a file is encrypted or damaged (EncryptedOrCorruptError); a plain file
    given a key raises EncryptionKeyError.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except OSError:
        return  # unreadable or not a file: SQLite reports it when connecting
    if head == _SQLITE_MAGIC:
        if keyed:
            raise EncryptionKeyError(
                f"{path} is a plain, unencrypted SQLite database but a key was given; open it without a key, "
                "or copy it into an encrypted store with copy_store; refusing to touch it"
            )
        return
    if not head:
        return
    if size < _SMALLEST_PAGE or size % _SMALLEST_PAGE:
        raise CorruptStorageError(f"{path} is not an SQLite database; refusing to touch it")
    if not keyed:
        raise EncryptedOrCorruptError(
            f"{path} is not an SQLite database readable without a key: it is encrypted (open it with "
            "its key) or damaged; refusing to touch it"
        )


def _connect(driver: ModuleType, path: str, key_statement: str | None, busy_timeout: float) -> sqlite3.Connection:
    """A connection to ``path``; with a key, keyed first and checked with one read.

    The key must come before any other statement. A key that does not open the
    file (SQLITE_NOTADB at the first read) raises EncryptedOrCorruptError, having
    written nothing.
    """
    db: sqlite3.Connection = driver.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    if key_statement is None:
        return db
    try:
        db.execute(key_statement)
        with cipher.quiet_log(db):
            db.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    except driver.Error as exc:
        db.close()
        if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == 26:  # SQLITE_NOTADB
            raise EncryptedOrCorruptError(
                f"{path} cannot be read with the key given: a wrong key, or a damaged file; refusing to touch it"
            ) from exc
        raise
    except BaseException:
        db.close()
        raise
    return db


def _prepare_new(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode = WAL")
    schema.migrate(db)


class SQLiteStore:
    """A :class:`~qv_session_manager.protocol.ConversationStore` in one SQLite file.

    ``path`` is a file path or ``":memory:"``. ``synchronous="full"`` (default)
    makes every acknowledged save survive power loss; ``"normal"`` is faster and
    still survives application crashes, but may lose the last saves on power loss.
    ``busy_timeout`` is how long a write waits for another writer (seconds).

    Deleting removes rows and search entries at once (nothing finds deleted text
    again) and ``secure_delete`` zeroes the freed pages, but FTS5 keeps the deleted
    tokens in its index segments until they are merged. :meth:`purge` merges them
    and empties the WAL, so no deleted text stays in the files. It costs time in
    proportion to the whole index (about 0.25 s at 20k messages), so by default
    (``purge="on_close"``) it runs once, in :meth:`close`, after deletes; with
    ``purge="immediate"`` every delete purges before it returns.

    ``key`` encrypts the whole file with SQLCipher (the ``[sqlcipher]`` extra): a
    ``str`` passphrase, or ``bytes`` of 32 as a raw key (see
    :mod:`qv_session_manager.backends.sqlite.cipher`). Pages, WAL frames and the
    search indexes are then encrypted on disk while search works as usual. The key
    is used to open the connection and not kept.

    Raises CorruptStorageError for a zero-length, truncated or non-SQLite file and
    SchemaVersionError for a newer or unknown schema; the file is left untouched.
    A key that does not open the file, or no key for a file that is not plain
    SQLite, raises an error that is both EncryptionKeyError and CorruptStorageError
    (without the key an encrypted file cannot be told from a damaged one); a key
    for a plain file raises EncryptionKeyError. In each case the file is untouched.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "session_manager.db",
        *,
        synchronous: Synchronous = "full",
        busy_timeout: float = 30.0,
        purge: Purge = "on_close",
        key: cipher.Key | None = None,
    ) -> None:
        try:
            path = os.fspath(path)
        except TypeError:
            raise InvalidInputError(f"a database path must be a str or os.PathLike, not {type(path).__name__}") from None
        if not isinstance(path, str) or not path or "\x00" in path:
            raise InvalidInputError(f"not a usable database path: {path!r}")
        if synchronous not in ("full", "normal"):
            raise InvalidInputError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        if (
            not isinstance(busy_timeout, (int, float))
            or isinstance(busy_timeout, bool)
            or not 0 <= busy_timeout <= 86_400
        ):
            raise InvalidInputError(f"busy_timeout must be a number of seconds from 0 to 86400, not {busy_timeout!r}")
        if purge not in ("on_close", "immediate"):
            raise InvalidInputError(f"purge must be 'on_close' or 'immediate', not {purge!r}")
        key_statement = None if key is None else cipher.key_statement(key)
        if key_statement is not None and path == ":memory:":
            raise InvalidInputError("an in-memory store has no file to encrypt: give no key for ':memory:'")
        driver = sqlite3 if key_statement is None else cipher.load_driver()
        self._driver = driver
        self.path = path
        self._purge_at_once = purge == "immediate"
        self._lock = threading.RLock()
        self._closed = False
        in_memory = path == ":memory:"
        self.capabilities = frozenset(
            {Capability.RELEVANCE, Capability.EXPIRY} if in_memory
            else {Capability.RELEVANCE, Capability.EXPIRY, Capability.PERSISTENT, Capability.MULTI_PROCESS}
        )
        try:
            if not in_memory:
                path = os.path.abspath(path)  # never let SQLite read 'file:...' as a URI
                if os.path.exists(path) and os.path.getsize(path) == 0:
                    raise CorruptStorageError(
                        f"{path} is an empty file, not a database; refusing to treat it as a new store"
                    )
                if os.path.exists(path):
                    _check_header(path, keyed=key_statement is not None)
                if not os.path.exists(path):
                    _create_atomically(
                        path, lambda new: _connect(driver, new, key_statement, busy_timeout), _prepare_new
                    )
            self._db = _connect(driver, path, key_statement, busy_timeout)
        except (driver.Error, UnicodeDecodeError) as exc:
            raise translate(exc, f"opening {path}") from exc
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.create_function("qv_metadata_matches", 2, _metadata_passes, deterministic=True)
            # Migrate (which first refuses newer or foreign schemas) before switching to
            # WAL: the switch rewrites the file header, and a refused file must stay untouched.
            schema.migrate(self._db)
            if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal" and not in_memory:
                self._db.execute("PRAGMA journal_mode = WAL")
        except BaseException as exc:
            self._db.close()
            if isinstance(exc, (driver.Error, UnicodeDecodeError)):
                raise translate(exc, f"opening {path}") from exc
            raise

    # -- plumbing -----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the store is closed")

    @contextmanager
    def _transaction(self, doing: str, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction; write transactions take the write lock up front."""
        with self._lock:
            self._check_open()
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except self._driver.Error:
                        pass
                if isinstance(exc, (self._driver.Error, UnicodeDecodeError)):
                    raise translate(exc, doing) from exc
                raise

    @staticmethod
    def _live_row(db: sqlite3.Connection, columns: str, conversation_id: str) -> Any:
        """``columns`` of the conversation ``conversation_id`` (alias ``c``); None when it is missing or expired."""
        return db.execute(
            f"SELECT {columns} FROM conversations c WHERE id = :id AND {_LIVE}", {"id": conversation_id, "now": now_key()}
        ).fetchone()

    @staticmethod
    def _index(db: sqlite3.Connection, table: str, pk: int, text: str | None, *, remove: bool = False) -> None:
        body = index_body(text)
        if not body:
            return
        if remove:
            db.execute(f"INSERT INTO {table} ({table}, rowid, body) VALUES ('delete', ?, ?)", (pk, body))
        else:
            db.execute(f"INSERT INTO {table} (rowid, body) VALUES (?, ?)", (pk, body))

    # -- writes ---------------------------------------------------------------

    def save(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
    ) -> None:
        check_save(conversation, messages)
        row = encode_conversation(conversation)
        encoded = [encode_message(message) for message in messages]
        with self._transaction(f"saving conversation {conversation.id}", write=True) as db:
            self._save_rows(db, conversation, row, encoded, replace, now_key())

    def save_many(self, items: Iterable[SaveItem]) -> int:
        """Save every pair in one transaction (see BulkSaving): one commit, one index flush."""
        prepared = []
        for conversation, messages in checked_save_items(items):
            prepared.append(
                (conversation, encode_conversation(conversation), [encode_message(m) for m in messages])
            )
        if not prepared:
            self._check_open()
            return 0
        with self._transaction(f"saving {len(prepared)} conversations", write=True) as db:
            now = now_key()
            for conversation, row, encoded in prepared:
                self._save_rows(db, conversation, row, encoded, False, now)
        return len(prepared)

    def append(
        self,
        conversation_id: str,
        messages: Sequence[MessageRecord],
        *,
        updated_at: datetime | None = None,
    ) -> bool:
        updated_at = check_append(messages, updated_at)
        if not is_storable_id(conversation_id):
            self._check_open()
            return False
        encoded = [encode_message(message) for message in messages]
        with self._transaction(f"appending to conversation {conversation_id}", write=True) as db:
            found = self._live_row(db, "pk, next_position", conversation_id)
            if found is None:
                return False
            pk, next_position = found
            if updated_at is not None:
                db.execute(
                    "UPDATE conversations SET updated_at = ?, updated_key = ? WHERE pk = ?",
                    (updated_at.isoformat(), time_key(updated_at), pk),
                )
            self._save_messages(db, pk, next_position, encoded, stored_before=True, replace=False)
        return True

    def _save_rows(
        self,
        db: sqlite3.Connection,
        conversation: ConversationRecord,
        row: dict[str, Any],
        encoded: list[tuple[Any, ...]],
        replace: bool,
        now: str,
    ) -> None:
        """The writes of a save, inside the caller's write transaction.

        A conversation expired at ``now`` is removed first, so the save starts it afresh.
        """
        found = db.execute(
            "SELECT pk, title, next_position, expires_key FROM conversations WHERE id = ?", (conversation.id,)
        ).fetchone()
        if found is not None and found[3] is not None and found[3] <= now:
            self._remove_conversation(db, found[0], found[1])
            found = None
        if found is None:
            pk: int = db.execute(  # type: ignore[assignment]  # an INSERT always sets lastrowid
                """INSERT INTO conversations (id, title, model_name, created_at, updated_at,
                    created_key, updated_key, metadata, expires_key)
                   VALUES (:id, :title, :model_name, :created_at, :updated_at,
                    :created_key, :updated_key, :metadata, :expires_key)""",
                row,
            ).lastrowid
            old_title, next_position = None, 0
            self._index(db, "title_index", pk, conversation.title)
        else:
            pk, old_title, next_position, _ = found
            db.execute(
                """UPDATE conversations SET title = :title, model_name = :model_name,
                    created_at = :created_at, updated_at = :updated_at,
                    created_key = :created_key, updated_key = :updated_key, metadata = :metadata,
                    expires_key = :expires_key
                   WHERE pk = :pk""",
                {**row, "pk": pk},
            )
            if old_title != conversation.title:
                self._index(db, "title_index", pk, old_title, remove=True)
                self._index(db, "title_index", pk, conversation.title)
        self._save_messages(db, pk, next_position, encoded, stored_before=found is not None, replace=replace)

    def _save_messages(
        self,
        db: sqlite3.Connection,
        pk: int,
        next_position: int,
        encoded: list[tuple[Any, ...]],
        *,
        stored_before: bool,
        replace: bool,
    ) -> None:
        """The message writes of a save into conversation ``pk`` (``stored_before``: not new)."""
        stored: dict[str, tuple[int, int, bytes]] = {}
        if stored_before:
            stored = self._stored_messages(db, pk, None if replace else [values[0] for values in encoded])
        if replace:
            wanted = {values[0] for values in encoded}
            for id_, (message_pk, _, _) in stored.items():
                if id_ not in wanted:
                    self._remove_message(db, message_pk)
            next_position = 0
        first_new_position = next_position
        new_rows: list[tuple[Any, ...]] = []
        for values in encoded:
            id_, digest = values[0], values[-1]
            existing = stored.get(id_)
            if existing is None:
                new_rows.append((pk, next_position, *values))
                next_position += 1
                if replace:  # positions of new and kept messages interleave: insert in order
                    self._insert_messages(db, new_rows, pk, None)
                    new_rows = []
                continue
            message_pk, position, old_digest = existing
            if replace:
                position = next_position
                next_position += 1
            if old_digest != digest:
                (old_content,) = db.execute(
                    "SELECT content FROM messages WHERE pk = ?", (message_pk,)
                ).fetchone()
                db.execute(
                    """UPDATE messages SET position = ?, role = ?, content = ?, created_at = ?,
                        metadata = ?, images = ?, tool_calls = ?, tool_call_id = ?, digest = ?
                       WHERE pk = ?""",
                    (position, *values[1:], message_pk),
                )
                if old_content != values[2]:
                    self._index(db, "message_index", message_pk, old_content, remove=True)
                    self._index(db, "message_index", message_pk, values[2])
            elif position != existing[1]:
                db.execute("UPDATE messages SET position = ? WHERE pk = ?", (position, message_pk))
        if new_rows:
            self._insert_messages(db, new_rows, pk, first_new_position)
        db.execute("UPDATE conversations SET next_position = ? WHERE pk = ?", (next_position, pk))

    def _insert_messages(
        self, db: sqlite3.Connection, rows: list[tuple[Any, ...]], pk: int, first_position: int | None
    ) -> None:
        """Insert new message rows (conversation_pk, position, columns..., digest) and index them.

        With ``first_position``, the rows are all the messages from that position on,
        so they are inserted with one executemany and their keys read back in one query.
        """
        insert = f"""INSERT INTO messages (conversation_pk, position, {MESSAGE_COLUMNS}, digest)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
        if first_position is None or len(rows) == 1:
            for row in rows:
                message_pk = db.execute(insert, row).lastrowid
                self._index(db, "message_index", message_pk, row[4])  # type: ignore[arg-type]
            return
        db.executemany(insert, rows)
        keys = db.execute(
            "SELECT pk FROM messages WHERE conversation_pk = ? AND position >= ? ORDER BY position",
            (pk, first_position),
        ).fetchall()
        bodies = [(key, index_body(row[4])) for (key,), row in zip(keys, rows, strict=True)]
        db.executemany("INSERT INTO message_index (rowid, body) VALUES (?, ?)", [b for b in bodies if b[1]])

    @staticmethod
    def _stored_messages(
        db: sqlite3.Connection, pk: int, ids: list[str] | None
    ) -> dict[str, tuple[int, int, bytes]]:
        """id -> (pk, position, digest) of stored messages: all of them, or just ``ids``.

        Looking up only the given ids keeps an append O(1) however long the history.
        """
        sql = "SELECT id, pk, position, digest FROM messages WHERE conversation_pk = ?"
        if ids is None:
            return {row[0]: row[1:] for row in db.execute(sql, (pk,))}
        found: dict[str, tuple[int, int, bytes]] = {}
        for start in range(0, len(ids), _ID_BATCH):
            batch = ids[start : start + _ID_BATCH]
            marks = ",".join("?" * len(batch))
            for row in db.execute(f"{sql} AND id IN ({marks})", (pk, *batch)):
                found[row[0]] = row[1:]
        return found

    def _remove_message(self, db: sqlite3.Connection, message_pk: int) -> None:
        (content,) = db.execute("SELECT content FROM messages WHERE pk = ?", (message_pk,)).fetchone()
        self._index(db, "message_index", message_pk, content, remove=True)
        db.execute("DELETE FROM messages WHERE pk = ?", (message_pk,))

    def delete(self, conversation_id: str) -> bool:
        if not is_storable_id(conversation_id):
            self._check_open()
            return False
        with self._transaction(f"deleting conversation {conversation_id}", write=True) as db:
            found = db.execute(
                f"SELECT pk, title, {_LIVE} FROM conversations c WHERE id = :id",
                {"id": conversation_id, "now": now_key()},
            ).fetchone()
            if found is None:
                return False
            pk, title, live = found
            self._remove_conversation(db, pk, title)  # an expired one goes too, reported missing
            self._after_delete(db)
        self._truncate_wal()
        return bool(live)

    def _remove_conversation(self, db: sqlite3.Connection, pk: int, title: str | None) -> None:
        """Delete conversation ``pk``, its messages and all their search entries (in the caller's transaction)."""
        for message_pk, content in db.execute(
            "SELECT pk, content FROM messages WHERE conversation_pk = ?", (pk,)
        ).fetchall():
            self._index(db, "message_index", message_pk, content, remove=True)
        self._index(db, "title_index", pk, title, remove=True)
        db.execute("DELETE FROM conversations WHERE pk = ?", (pk,))  # cascades to messages

    def purge_expired(self) -> int:
        """See :class:`~qv_session_manager.protocol.Expiring`; one transaction, then the deletes' purge rule."""
        with self._transaction("removing expired conversations", write=True) as db:
            doomed = db.execute(
                "SELECT pk, title FROM conversations WHERE expires_key <= ?", (now_key(),)
            ).fetchall()
            for pk, title in doomed:
                self._remove_conversation(db, pk, title)
            if doomed:
                self._after_delete(db)
        if doomed:
            self._truncate_wal()
        return len(doomed)

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        if not (is_storable_id(conversation_id) and is_storable_id(message_id)):
            self._check_open()
            return False
        with self._transaction(f"deleting message {message_id}", write=True) as db:
            found = db.execute(
                f"""SELECT m.pk FROM messages m JOIN conversations c ON c.pk = m.conversation_pk
                   WHERE c.id = :id AND m.id = :message_id AND {_LIVE}""",
                {"id": conversation_id, "message_id": message_id, "now": now_key()},
            ).fetchone()
            if found is None:
                return False
            self._remove_message(db, found[0])
            self._after_delete(db)
        self._truncate_wal()
        return True

    def _after_delete(self, db: sqlite3.Connection) -> None:
        """Purge now, or note (in the delete's own transaction) that a purge is due."""
        if self._purge_at_once:
            self._merge_indexes(db)
        else:
            db.execute("INSERT OR REPLACE INTO store_info (key, value) VALUES ('purge_pending', '1')")

    @staticmethod
    def _merge_indexes(db: sqlite3.Connection) -> None:
        # FTS5 keeps deleted tokens in old index segments until they are merged;
        # merging everything means deleted text leaves the file (secure_delete
        # then overwrites the freed pages).
        db.execute("INSERT INTO message_index (message_index) VALUES ('optimize')")
        db.execute("INSERT INTO title_index (title_index) VALUES ('optimize')")
        db.execute("DELETE FROM store_info WHERE key = 'purge_pending'")

    def purge(self) -> bool:
        """Remove what deletes left in the search index and the WAL; True if there was any.

        Deletes since the last purge (by any process) are noted in the file, so a purge
        due before a crash still happens at the next purge or close.
        """
        pending = "SELECT 1 FROM store_info WHERE key = 'purge_pending'"
        with self._transaction("checking for deleted text", write=False) as db:
            if db.execute(pending).fetchone() is None:
                return False  # a read only: stores that cannot be written close quietly
        with self._transaction("purging deleted text", write=True) as db:
            due = db.execute(pending).fetchone() is not None
            if due:
                self._merge_indexes(db)
        self._truncate_wal()
        return due

    def _truncate_wal(self) -> None:
        """Copy the WAL into the database and empty it, so deleted text leaves the WAL too.

        Best effort: a reader in another process can keep part of the WAL alive; the
        next checkpoint then finishes the job.
        """
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except self._driver.Error:
                pass

    # -- reads ----------------------------------------------------------------

    def load(self, conversation_id: str) -> StoredConversation | None:
        if not is_storable_id(conversation_id):
            self._check_open()
            return None
        with self._transaction(f"loading conversation {conversation_id}", write=False) as db:
            found = self._live_row(db, f"pk, {CONVERSATION_COLUMNS}", conversation_id)
            if found is None:
                return None
            rows = db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_pk = ? ORDER BY position, pk",
                (found[0],),
            ).fetchall()
        return StoredConversation(decode_conversation(found[1:]), tuple(map(decode_message, rows)))

    def load_window(
        self,
        conversation_id: str,
        *,
        last_messages: int | None = None,
        last_turns: int | None = None,
        keep_system: bool = True,
    ) -> StoredConversation | None:
        """See :class:`~qv_session_manager.protocol.WindowedLoading`.

        Reads the conversation's messages backwards from the newest through the
        position index, a batch at a time (each twice the last), until the shared
        rule can place the window's start; then the leading system messages before
        it. The rows read are about twice the window, however long the history.
        """
        check_window(last_messages, last_turns, keep_system)
        if not is_storable_id(conversation_id):
            self._check_open()
            return None
        with self._transaction(f"loading the end of conversation {conversation_id}", write=False) as db:
            found = self._live_row(db, f"pk, {CONVERSATION_COLUMNS}", conversation_id)
            if found is None:
                return None
            pk = found[0]
            tail = self._window_tail(db, pk, last_messages, last_turns)
            head: list[Any] = []
            if keep_system and tail:
                # The end of the leading system messages first, so that the read below has
                # one upper bound and stops there instead of scanning up to the window.
                first_other = db.execute(
                    """SELECT position, pk FROM messages WHERE conversation_pk = ? AND role <> 'system'
                       ORDER BY position, pk LIMIT 1""",
                    (pk,),
                ).fetchone()
                bound = min(tuple(first_other), tuple(tail[0][:2])) if first_other else tuple(tail[0][:2])
                head = db.execute(
                    f"""SELECT {MESSAGE_COLUMNS} FROM messages
                        WHERE conversation_pk = ? AND (position, pk) < (?, ?) ORDER BY position, pk""",
                    (pk, *bound),
                ).fetchall()
        rows = [*head, *(row[2:] for row in tail)]
        return StoredConversation(decode_conversation(found[1:]), tuple(map(decode_message, rows)))

    @staticmethod
    def _window_tail(
        db: sqlite3.Connection, pk: int, last_messages: int | None, last_turns: int | None
    ) -> list[Any]:
        """The window's rows (position, pk, message columns...) in stored order, read from the end."""
        wanted = last_messages if last_messages is not None else 4 * last_turns + 4  # type: ignore[operator]
        batch = max(8, min(wanted + 1, 1 << 40))
        newest_first: list[Any] = []
        while True:
            condition, params = "", {"pk": pk, "limit": batch}
            if newest_first:
                condition = "AND (position, pk) < (:position, :message_pk)"
                params.update(position=newest_first[-1][0], message_pk=newest_first[-1][1])
            rows = db.execute(
                f"""SELECT position, pk, {MESSAGE_COLUMNS} FROM messages
                    WHERE conversation_pk = :pk {condition}
                    ORDER BY position DESC, pk DESC LIMIT :limit""",
                params,
            ).fetchall()
            newest_first += rows
            complete = len(rows) < batch
            tail = newest_first[::-1]
            start = window_start(
                [row[3] for row in tail], last_messages=last_messages, last_turns=last_turns, complete=complete
            )
            if start is not None:
                return tail[start:]
            batch = min(batch * 2, 1 << 40)

    def get(self, conversation_id: str) -> ConversationRecord | None:
        if not is_storable_id(conversation_id):
            self._check_open()
            return None
        with self._transaction(f"reading conversation {conversation_id}", write=False) as db:
            found = self._live_row(db, CONVERSATION_COLUMNS, conversation_id)
        return None if found is None else decode_conversation(found)

    @staticmethod
    def _where(filter: ConversationFilter) -> tuple[str, dict[str, Any]]:
        """SQL conditions on conversations ``c`` for a filter, with named parameters.

        Expired conversations never pass (the time of the call is the ``now`` parameter).
        """
        check_filter(filter)
        key = _TIME_FIELDS[filter.field]
        conditions = [_LIVE]
        params: dict[str, Any] = {"now": now_key()}
        if filter.start is not None:
            conditions.append(f"c.{key} >= :start")
            params["start"] = time_key(filter.start)
        if filter.end is not None:
            conditions.append(f"c.{key} < :end")
            params["end"] = time_key(filter.end)
        matches = []
        for index, (name, value) in enumerate((filter.metadata or {}).items()):
            params[f"key{index}"] = name
            match = f"SELECT 1 FROM json_each(c.metadata) WHERE key = :key{index}"
            if value is None or isinstance(value, bool):
                json_type = "null" if value is None else ("true" if value else "false")
                matches.append(f"EXISTS ({match} AND type = '{json_type}')")
            else:
                types = "'text'" if isinstance(value, str) else "'integer', 'real'"
                matches.append(f"EXISTS ({match} AND type IN ({types}) AND value = :value{index})")
                params[f"value{index}"] = value
        if matches:
            params["metadata_filter"] = json.dumps(filter.metadata)
            conditions.append(
                f"CASE WHEN {_METADATA_HAS_NUL} THEN qv_metadata_matches(c.metadata, :metadata_filter)"
                f" ELSE ({' AND '.join(matches)}) END"
            )
        return " AND ".join(conditions), params

    def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> list[ConversationRecord]:
        check_page(limit, offset)
        where, params = self._where(filter)
        key = _TIME_FIELDS[filter.field]
        if after is not None:
            where += f" AND (c.{key}, c.id) < (:after_key, :after_id)"
            params.update(after_key=time_key(getattr(after, filter.field)), after_id=after.id)
        sql = (
            f"SELECT c.id, c.title, c.model_name, c.created_at, c.updated_at, c.metadata"
            f" FROM conversations c WHERE {where}"
            f" ORDER BY c.{key} DESC, c.id DESC LIMIT :limit OFFSET :offset"
        )
        params.update(limit=-1 if limit is None else limit, offset=offset)
        with self._transaction("listing conversations", write=False) as db:
            rows = db.execute(sql, params).fetchall()
        return [decode_conversation(row) for row in rows]

    def search(
        self,
        query: Query,
        filter: ConversationFilter,
        *,
        order: SearchOrder = "recent",
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> builtins.list[SearchHit]:
        self._check_open()
        check_page(limit, offset)
        check_order(order)
        where, params = self._where(filter)
        if query.is_empty:
            return []
        key = _TIME_FIELDS[filter.field]
        relevance = order == "relevance"
        if relevance:
            best = "SELECT cpk, min(position), NULL, min(rank) FROM matched GROUP BY cpk"
        else:
            # With a single min() SQLite takes the bare column (id) from the row holding the
            # minimum, so the first matching document comes for free; no bm25 either.
            best = "SELECT cpk, min(position), id, 0 FROM matched GROUP BY cpk"
        message_at = (
            "(SELECT {column} FROM messages WHERE conversation_pk = page.cpk AND position = page.position"
            " ORDER BY pk LIMIT 1)"
        )
        message_id = message_at.format(column="id") if relevance else "page.message_id"
        text = (
            f"CASE WHEN page.position < 0 THEN page.title ELSE {message_at.format(column='content')} END"
            if with_text else "NULL"
        )
        ranking = "rank, " if relevance else ""
        # The page is cut first, so message ids and texts are looked up for its rows only.
        sql = f"""
            WITH matched (cpk, position, id, rank) AS (
                SELECT m.conversation_pk, m.position, m.id, {'message_index.rank' if relevance else '0'}
                FROM message_index JOIN messages m ON m.pk = message_index.rowid
                WHERE message_index MATCH :match
                UNION ALL
                SELECT title_index.rowid, -1, NULL, {'title_index.rank' if relevance else '0'}
                FROM title_index WHERE title_index MATCH :match
            ),
            best (cpk, position, message_id, rank) AS ({best}),
            page AS (
                SELECT c.pk AS cpk, c.id, c.title, c.model_name, c.created_at, c.updated_at, c.metadata,
                    c.{key}, best.position, best.message_id, best.rank
                FROM best JOIN conversations c ON c.pk = best.cpk
                WHERE {where}
                ORDER BY {ranking}c.{key} DESC, c.id DESC
                LIMIT :limit OFFSET :offset
            )
            SELECT page.id, page.title, page.model_name, page.created_at, page.updated_at, page.metadata,
                CASE WHEN page.position < 0 THEN NULL ELSE {message_id} END, {text}, -page.rank
            FROM page ORDER BY {ranking}page.{key} DESC, page.id DESC"""
        params.update(match=to_fts5(query), limit=-1 if limit is None else limit, offset=offset)
        with self._transaction("searching", write=False) as db:
            rows = db.execute(sql, params).fetchall()
        return [
            SearchHit(
                conversation=decode_conversation(row[:6]),
                message_id=row[6],
                text=row[7],
                score=row[8] if order == "relevance" else None,
            )
            for row in rows
        ]

    def close(self) -> None:
        """Purge if deletes are pending (see :meth:`purge`), then close. Closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            try:
                self.purge()
            except StorageError as exc:  # e.g. a read-only file or a busy writer: purge another time
                log.warning("could not purge deleted text while closing %s: %s", self.path, exc)
            self._closed = True
            self._db.close()
