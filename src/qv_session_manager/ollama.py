"""Chats with Ollama that save themselves: autosave and resume for ``OllamaChatClient``.

``autosave(client, manager)`` attaches a :class:`SessionManager` to one
qv-ollama-sdk ``OllamaChatClient``. You keep calling ``client.chat()`` and
``client.stream_chat()``; every turn is saved as it ends. ``resume(manager, id)``
loads a stored conversation into a new client with autosave attached, so the chat
goes on where it stopped.

The rule, however a turn ends: **after every turn the store holds every message of
``client.conversation``, in the client's order.** Saving only appends:

- the first save is ``save_conversation(conversation)``: the conversation with every
  message it has by then, including those the client had before attaching (such as
  its system message);
- each later save is one ``add_messages`` call with only the messages added since
  (atomic, no reload, earlier messages are never rewritten).

What a turn leaves in ``client.conversation`` is the SDK's doing, so this is what is
saved:

- a completed turn: the user message, the assistant reply (with its ``tool_calls``)
  and the tool result messages (role ``tool``, with ``tool_call_id``);
- a turn that raises after the SDK added the user message (Ollama unreachable, an
  HTTP error, an error in the middle of a stream): the user message alone. The client
  keeps it and sends it to the model again as history on the next turn, so the store
  keeps it too;
- a stream the consumer stops early: the SDK drops the partial reply and keeps the
  user message, so the user message alone is saved, when the stream is closed:
  ``stream.close()``, leaving a ``with contextlib.closing(...)`` block, or (CPython)
  when the last reference to the stream goes, as after ``break`` in a ``for`` loop
  over ``client.stream_chat(...)`` itself. A stream never iterated did nothing and
  saves nothing.

Errors: a save that fails after a completed turn raises from ``chat()`` (or from the
stream's last step) after the turn: the reply is in ``client.conversation``, and the
messages not stored stay pending and go with the next save. When the turn itself
failed, the turn's error is raised and a failing save is only logged. A
conversation deleted from the store while the client is attached is not recreated:
its next save raises :class:`ConversationNotFoundError`.

Not mirrored, because saving only appends: edits and removals of messages already
saved (``client.clear_history()``, ``set_system_message()``, whose new system
message is appended at the end), and changes of the title or metadata after the
first save. Save those yourself with
``manager.save_conversation(client.conversation, replace=True)``. Assigning another
``Conversation`` to ``client.conversation`` starts saving that one (its first save
is again a ``save_conversation``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from qv_ollama_sdk.client import OllamaChatClient
from qv_ollama_sdk.domain.models import Conversation, GenerationResponse, Message

from .convert import canonical_id
from .errors import ConversationNotFoundError, InvalidInputError, SessionStoreError
from .manager import SessionManager

__all__ = ["AutoSave", "attached", "autosave", "resume"]

log = logging.getLogger("qv_session_manager")

#: The client methods that autosave wraps, on the instance only (the class is untouched).
_WRAPPED = ("chat", "stream_chat")
_ABSENT = object()


class AutoSave:
    """The handle of one client's autosave; made by :func:`autosave` or :func:`resume`.

    While attached, ``client.chat`` and ``client.stream_chat`` are this object's
    :meth:`chat` and :meth:`stream_chat` (instance attributes that shadow the class's
    methods); calling either on the client or on this handle is the same.
    """

    def __init__(
        self, client: OllamaChatClient, manager: SessionManager, *, stored: Conversation | None = None
    ) -> None:
        """Attach to ``client``. ``stored`` is the conversation as loaded from ``manager``:
        its messages count as saved already. Use :func:`autosave` or :func:`resume`."""
        self.client = client
        self.manager = manager
        self._lock = threading.RLock()
        self._key: str | None = None
        self._saved: set[str] = set()
        if stored is not None:
            self._key = canonical_id(stored.id)
            self._saved = {_message_key(m) for m in stored.messages}
        # Captured before installing, so a turn runs the client's own method (or
        # whatever instance attribute was there) and detach() can put it back.
        self._originals: dict[str, Callable[..., Any]] = {name: getattr(client, name) for name in _WRAPPED}
        self._previous: dict[str, object] = {name: vars(client).get(name, _ABSENT) for name in _WRAPPED}
        for name in _WRAPPED:
            setattr(client, name, getattr(self, name))

    # -- state ---------------------------------------------------------------

    @property
    def conversation_id(self) -> str:
        """The canonical id of the conversation the client holds now."""
        return canonical_id(self.client.conversation.id)

    @property
    def is_attached(self) -> bool:
        """True until :meth:`detach`."""
        return all(vars(self.client).get(name) == getattr(self, name) for name in _WRAPPED)

    def pending(self) -> list[Message]:
        """The client's messages not stored yet, in the client's order.

        Everything when the conversation was never saved (or the client now holds
        another conversation).
        """
        with self._lock:
            conversation = self.client.conversation
            if canonical_id(conversation.id) != self._key:
                return list(conversation.messages)
            return [m for m in conversation.messages if _message_key(m) not in self._saved]

    # -- saving --------------------------------------------------------------

    def sync(self) -> int:
        """Store the pending messages now; return how many were stored.

        The first save of a conversation is ``save_conversation`` with all its
        messages (it creates the conversation, even with no messages); later ones
        are one ``add_messages`` call with the pending messages, with the client's
        ``updated_at``, or nothing when none is pending. Raises what the manager
        raises (InvalidInputError, ConversationNotFoundError when the conversation
        was deleted from the store, StorageError); the messages then stay pending.
        """
        with self._lock:
            conversation = self.client.conversation
            key = canonical_id(conversation.id)
            if key != self._key:
                new = list(conversation.messages)
                self.manager.save_conversation(conversation, new)
                self._key, self._saved = key, set()
            else:
                new = [m for m in conversation.messages if _message_key(m) not in self._saved]
                if not new:
                    return 0
                self.manager.add_messages(key, new, updated_at=conversation.updated_at)
            self._saved.update(_message_key(m) for m in new)
            return len(new)

    def _sync_after_failure(self) -> None:
        # The turn's own error is what the caller must see; a save error is logged
        # and its messages stay pending for the next save.
        try:
            self.sync()
        except SessionStoreError:
            log.warning("autosave of conversation %s failed after a failed turn", self.conversation_id, exc_info=True)

    # -- the wrapped client methods ------------------------------------------

    def chat(self, message: str, *args: Any, **kwargs: Any) -> GenerationResponse:
        """``OllamaChatClient.chat`` (same arguments and result), then save the turn.

        If the turn raises, what it left in the client (the user message) is saved
        and the turn's error re-raised. If the save after a completed turn raises,
        that error is raised; the reply is in ``client.conversation``.
        """
        try:
            response: GenerationResponse = self._originals["chat"](message, *args, **kwargs)
        except BaseException:
            self._sync_after_failure()
            raise
        self.sync()
        return response

    def stream_chat(self, message: str, *args: Any, **kwargs: Any) -> Iterator[GenerationResponse]:
        """``OllamaChatClient.stream_chat`` (same arguments and chunks); saves the turn when it ends.

        The turn ends when the stream is exhausted (saved before the iteration
        stops, so a save error raises from the last ``next()``), when the stream is
        closed early (saved inside ``close()``), or when it raises (saved, then the
        error re-raised). Nothing runs, and nothing is saved, before the first ``next()``.
        """
        chunks = self._originals["stream_chat"](message, *args, **kwargs)
        try:
            yield from chunks
        except GeneratorExit:
            # Closed early: `yield from` has closed the SDK's stream already.
            self.sync()
            raise
        except BaseException:
            self._sync_after_failure()
            raise
        self.sync()

    # -- detaching -----------------------------------------------------------

    def detach(self) -> None:
        """Stop saving: the client's methods are its own again. Pending messages are not
        saved (call :meth:`sync` first to keep them). Detaching twice is harmless."""
        with self._lock:
            for name in _WRAPPED:
                if vars(self.client).get(name) != getattr(self, name):
                    continue
                previous = self._previous[name]
                if previous is _ABSENT:
                    delattr(self.client, name)
                else:
                    setattr(self.client, name, previous)


def _message_key(message: Message) -> str:
    return canonical_id(message.id, "message id")


def attached(client: OllamaChatClient) -> AutoSave | None:
    """The AutoSave attached to ``client``, or None when there is none."""
    handle = getattr(vars(client).get("chat"), "__self__", None)
    return handle if isinstance(handle, AutoSave) and handle.is_attached else None


def autosave(client: OllamaChatClient, manager: SessionManager) -> AutoSave:
    """Attach ``manager`` to ``client`` so that every turn saves itself (see the module doc).

    Nothing is written until the first turn ends (or :meth:`AutoSave.sync`). Keep
    calling ``client.chat`` / ``client.stream_chat``. Attaching the same manager
    again returns the attached handle; raises InvalidInputError (a ValueError) for
    an object that is not an ``OllamaChatClient`` or a client already attached to
    another manager (detach that one first).
    """
    if not isinstance(client, OllamaChatClient):
        raise InvalidInputError(f"autosave needs an OllamaChatClient, not {type(client).__name__}")
    if not isinstance(manager, SessionManager):
        raise InvalidInputError(f"autosave needs a SessionManager, not {type(manager).__name__}")
    current = attached(client)
    if current is not None:
        if current.manager is manager:
            return current
        raise InvalidInputError("this client already saves to another SessionManager; detach() that first")
    return AutoSave(client, manager)


def resume(
    manager: SessionManager, conversation_id: str, *, model_name: str | None = None, **client_kwargs: Any
) -> OllamaChatClient:
    """A new ``OllamaChatClient`` holding the stored conversation, with autosave attached.

    The chat continues the same conversation (same id): the model receives the whole
    stored history and new turns are appended to it. ``model_name`` switches the
    model and records the new name in the store at once; by default the stored
    model is used. ``client_kwargs`` go to ``OllamaChatClient`` (e.g.
    ``parameters=``), except ``system_message``: the stored conversation keeps its
    own (call ``client.set_system_message`` to add one).

    Raises ConversationNotFoundError (a LookupError) when no conversation has that
    id, InvalidInputError for ``system_message``.
    """
    if "system_message" in client_kwargs:
        raise InvalidInputError("resume keeps the stored system message; call client.set_system_message() to add one")
    conversation = manager.load_conversation(conversation_id)
    if conversation is None:
        raise ConversationNotFoundError(f"no conversation {conversation_id!r} to resume")
    if model_name is not None and model_name != conversation.model_name:
        conversation.model_name = model_name
        manager.save_conversation(conversation, [])
    client = OllamaChatClient(model_name=conversation.model_name, **client_kwargs)
    client.conversation = conversation
    AutoSave(client, manager, stored=conversation)
    return client
