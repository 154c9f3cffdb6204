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
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import ModuleType
from typing import Any, Literal, cast

from ...errors import (
    CorruptStorageError,
    EncryptionKeyError,
    InvalidInputError,
    ReadOnlyStorageError,
    StorageError,
)
from ...private_files import touch_private_file
from ...protocol import Capability, ConversationFilter, SaveItem, SearchOrder
from ...query import Query, bm25
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
from ...rules import (
    check_filter,
    check_order,
    check_page,
    check_window,
    common_bound,
    now_key,
    window_start,
)
from ...text import tokens
from ...timeutil import time_key
from ...vector_records import (
    EmbeddingTask,
    VectorSpace,
    check_limit,
    check_space,
    checked_embeddings,
    checked_vector,
)
from . import cipher, drivers, schema, secure_index, vector_cache, vectors
from .errors import EncryptedOrCorruptError, translate
from .matching import term_match, to_fts5
from .readonly import connect_read_only
from .rows import (
    CONVERSATION_COLUMNS,
    LIVE,
    MESSAGE_COLUMNS,
    body_column,
    decode_conversation,
    decode_message,
    encode_conversation,
    encode_message,
    summary_of_row,
)

log = logging.getLogger("qv_session_manager")

Synchronous = Literal["full", "normal"]
Purge = Literal["on_close", "immediate"]
_TIME_FIELDS = {"updated_at": "updated_key", "created_at": "created_key"}
_LOAD = f"""SELECT {", ".join(f"c.{name}" for name in CONVERSATION_COLUMNS.split(", "))},
    {", ".join(f"m.{name}" for name in MESSAGE_COLUMNS.split(", "))}
    FROM conversations c LEFT JOIN messages m ON m.conversation_pk = c.pk
    WHERE c.id = :id AND {LIVE} ORDER BY m.position, m.pk"""
_ID_BATCH = 500  # ids per IN (...) lookup, well below SQLite's variable limit
#: Conversation columns a save rewrites only when they changed, and what it then sets.
_UPDATED_WITH = ("model_name", "created_at", "updated_at", "metadata", "expires_key")
_UPDATABLE = ", ".join(_UPDATED_WITH)
_ASSIGNMENTS = (
    "model_name = :model_name",
    "created_at = :created_at, created_key = :created_key",
    "updated_at = :updated_at, updated_key = :updated_key",
    "metadata = :metadata",
    "expires_key = :expires_key",
)
#: A new message row: (conversation_pk, position, MESSAGE_COLUMNS..., digest, index_body).
_INSERT_MESSAGE = f"""INSERT INTO messages (conversation_pk, position, {MESSAGE_COLUMNS}, digest, index_body)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


#: A revision token of this store: see :func:`_token`.
_Token = tuple[int, int, int, tuple[Any, ...]]


class _Stale(Exception):
    """A conditional save found the conversation no longer at the expected revision (rolled back)."""


def _token(pk: int, revision: int, next_position: int, row: dict[str, Any]) -> _Token:
    """The revision token of a save: (key, count of writes, next free position, stored fields).

    Only (key, count) identify the revision; the rest is what the conversation's row
    holds at that revision, so a chat turn saved against the token needs no lookup.
    """
    return pk, revision, next_position, (row["title"], *(row[column] for column in _UPDATED_WITH))


def _is_token(value: object) -> bool:
    return type(value) is tuple and len(value) == 4


def _changes(row: dict[str, Any], stored: tuple[Any, ...]) -> str:
    """The SET assignments for the fields of ``row`` that differ from ``stored`` (title, then _UPDATED_WITH).

    Only the fields that changed are written: fewer index entries to touch, and the
    title's reindexing trigger fires for real changes alone.
    """
    changes = "".join(
        f", {assignments}"
        for column, old, assignments in zip(_UPDATED_WITH, stored[1:], _ASSIGNMENTS)
        if row[column] != old
    )
    if row["title"] != stored[0]:
        changes += ", title = :title, title_body = :title_body"
    return changes


#: Saves with at most this many messages try to insert each one and look up only those already stored.
_FEW = 4
#: Rows waiting for the search index at which a write transaction indexes them all.
FLUSH_AT = 256
#: An upper bound of the messages and of the conversations waiting for the search index.
_WAITING = """SELECT
    (SELECT coalesce(max(pk), 0) FROM messages) - (SELECT indexed_upto FROM search_state WHERE kind = 'messages'),
    (SELECT coalesce(max(pk), 0) FROM conversations) - (SELECT indexed_upto FROM search_state WHERE kind = 'titles')"""
#: SQLite's JSON functions cut a string at an escaped NUL (``\u0000``), so json_each would
#: both miss and wrongly match such keys and values. Rows whose metadata text holds that
#: escape are checked by the reference rule (records.metadata_matches) in Python instead.
_METADATA_HAS_NUL = "instr(c.metadata, '\\u0000') > 0"


#: A row when a purge is due: entries of deleted rows wait in ``index_removals``, or an
#: edit (or an older library) left tokens in the index segments (``purge_pending``).
_PURGE_DUE = """SELECT 1 FROM store_info WHERE key = 'purge_pending'
    UNION ALL SELECT 1 FROM index_removals LIMIT 1"""
#: The rows waiting for the search index: (conversation key, position or -1 for the title, message id, text).
_WAITING_ROWS = """
    SELECT conversation_pk, position, id, content FROM messages
    WHERE pk > (SELECT indexed_upto FROM search_state WHERE kind = 'messages')
    UNION ALL
    SELECT pk, -1, NULL, title FROM conversations
    WHERE pk > (SELECT indexed_upto FROM search_state WHERE kind = 'titles') AND title IS NOT NULL"""


def _matching_waiting_rows(waiting: list[Any], query: Query, relevance: bool) -> str | None:
    """The waiting rows that match ``query``, as JSON rows of the search's ``matched`` table; None for none.

    They are matched by the shared rule (Query.matches over the shared tokens), which
    the index answers for indexed rows, so the hits are the same either way. Their
    relevance is BM25 with statistics of the waiting rows alone: close to FTS5's, not
    identical (rows wait only while the store cannot be written, or for a moment).
    """
    documents = [(row, tokens(row[3])) for row in waiting]
    found = [(row, document) for row, document in documents if query.matches(document)]
    if not found:
        return None
    statistics: dict[str, Any] = {}
    if relevance:
        lengths = [len(document) for _, document in documents]
        statistics = {
            "documents": len(documents),
            "average_length": sum(lengths) / len(lengths),
            "document_frequency": {
                term: sum(1 for _, document in documents if term.matches(document)) for term in query.terms()
            },
        }
    return json.dumps(
        [[row[0], row[1], row[2], -bm25(query, document, **statistics) if relevance else 0] for row, document in found]
    )


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


def _is_zero_length(path: str) -> bool:
    """Whether ``path`` is a regular file holding no bytes (what ``mkstemp``, ``touch`` and
    ``NamedTemporaryFile`` leave behind). False when it cannot be examined."""
    try:
        return os.path.isfile(path) and os.path.getsize(path) == 0
    except OSError:
        return False


def _connect(
    driver: ModuleType, path: str, key_statement: str | None, busy_timeout: float, *, uri: bool = False
) -> sqlite3.Connection:
    """A connection to ``path`` (a ``file:`` URI when ``uri``); with a key, keyed first and checked with one read.

    The key must come before any other statement. A key that does not open the
    file (SQLITE_NOTADB at the first read) raises EncryptedOrCorruptError, having
    written nothing.
    """
    db: sqlite3.Connection = driver.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False, uri=uri
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


#: What every SQLite store can do; files add PERSISTENT and MULTI_PROCESS.
_SIDES = frozenset(
    {
        Capability.RELEVANCE,
        Capability.EXPIRY,
        Capability.BULK_SAVING,
        Capability.REVISIONED_SAVING,
        Capability.SUMMARY_LISTING,
        Capability.WINDOWED_LOADING,
        Capability.PURGING,
        Capability.INDEX_INSPECTION,
        Capability.VECTOR_STORAGE,
        Capability.TOKEN_COUNTING,
    }
)


class SQLiteStore:
    """A :class:`~qv_session_manager.protocol.ConversationStore` in one SQLite file.

    ``path`` is a file path or ``":memory:"``. ``synchronous="full"`` (default)
    makes every acknowledged save survive power loss; ``"normal"`` is faster and
    still survives application crashes, but may lose the last saves on power loss.
    ``busy_timeout`` is how long a write waits for another writer (seconds).

    New rows wait for the search index and are indexed in batches of :data:`FLUSH_AT`
    (in the save that completes a batch), before a search and at close; a search that
    cannot write scans the waiting rows instead, with the same hits.

    Deleting removes the rows at once (nothing finds deleted text again: searches only
    reach live rows) and ``secure_delete`` zeroes the freed pages; the rows' search
    entries wait in the file (``index_removals``) for :meth:`purge`, which removes them
    and empties the WAL, so no deleted text stays in the files. By default
    (``purge="on_close"``) it runs once, in :meth:`close`, after deletes; with
    ``purge="immediate"`` every delete purges before it returns. Where the driver's
    SQLite is 3.42 or later, FTS5's secure-delete removes each entry with its tokens: a
    purge costs about 1-4 ms per deleted message whatever the index size, up to what
    merging the whole index costs (then it merges instead). With an older SQLite (this
    Python's own may be one; ``driver="pysqlite3"`` brings a newer one), FTS5 keeps
    removed tokens in its index segments until they are merged, and every purge
    merges the whole index: about 0.1 s at 20k messages, 0.6 s at 130k. Secure-delete
    is turned on once and is one-way; see :mod:`.secure_index`.

    ``driver`` names the DB-API module: ``"sqlite3"`` (the default) or ``"pysqlite3"``
    (see :mod:`.drivers`); a key always means SQLCipher's.

    ``key`` encrypts the whole file with SQLCipher (the ``[sqlcipher]`` extra): a
    ``str`` passphrase, or ``bytes`` of 32 as a raw key (see
    :mod:`qv_session_manager.backends.sqlite.cipher`). Pages, WAL frames and the
    search indexes are then encrypted on disk while search works as usual. The key
    is used to open the connection and not kept.

    A missing file is created with the whole schema beside ``path`` and linked into
    place, so no other process sees it half made. A zero-length file (what
    ``tempfile.mkstemp``, ``NamedTemporaryFile`` and ``touch`` make) is, as for
    sqlite3, an empty database: it becomes a new store in place, logged at INFO. It
    stays the same file (inode, permissions, open handles keep working) and gets the
    schema through the versioned migrations, each one ``BEGIN IMMEDIATE``
    transaction with its version bump: a process opening it at the same time waits
    for or applies each step once, and a crash leaves the empty file or a complete
    earlier version that the next open finishes.

    ``read_only=True`` (the URL's ``?mode=ro``) opens an existing file without write
    access: nothing is created, migrated, indexed or purged, writes raise
    ReadOnlyStorageError, and other processes' writes are seen as usual.
    ``immutable=True`` (``?immutable=1``, implies read-only) also promises SQLite
    that nothing changes the file while it is open (read-only media, a copy nobody
    writes). A read-only store of a directory this process cannot write is read as
    immutable when no WAL content waits (see :mod:`.readonly`); :attr:`read_only` and
    :attr:`immutable` say how it was opened. A file that needs an upgrade cannot be
    opened read-only (SchemaVersionError); a missing one raises StorageError.

    Raises CorruptStorageError for a non-empty file that is not SQLite (truncated,
    garbage, text) and SchemaVersionError for a newer or unknown schema; the file
    is left untouched.
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
        read_only: bool = False,
        immutable: bool = False,
        driver: str | None = None,
    ) -> None:
        if not isinstance(read_only, bool) or not isinstance(immutable, bool):
            raise InvalidInputError("read_only and immutable must be True or False")
        try:
            path = os.fspath(path)
        except TypeError:
            raise InvalidInputError(
                f"a database path must be a str or os.PathLike, not {type(path).__name__}"
            ) from None
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
        if (read_only or immutable) and path == ":memory:":
            raise InvalidInputError("an in-memory store cannot be opened read-only (mode=ro, immutable=1)")
        driver_module = drivers.load_driver(driver, keyed=key_statement is not None)
        self._driver = driver_module
        engine = drivers.sqlite_version(driver_module)
        self.path = path
        #: Whether the store was opened without write access (``read_only``/``immutable``).
        self.read_only = read_only or immutable
        #: Whether SQLite reads the file as immutable (asked for, or see :mod:`.readonly`).
        self.immutable = immutable
        self._purge_at_once = purge == "immediate"
        self._secure_index = False  # FTS5 secure-delete (see .secure_index), known once open
        self._vectors = vector_cache.VectorCache()
        self._pending_from = vectors.PendingFrom()
        # False once indexing failed because the file cannot be written
        self._may_flush = not self.read_only
        self._inserted = [0, 0]  # messages, conversations inserted since the last flush (see _flush_when_due)
        self._lock = threading.RLock()
        self._closed = False
        in_memory = path == ":memory:"
        self.capabilities = _SIDES if in_memory else _SIDES | {Capability.PERSISTENT, Capability.MULTI_PROCESS}
        try:
            if self.read_only:
                path = os.path.abspath(path)
                if not os.path.exists(path):
                    raise StorageError(f"no database at {path}: a read-only store is never created")
                _check_header(path, keyed=key_statement is not None)
                self._db, self.immutable = connect_read_only(
                    lambda uri: _connect(driver_module, uri, key_statement, busy_timeout, uri=True),
                    path,
                    immutable=immutable,
                    error=driver_module.Error,
                )
            elif not in_memory:
                path = os.path.abspath(path)  # never let SQLite read 'file:...' as a URI
                if os.path.exists(path):
                    if _is_zero_length(path):
                        log.info("%s is a zero-length file: opening it as a new, empty store", path)
                    _check_header(path, keyed=key_statement is not None)
                else:
                    _create_atomically(
                        path, lambda new: _connect(driver_module, new, key_statement, busy_timeout), _prepare_new
                    )
            if not self.read_only:
                self._db = _connect(driver_module, path, key_statement, busy_timeout)
        except (driver_module.Error, UnicodeDecodeError) as exc:
            raise translate(exc, f"opening {path}") from exc
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.create_function("qv_metadata_matches", 2, _metadata_passes, deterministic=True)
            # Migrate (which first refuses newer or foreign schemas) before switching to
            # WAL: the switch rewrites the file header, and a refused file must stay untouched.
            secure_index.check_readable(self._db, engine)
            if self.read_only:
                schema.check_readable(self._db)
                self._secure_index = secure_index.is_on(self._db)
            else:
                schema.migrate(self._db)
                self._secure_index = secure_index.turn_on(self._db, engine)
            self._inserted = [max(0, int(count)) for count in self._db.execute(_WAITING).fetchone()]
            if not (self.read_only or in_memory) and self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._db.execute("PRAGMA journal_mode = WAL")
        except BaseException as exc:
            self._db.close()
            if isinstance(exc, (driver_module.Error, UnicodeDecodeError)):
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

    @contextmanager
    def _read(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The connection for a read of ONE statement: it is atomic by itself, so it needs no
        BEGIN and COMMIT around it (two statements fewer per call)."""
        with self._lock:
            self._check_open()
            try:
                yield self._db
            except (self._driver.Error, UnicodeDecodeError) as exc:
                raise translate(exc, doing) from exc

    @staticmethod
    def _live_row(db: sqlite3.Connection, columns: str, conversation_id: str) -> Any:
        """``columns`` of the conversation ``conversation_id`` (alias ``c``); None when it is missing or expired."""
        return db.execute(
            f"SELECT {columns} FROM conversations c WHERE id = :id AND {LIVE}",
            {"id": conversation_id, "now": now_key()},
        ).fetchone()

    def _flush_when_due(self, db: sqlite3.Connection) -> None:
        """Index the rows waiting for the search index once :data:`FLUSH_AT` of either kind wait.

        Runs at the end of every write transaction. New rows wait instead of being
        indexed by their own save: FTS5 pays for every small commit (a new segment,
        merges), so indexing them in batches makes a save cost what the rows cost.
        Searches see waiting rows too (see :meth:`search`). The count is this store's
        own inserts (no query per save); rows other processes add are indexed by their
        own stores, by searches and at close, so what waits stays bounded either way.
        """
        if max(self._inserted) >= FLUSH_AT:
            schema.flush_index(db)
            self._inserted = [0, 0]

    # -- writes ---------------------------------------------------------------

    def save(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
    ) -> None:
        self.save_revisioned(conversation, messages, replace=replace)

    def save_revisioned(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
        expected: Hashable | None = None,
    ) -> Hashable | None:
        """See :class:`~qv_session_manager.protocol.RevisionedSaving`.

        The revision is (key, count, ...) (see :func:`_token`): the conversation's key is
        never reused and the count goes up with every write of this library to it.
        Writes by other programs (the sqlite3 shell) are not counted. A save of a few
        messages with ``expected`` (a chat turn) is written without looking the
        conversation up first and rolled back if it is not at that revision.
        """
        check_save(conversation, messages)
        row = encode_conversation(conversation)
        encoded = [encode_message(message) for message in messages]
        revision: _Token | None
        try:
            with self._transaction(f"saving conversation {conversation.id}", write=True) as db:
                if _is_token(expected) and not replace and len(encoded) <= _FEW:
                    revision = self._save_turn(db, row, encoded, cast(_Token, expected), now_key())
                else:
                    revision = self._save_rows(db, conversation, row, encoded, replace, now_key(), expected)
                if revision is not None:
                    self._flush_when_due(db)
        except _Stale:
            return None
        return revision

    def save_many(self, items: Iterable[SaveItem]) -> int:
        """Save every pair in one transaction (see BulkSaving): one commit, one index flush."""
        prepared = []
        for conversation, messages in checked_save_items(items):
            prepared.append((conversation, encode_conversation(conversation), [encode_message(m) for m in messages]))
        if not prepared:
            self._check_open()
            return 0
        with self._transaction(f"saving {len(prepared)} conversations", write=True) as db:
            now = now_key()
            for conversation, row, encoded in prepared:
                self._save_rows(db, conversation, row, encoded, False, now)
            self._flush_when_due(db)
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
            next_position = self._save_messages(db, pk, next_position, encoded, stored_before=True, replace=False)
            if updated_at is None:
                db.execute(
                    "UPDATE conversations SET next_position = ?, revision = revision + 1 WHERE pk = ?",
                    (next_position, pk),
                )
            else:
                db.execute(
                    """UPDATE conversations SET next_position = ?, revision = revision + 1,
                        updated_at = ?, updated_key = ? WHERE pk = ?""",
                    (next_position, updated_at.isoformat(), time_key(updated_at), pk),
                )
            self._flush_when_due(db)
        return True

    def _save_rows(
        self,
        db: sqlite3.Connection,
        conversation: ConversationRecord,
        row: dict[str, Any],
        encoded: list[tuple[Any, ...]],
        replace: bool,
        now: str,
        expected: Hashable | None = None,
    ) -> _Token | None:
        """The writes of a save, inside the caller's write transaction; returns the revision token after it.

        A conversation expired at ``now`` is removed first, so the save starts it afresh.
        With ``expected``, nothing is written (None) unless the live conversation is at that revision.
        """
        found = db.execute(
            f"SELECT pk, title, next_position, expires_key, revision, {_UPDATABLE} FROM conversations WHERE id = ?",
            (conversation.id,),
        ).fetchone()
        expired = found is not None and found[3] is not None and found[3] <= now
        if expected is not None and (
            found is None or expired or not _is_token(expected) or (found[0], found[4]) != expected[:2]  # type: ignore[index]
        ):
            return None
        if expired:
            self._remove_conversation(db, found[0])
            found = None
        if found is None:
            # Every message of a new conversation is new (ids are distinct): positions 0..n-1.
            pk: int = db.execute(  # type: ignore[assignment]  # an INSERT always sets lastrowid
                """INSERT INTO conversations (id, title, model_name, created_at, updated_at,
                    created_key, updated_key, metadata, expires_key, title_body, next_position, revision)
                   VALUES (:id, :title, :model_name, :created_at, :updated_at,
                    :created_key, :updated_key, :metadata, :expires_key, :title_body, :count, 1)""",
                {**row, "count": len(encoded)},
            ).lastrowid
            self._inserted[1] += 1
            self._save_messages(db, pk, 0, encoded, stored_before=False, replace=replace)
            return _token(pk, 1, len(encoded), row)
        pk, old_title, next_position, _, revision = found[:5]
        next_position = self._save_messages(db, pk, next_position, encoded, stored_before=True, replace=replace)
        db.execute(
            f"UPDATE conversations SET next_position = :next_position, revision = :revision"
            f"{_changes(row, (old_title, *found[5:]))} WHERE pk = :pk",
            {**row, "pk": pk, "next_position": next_position, "revision": revision + 1},
        )
        return _token(pk, revision + 1, next_position, row)

    def _save_turn(
        self,
        db: sqlite3.Connection,
        row: dict[str, Any],
        encoded: list[tuple[Any, ...]],
        expected: _Token,
        now: str,
    ) -> _Token:
        """A save of a few messages into a conversation at revision ``expected``: a chat turn.

        The token names the conversation's key, revision, next free position and
        stored fields as of that revision, so nothing is looked up first: the messages
        are written, then the conversation's row, on condition that it is this
        conversation (the token may be another's), still at that revision and live. If
        it is not (another writer, a delete, an expiry), _Stale rolls everything back.
        Returns the new token.
        """
        pk, revision, next_position, stored = expected
        try:
            next_position = self._save_few(db, pk, next_position, encoded)
        except self._driver.IntegrityError as exc:  # the conversation is gone (foreign key)
            raise _Stale from exc
        updated = db.execute(
            f"UPDATE conversations SET next_position = :next_position, revision = :revision{_changes(row, stored)}"
            f" WHERE pk = :pk AND id = :id AND revision = :expected AND (expires_key IS NULL OR expires_key > :now)",
            {
                **row,
                "pk": pk,
                "next_position": next_position,
                "revision": revision + 1,
                "expected": revision,
                "now": now,
            },
        ).rowcount
        if not updated:
            raise _Stale
        return _token(pk, revision + 1, next_position, row)

    def _save_messages(
        self,
        db: sqlite3.Connection,
        pk: int,
        next_position: int,
        encoded: list[tuple[Any, ...]],
        *,
        stored_before: bool,
        replace: bool,
    ) -> int:
        """The message writes of a save into conversation ``pk`` (``stored_before``: not new).

        Returns the conversation's next free position, which the caller writes.
        """
        if stored_before and not replace and len(encoded) <= _FEW:
            return self._save_few(db, pk, next_position, encoded)
        stored: dict[str, tuple[int, int, bytes]] = {}
        if stored_before:
            stored = self._stored_messages(db, pk, None if replace else [values[0] for values in encoded])
        if replace:
            wanted = {values[0] for values in encoded}
            for id_, (message_pk, _, _) in stored.items():
                if id_ not in wanted:
                    self._remove_message(db, message_pk)
            next_position = 0
        new_rows: list[tuple[Any, ...]] = []
        for values in encoded:
            id_, digest = values[0], values[-1]
            existing = stored.get(id_)
            if existing is None:
                new_rows.append((pk, next_position, *values))
                next_position += 1
                if replace:  # positions of new and kept messages interleave: insert in order
                    self._insert_messages(db, new_rows)
                    new_rows = []
                continue
            message_pk, position, old_digest = existing
            if replace:
                position = next_position
                next_position += 1
            if old_digest != digest:
                self._rewrite_message(db, message_pk, position, values)
            elif position != existing[1]:
                db.execute("UPDATE messages SET position = ? WHERE pk = ?", (position, message_pk))
        if new_rows:
            self._insert_messages(db, new_rows)
        return next_position

    def _save_few(self, db: sqlite3.Connection, pk: int, next_position: int, encoded: list[tuple[Any, ...]]) -> int:
        """:meth:`_save_messages` for a few messages without ``replace``: a chat turn.

        Each message is inserted unless its id is stored (one statement for a new one),
        and only a stored one is looked up and rewritten if it changed. Returns the next
        free position.
        """
        insert = _INSERT_MESSAGE + " ON CONFLICT (conversation_pk, id) DO NOTHING"
        for values in encoded:
            if db.execute(insert, (pk, next_position, *values, body_column(values[2]))).rowcount:
                next_position += 1
                self._inserted[0] += 1
                continue
            message_pk, position, old_digest = db.execute(
                "SELECT pk, position, digest FROM messages WHERE conversation_pk = ? AND id = ?", (pk, values[0])
            ).fetchone()
            if old_digest != values[-1]:
                self._rewrite_message(db, message_pk, position, values)
        return next_position

    @staticmethod
    def _rewrite_message(db: sqlite3.Connection, message_pk: int, position: int, values: tuple[Any, ...]) -> None:
        """Overwrite stored message ``message_pk`` with encoded ``values`` at ``position``.

        The trigger messages_reindex replaces its search entry when the content changed.
        """
        db.execute(
            """UPDATE messages SET position = ?, role = ?, content = ?, created_at = ?,
                metadata = ?, images = ?, tool_calls = ?, tool_call_id = ?, digest = ?, index_body = ?
               WHERE pk = ?""",
            (position, *values[1:], body_column(values[2]), message_pk),
        )

    def _insert_messages(self, db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert new message rows (conversation_pk, position, columns..., digest), in the order given.

        They wait for the search index (see :meth:`_flush_when_due`).
        """
        if len(rows) == 1:
            db.execute(_INSERT_MESSAGE, (*rows[0], body_column(rows[0][4])))
        else:
            db.executemany(_INSERT_MESSAGE, [(*row, body_column(row[4])) for row in rows])
        self._inserted[0] += len(rows)

    @staticmethod
    def _stored_messages(db: sqlite3.Connection, pk: int, ids: list[str] | None) -> dict[str, tuple[int, int, bytes]]:
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

    @staticmethod
    def _remove_message(db: sqlite3.Connection, message_pk: int) -> None:
        db.execute("DELETE FROM messages WHERE pk = ?", (message_pk,))  # the triggers record its search entry

    def delete(self, conversation_id: str) -> bool:
        if not is_storable_id(conversation_id):
            self._check_open()
            return False
        with self._transaction(f"deleting conversation {conversation_id}", write=True) as db:
            found = db.execute(
                f"SELECT pk, {LIVE} FROM conversations c WHERE id = :id",
                {"id": conversation_id, "now": now_key()},
            ).fetchone()
            if found is None:
                return False
            pk, live = found
            self._remove_conversation(db, pk)  # an expired one goes too, reported missing
            purged = self._after_delete(db)
        if purged:
            self._truncate_wal()
        return bool(live)

    @staticmethod
    def _remove_conversation(db: sqlite3.Connection, pk: int) -> None:
        """Delete conversation ``pk`` (in the caller's transaction).

        Its messages go with it, through the schema's triggers, which also record
        their search entries for removal at the next purge (see schema.REMOVAL_TRIGGERS).
        """
        db.execute("DELETE FROM conversations WHERE pk = ?", (pk,))

    def purge_expired(self) -> int:
        """See :class:`~qv_session_manager.protocol.Expiring`; one transaction, then the deletes' purge rule."""
        with self._transaction("removing expired conversations", write=True) as db:
            removed = db.execute("DELETE FROM conversations WHERE expires_key <= ?", (now_key(),)).rowcount
            purged = self._after_delete(db) if removed else False
        if purged:
            self._truncate_wal()
        return removed

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        if not (is_storable_id(conversation_id) and is_storable_id(message_id)):
            self._check_open()
            return False
        with self._transaction(f"deleting message {message_id}", write=True) as db:
            found = db.execute(
                f"""SELECT m.pk, c.pk FROM messages m JOIN conversations c ON c.pk = m.conversation_pk
                   WHERE c.id = :id AND m.id = :message_id AND {LIVE}""",
                {"id": conversation_id, "message_id": message_id, "now": now_key()},
            ).fetchone()
            if found is None:
                return False
            self._remove_message(db, found[0])
            db.execute("UPDATE conversations SET revision = revision + 1 WHERE pk = ?", (found[1],))
            purged = self._after_delete(db)
        if purged:
            self._truncate_wal()
        return True

    def _after_delete(self, db: sqlite3.Connection) -> bool:
        """With ``purge="immediate"``, purge now (in the delete's transaction); True if it did.

        Otherwise the purge waits for :meth:`close` or :meth:`purge`: the triggers
        leave in the file what the index still holds for the deleted rows.
        """
        if self._purge_at_once and db.execute(_PURGE_DUE).fetchone() is not None:
            self._purge_index(db)
            return True
        return False

    def _purge_index(self, db: sqlite3.Connection) -> None:
        """Remove the deleted rows' entries from the search indexes, leaving no token of them.

        With FTS5 secure-delete each removal takes its tokens along, at a cost that does
        not grow with the index; that is done while the removals are few (see
        :func:`.secure_index.removals_are_few`). Otherwise, and always without
        secure-delete, the entries are marked removed and both indexes are merged whole,
        which drops their tokens (secure_delete then overwrites the freed pages).
        """
        if self._secure_index and secure_index.removals_are_few(db):
            schema.apply_removals(db)
        else:
            if self._secure_index:
                secure_index.set_on(db, False)  # mark only: the merge below removes the tokens
            schema.apply_removals(db)
            db.execute("INSERT INTO message_index (message_index) VALUES ('optimize')")
            db.execute("INSERT INTO title_index (title_index) VALUES ('optimize')")
            if self._secure_index:
                secure_index.set_on(db, True)
        db.execute("DELETE FROM store_info WHERE key = 'purge_pending'")

    def purge(self) -> bool:
        """Remove what deletes left in the search index and the WAL; True if there was any.

        Deletes since the last purge (by any process, 0.3.0 and the sqlite3 shell
        included) are recorded in the file by its triggers, so a purge due before a
        crash still happens at the next purge or close. Costs time in proportion to the
        deletes since the last purge where the driver's SQLite has FTS5 secure-delete,
        and to the whole index where it does not (see the class docstring).
        """
        with self._transaction("checking for deleted text", write=False) as db:
            if db.execute(_PURGE_DUE).fetchone() is None:
                return False  # a read only: stores that cannot be written close quietly
        with self._transaction("purging deleted text", write=True) as db:
            due = db.execute(_PURGE_DUE).fetchone() is not None
            if due:
                self._purge_index(db)
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
        # One statement (the conversation's columns repeat on each of its message rows):
        # atomic without a transaction, and one round through SQLite instead of four.
        with self._read(f"loading conversation {conversation_id}") as db:
            rows = db.execute(_LOAD, {"id": conversation_id, "now": now_key()}).fetchall()
        if not rows:
            return None
        messages = () if rows[0][6] is None else tuple(map(decode_message, (row[6:] for row in rows)))
        return StoredConversation(decode_conversation(rows[0][:6]), messages)

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
    def _window_tail(db: sqlite3.Connection, pk: int, last_messages: int | None, last_turns: int | None) -> list[Any]:
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
        with self._read(f"reading conversation {conversation_id}") as db:
            found = self._live_row(db, CONVERSATION_COLUMNS, conversation_id)
        return None if found is None else decode_conversation(found)

    @staticmethod
    def _where(filter: ConversationFilter) -> tuple[str, dict[str, Any]]:
        """SQL conditions on conversations ``c`` for a filter, with named parameters.

        Expired conversations never pass (the time of the call is the ``now`` parameter).
        """
        check_filter(filter)
        key = _TIME_FIELDS[filter.field]
        conditions = [LIVE]
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
        return [decode_conversation(row) for row in self._listed_rows(filter, limit, offset, after)]

    def list_summaries(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """See :class:`~qv_session_manager.protocol.SummaryListing`: the dicts straight from the rows.

        The stored timestamps are ``isoformat()`` text already, so no datetime is built
        (a timestamp another program wrote in another ISO spelling is given as stored).
        """
        return [summary_of_row(row) for row in self._listed_rows(filter, limit, offset, after)]

    def _listed_rows(
        self, filter: ConversationFilter, limit: int | None, offset: int, after: ConversationRecord | None
    ) -> builtins.list[Any]:
        """The conversations rows (CONVERSATION_COLUMNS) of a listing, in its order."""
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
        with self._read("listing conversations") as db:
            return db.execute(sql, params).fetchall()

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
            if with_text
            else "NULL"
        )
        ranking = "rank, " if relevance else ""
        params.update(match=to_fts5(query), limit=-1 if limit is None else limit, offset=offset)
        rows: builtins.list[Any] = []
        for attempt in range(2):
            with self._transaction("searching", write=False) as db:
                waiting = db.execute(_WAITING_ROWS).fetchall()
                # Rows waiting for the index are indexed first when the store can be
                # written; otherwise (or if more arrived meanwhile) they are scanned.
                index_first = bool(waiting) and attempt == 0 and self._may_flush
                if not index_first:
                    params["tail"] = _matching_waiting_rows(waiting, query, relevance)
                    sql = self._search_sql(
                        key, where, best, message_id, text, ranking, relevance, params["tail"] is not None
                    )
                    rows = db.execute(sql, params).fetchall()
            if not index_first:
                break
            self._flush_waiting()
        return [
            SearchHit(
                conversation=decode_conversation(row[:6]),
                message_id=row[6],
                text=row[7],
                score=row[8] if order == "relevance" else None,
            )
            for row in rows
        ]

    def _rows_wait(self) -> bool:
        """Whether rows wait for the search index (a read; False when even that fails)."""
        try:
            with self._transaction("checking for rows waiting for the index", write=False) as db:
                return any(count > 0 for count in db.execute(_WAITING).fetchone())
        except StorageError:
            return False

    def _flush_waiting(self) -> None:
        """Index every row waiting for the search index; on a store that cannot be written, stop trying."""
        try:
            with self._transaction("indexing new messages for search", write=True) as db:
                schema.flush_index(db)
            self._inserted = [0, 0]
        except StorageError as exc:
            # A read-only file, or a writer holding the lock past busy_timeout: searches
            # still see the waiting rows by scanning them (_matching_waiting_rows).
            if isinstance(exc, ReadOnlyStorageError):
                self._may_flush = False
            log.debug("searching %s without indexing the newest rows first: %s", self.path, exc)

    @staticmethod
    def _search_sql(
        key: str, where: str, best: str, message_id: str, text: str, ranking: str, relevance: bool, tail: bool
    ) -> str:
        waiting = (
            "UNION ALL SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(:tail)" if tail else ""
        )
        # The page is cut first, so message ids and texts are looked up for its rows only.
        return f"""
            WITH matched (cpk, position, id, rank) AS (
                SELECT m.conversation_pk, m.position, m.id, {"message_index.rank" if relevance else "0"}
                FROM message_index JOIN messages m ON m.pk = message_index.rowid
                WHERE message_index MATCH :match
                UNION ALL
                SELECT title_index.rowid, -1, NULL, {"title_index.rank" if relevance else "0"}
                FROM title_index WHERE title_index MATCH :match
                {waiting}
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

    def common_tokens(self, tokens: Sequence[str], *, share: float, minimum: int) -> builtins.set[str]:
        """See :class:`~qv_session_manager.protocol.TokenCounting`: counted in the message index
        (where deleted rows count until the next purge), after indexing the rows waiting
        for it where the store can be written."""
        common_bound(tokens, share, minimum, 0)  # the arguments' checks, before any reading
        self._check_open()
        if self._may_flush and self._rows_wait():
            self._flush_waiting()
        common: builtins.set[str] = set()
        with self._transaction("counting words", write=False) as db:
            (messages,) = db.execute("SELECT count(*) FROM messages").fetchone()
            bound = common_bound(tokens, share, minimum, messages)
            if messages <= bound:
                return common
            for token in dict.fromkeys(tokens):
                if not token:
                    continue
                (holding,) = db.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM message_index WHERE message_index MATCH :match LIMIT :bound + 1)",
                    {"match": term_match(token), "bound": bound},
                ).fetchone()
                if holding > bound:
                    common.add(token)
        return common

    # -- message vectors (protocol.VectorStorage; the SQL is in .vectors) --------------

    def pending_embeddings(self, space: VectorSpace, *, limit: int) -> builtins.list[EmbeddingTask]:
        """See :class:`~qv_session_manager.protocol.VectorStorage`: in key order (oldest rows first)."""
        check_space(space)
        check_limit(limit)
        with self._transaction("finding messages to embed", write=False) as db:
            return self._pending_from.pending(db, space, limit)

    def store_embeddings(self, space: VectorSpace, embedded: Sequence[tuple[EmbeddingTask, Sequence[float]]]) -> int:
        """See :class:`~qv_session_manager.protocol.VectorStorage`: one transaction."""
        checked = checked_embeddings(check_space(space), embedded)
        with self._transaction("storing message vectors", write=True) as db:
            return vectors.store(db, space, checked)

    def vector_search(
        self,
        space: VectorSpace,
        query: Sequence[float],
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> builtins.list[SearchHit]:
        """See :class:`~qv_session_manager.protocol.VectorStorage`: exact, over every vector of the space."""
        check_space(space)
        checked_vector(query, space)
        check_page(limit, offset)
        where, params = self._where(filter)
        key = _TIME_FIELDS[filter.field]
        end = None if limit is None else offset + limit
        if not vector_cache.available():
            with self._transaction("searching by meaning", write=False) as db:
                ranked = vectors.candidates(db, space, query, where, params, key)
                return vectors.hits(db, ranked[offset:end], decode_conversation, CONVERSATION_COLUMNS, with_text)
        everything = filter.start is None and filter.end is None and not filter.metadata
        with self._transaction("searching by meaning", write=False) as db:
            prepared = vector_cache.prepare(db, self._vectors, space, where, params, everything)
        chosen = {} if prepared is None else vector_cache.rank(prepared, query, end)  # outside the lock
        with self._transaction("searching by meaning", write=False) as db:
            if prepared is not None and not vector_cache.current(db, prepared):
                prepared = vector_cache.prepare(db, self._vectors, space, where, params, everything)
                chosen = {} if prepared is None else vector_cache.rank(prepared, query, end)
            ranked = vector_cache.finish(db, chosen, where, params, key, end)
            return vectors.hits(db, ranked[offset:end], decode_conversation, CONVERSATION_COLUMNS, with_text)

    def embedding_counts(self, space: VectorSpace) -> tuple[int, int]:
        """See :class:`~qv_session_manager.protocol.VectorStorage`."""
        check_space(space)
        with self._transaction("counting message vectors", write=False) as db:
            return vectors.counts(db, space)

    def forget_embeddings(self, space: VectorSpace | None = None) -> int:
        """See :class:`~qv_session_manager.protocol.VectorStorage`."""
        if space is not None:
            check_space(space)
        with self._transaction("removing message vectors", write=True) as db:
            removed = vectors.forget(db, space)
        return removed

    def indexed_tokens(self) -> builtins.set[str]:
        """See :class:`~qv_session_manager.protocol.IndexInspection`: both FTS5 vocabularies and the waiting rows.

        The vocabularies are read through ``fts5vocab`` tables, entry by entry, leaving
        out the entries of deleted rows that wait for the next purge (``index_removals``):
        those rows are gone, and no search reaches their entries.
        """
        held: builtins.set[str] = set()
        with self._transaction("reading the search index vocabulary", write=False) as db:
            for kind, (index, _) in schema.PENDING.items():
                db.execute(
                    f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{index}_entries USING fts5vocab(main, {index}, 'instance')"
                )
                held.update(
                    term
                    for (term,) in db.execute(
                        f"""SELECT DISTINCT term FROM temp.{index}_entries
                            WHERE doc NOT IN (SELECT key FROM index_removals WHERE kind = ?)""",
                        (kind,),
                    )
                )
            for *_, text in db.execute(_WAITING_ROWS):
                held.update(tokens(text))
        return held

    def close(self) -> None:
        """Purge if deletes are pending (see :meth:`purge`), then close. Closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            if self._may_flush and self._rows_wait():
                self._flush_waiting()  # so the next opener's searches use the index alone
            try:
                if not self.read_only:
                    self.purge()
            except StorageError as exc:  # e.g. a read-only file or a busy writer: purge another time
                log.warning("could not purge deleted text while closing %s: %s", self.path, exc)
            self._closed = True
            self._vectors.clear()
            self._db.close()
