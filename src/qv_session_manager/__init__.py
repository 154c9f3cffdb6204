"""qv-session-manager: store, search and resume qv-ollama-sdk conversations.

``SessionManager`` is the entry point; backends plug in through the
``qv_session_manager`` entry-point group (see :mod:`qv_session_manager.hookspecs`).
"""

from .aio import AsyncSessionManager  # the async API (qv_session_manager.aio)
from .embedding import Embedder, TextEmbedder, available_embedders, open_embedder
from .errors import (
    BackendConflictError,
    ConversationExistsError,
    ConversationNotFoundError,
    CorruptStorageError,
    EmbedderConflictError,
    EmbedderError,
    EmbedderUnavailableError,
    EmbeddingModelNotFoundError,
    EncryptionKeyError,
    ImportFormatError,
    InvalidEmbeddingError,
    InvalidInputError,
    MissingDependencyError,
    PluginConflictError,
    PluginLoadWarning,
    ReadOnlyStorageError,
    SchemaVersionError,
    SessionStoreError,
    StorageBusyError,
    StorageError,
    StorageFullError,
    UnknownBackendError,
    UnknownEmbedderError,
    UnsupportedOperationError,
)
from .hookspecs import hookimpl
from .manager import EXPIRES_AT, FORKED_FROM, SessionManager
from .meaning import EmbeddingProgress, SearchResults
from .protocol import BulkSaving, Capability, ConversationFilter, ConversationStore, Expiring, VectorStorage, offers
from .records import ConversationRecord, MessageRecord, SearchHit, StoredConversation, ToolCallRecord
from .registry import Backend, available_backends, open_store
from .transfer import CopyReport, copy_store
from .vector_records import EmbeddingTask, VectorSpace

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
    "Embedder",
    "EmbedderConflictError",
    "EmbedderError",
    "EmbedderUnavailableError",
    "EmbeddingModelNotFoundError",
    "EmbeddingProgress",
    "EmbeddingTask",
    "EncryptionKeyError",
    "Expiring",
    "ImportFormatError",
    "InvalidEmbeddingError",
    "InvalidInputError",
    "MessageRecord",
    "MissingDependencyError",
    "PluginConflictError",
    "PluginLoadWarning",
    "ReadOnlyStorageError",
    "SchemaVersionError",
    "SearchHit",
    "SearchResults",
    "SessionManager",
    "SessionStoreError",
    "StorageBusyError",
    "StorageError",
    "StorageFullError",
    "StoredConversation",
    "TextEmbedder",
    "ToolCallRecord",
    "UnknownBackendError",
    "UnknownEmbedderError",
    "UnsupportedOperationError",
    "VectorSpace",
    "VectorStorage",
    "available_backends",
    "available_embedders",
    "copy_store",
    "hookimpl",
    "offers",
    "open_embedder",
    "open_store",
]
