"""Every error this library raises.

All of them derive from :class:`SessionStoreError`, and each also derives from the
builtin exception a caller would naturally catch (``ValueError`` for bad input,
``LookupError`` for unknown names, ``OSError`` for storage failures), so existing
``except ValueError`` code keeps working. No driver exception (``sqlite3.Error``,
``psycopg.Error``) escapes the library: backends translate them into these classes
and keep the original as ``__cause__``.
"""

from __future__ import annotations


class SessionStoreError(Exception):
    """Base class of every error raised by qv-session-manager."""


class InvalidInputError(SessionStoreError, ValueError):
    """An argument or a record cannot be stored or used as given.

    Raised before anything is written: the stored data stays exactly as it was.
    """


class ConversationExistsError(InvalidInputError):
    """A conversation cannot be written because its id is taken and ``on_conflict="fail"`` was asked.

    ``conversation_id`` names it. Raised before it is written (what was written before
    it by the same call stays written).
    """

    def __init__(self, conversation_id: str, reason: str) -> None:
        super().__init__(reason)
        self.conversation_id = conversation_id


class UnknownBackendError(SessionStoreError, LookupError):
    """No installed backend handles the requested name or URL scheme."""


class BackendConflictError(SessionStoreError, RuntimeError):
    """Two plugins registered a backend under the same name or URL scheme, or two
    distributions declared the same ``qv_session_manager`` entry-point name."""


class ConversationNotFoundError(SessionStoreError, LookupError):
    """A conversation that an operation needs does not exist.

    The seed API keeps its ``None``/``False`` answers for missing ids; this error is
    raised only by calls that cannot answer that way (for example appending to a
    conversation that was never saved).
    """


class UnsupportedOperationError(SessionStoreError, NotImplementedError):
    """A wrapper's optional method was called, but the store it wraps does not offer that side.

    Wrappers (``EncryptedStore``, ``ExpiryGuard``) define every optional method and
    declare only the sides their inner store offers; calling an undeclared one
    raises this instead of doing half of it. Check with
    :func:`qv_session_manager.protocol.offers` first.
    """


class StorageError(SessionStoreError, OSError):
    """The storage engine failed to carry out an operation.

    A failed write is rolled back completely: nothing of it is visible afterwards.
    """


class StorageBusyError(StorageError, TimeoutError):
    """The store stayed locked by another writer for longer than the busy timeout."""


class StorageFullError(StorageError):
    """The disk (or the configured size limit) is full."""


class ReadOnlyStorageError(StorageError, PermissionError):
    """The store cannot be written: read-only file, directory or connection."""


class CorruptStorageError(StorageError):
    """The stored data is not usable: a truncated, garbage or damaged file or record.

    (A zero-length file is not among them: like sqlite3, the SQLite backend opens it
    as a new, empty store.)
    """


class EncryptionKeyError(StorageError, PermissionError):
    """Encrypted data cannot be read with the key given: a missing, unknown or wrong key.

    Raised for a stored value whose key id is unknown or whose authentication fails
    (wrong key, a changed byte, a value moved to another field, message or
    conversation), and for an encrypted database opened without its key or with
    another one. Nothing is returned or changed in that case.
    """


class SchemaVersionError(StorageError):
    """The store was written by a newer version of this library, or has an unknown layout."""


class PluginLoadWarning(UserWarning):
    """A plugin failed to load; it was skipped and the host keeps running."""


class ImportFormatError(InvalidInputError):
    """A line (or item) of an import file cannot be read as a conversation.

    ``line`` is the 1-based line of the file where the bad line or item starts (line 1
    for a missing or foreign header); the message names it too. ``reason`` is the
    message without the line number.
    """

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason
