"""qv-session-manager: store, search and resume qv-ollama-sdk conversations.

``SessionManager`` is the entry point; backends plug in through the
``qv_session_manager`` entry-point group (see :mod:`qv_session_manager.hookspecs`).
"""

from .aio import AsyncSessionManager  # the async API (qv_session_manager.aio)
from .errors import (
    BackendConflictError,
    ConversationExistsError,
    ConversationNotFoundError,
    CorruptStorageError,
    EncryptionKeyError,
    ImportFormatError,
    InvalidInputError,
    PluginLoadWarning,
    ReadOnlyStorageError,
    SchemaVersionError,
    SessionStoreError,
    StorageBusyError,
    StorageError,
    StorageFullError,
    UnknownBackendError,
    UnsupportedOperationError,
)
from .hookspecs import hookimpl
from .manager import EXPIRES_AT, FORKED_FROM, SessionManager
from .protocol import BulkSaving, Capability, ConversationFilter, ConversationStore, Expiring, offers
from .records import ConversationRecord, MessageRecord, SearchHit, StoredConversation, ToolCallRecord
from .registry import Backend, available_backends, open_store
from .transfer import CopyReport, copy_store

__version__ = "1.0.0.dev0"
#: Kept from 0.3.0, whose package module defined it.
__author__ = "qv-session-manager contributors"

# 0.3.0's module path (``from qv_session_manager.session_manager import SessionManager``),
# bound here as 0.3.0's package bound it, so ``qv_session_manager.session_manager`` works
# after a plain ``import qv_session_manager``.
from . import session_manager as session_manager

__all__ = [
    "EXPIRES_AT",
    "FORKED_FROM",
    "AsyncSessionManager",
    "Backend",
    "BackendConflictError",
    "BulkSaving",
    "Capability",
    "ConversationExistsError",
    "ConversationFilter",
    "ConversationNotFoundError",
    "ConversationRecord",
    "ConversationStore",
    "CopyReport",
    "CorruptStorageError",
    "EncryptionKeyError",
    "Expiring",
    "ImportFormatError",
    "InvalidInputError",
    "MessageRecord",
    "PluginLoadWarning",
    "ReadOnlyStorageError",
    "SchemaVersionError",
    "SearchHit",
    "SessionManager",
    "SessionStoreError",
    "StorageBusyError",
    "StorageError",
    "StorageFullError",
    "StoredConversation",
    "ToolCallRecord",
    "UnknownBackendError",
    "UnsupportedOperationError",
    "available_backends",
    "copy_store",
    "hookimpl",
    "offers",
    "open_store",
]
