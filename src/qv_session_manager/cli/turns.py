"""One chat turn on the terminal: the reply streamed and escaped as it arrives, Ctrl-C and Ollama errors.

Contracts:

- :class:`ReplyPrinter` writes each chunk through
  :func:`~qv_session_manager.safe_text.terminal_safe` as it arrives. That function
  maps every code point on its own, so what is printed is exactly
  ``terminal_safe(whole reply)`` however the reply is cut into chunks: an escape is
  never split, no control character of the model reaches the terminal, and rich
  never sees the text (so ``[red]`` prints as written).
- :func:`take_turn` streams one reply through ``client.stream_chat`` with autosave
  attached, so the store follows the autosave rule (:mod:`qv_session_manager.ollama`):
  after the turn it holds every message of ``client.conversation``. A completed reply
  is saved with its user message; a reply stopped by Ctrl-C or failed by Ollama is
  dropped by the SDK and only the user message is saved. Never a partial reply.
- :class:`SaveShield` keeps Ctrl-C from interrupting a save: while ``AutoSave.sync``
  runs, SIGINT is held and raised as KeyboardInterrupt right after the save ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

import httpx
from ollama import ResponseError
from pydantic_core import PydanticSerializationError
from qv_ollama_sdk.client import OllamaChatClient
from qv_ollama_sdk.domain.models import MessageRole

from ..errors import ConversationNotFoundError, SessionStoreError
from ..ollama import AutoSave
from ..redact import mask_url
from ..safe_text import terminal_safe

__all__ = [
    "Outcome",
    "ReplyPrinter",
    "SaveShield",
    "describe_ollama_error",
    "describe_store_error",
    "is_wrapped_interrupt",
    "ollama_address",
    "take_turn",
]

#: What the ``ollama`` client raises when a turn fails on Ollama's side.
OLLAMA_ERRORS = (ResponseError, ConnectionError, httpx.HTTPError)
#: Ollama's address when OLLAMA_HOST is not set (the ``ollama`` client's default).
DEFAULT_ADDRESS = "http://127.0.0.1:11434"


class ReplyPrinter:
    """Writes a streamed reply chunk by chunk, escaped, flushing after each one."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._open = False
        self._last = ""

    def write(self, chunk: str) -> None:
        """Print ``chunk`` as ``terminal_safe(chunk)`` at once (nothing for an empty chunk)."""
        if not chunk:
            return
        shown = terminal_safe(chunk)
        self._stream.write(shown)
        self._stream.flush()
        self._open, self._last = True, shown[-1]

    def end(self) -> None:
        """End the reply's last line (so that what follows starts on a line of its own)."""
        if self._open and self._last != "\n":
            self._stream.write("\n")
            self._stream.flush()
        self._open = False


class SaveShield:
    """Holds SIGINT while a save runs; :meth:`active` installs it for the main thread."""

    def __init__(self) -> None:
        self._saving = False
        self._held = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._saving:
            self._held = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Within this block Ctrl-C raises KeyboardInterrupt as usual, except during a shielded save."""
        previous = signal.signal(signal.SIGINT, self._handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def protect(self, saver: AutoSave) -> None:
        """Make every ``saver.sync()`` (the turn's own saves included) run with SIGINT held.

        A Ctrl-C that arrived meanwhile is raised as KeyboardInterrupt once the save
        has ended (stored or failed), so a save is never cut in the middle.
        """
        original = saver.sync

        def sync() -> int:
            self._saving = True
            try:
                return original()
            finally:
                self._saving = False
                if self._held:
                    self._held = False
                    raise KeyboardInterrupt  # the held Ctrl-C, now that the save is over

        # AutoSave calls self.sync(): an instance attribute reaches its own calls too.
        setattr(saver, "sync", sync)  # noqa: B010 - mypy refuses assigning to a method


@dataclass(frozen=True)
class Outcome:
    """How a turn ended.

    ``answered``: the reply is complete in ``client.conversation``; ``stopped``: Ctrl-C
    ended it; ``problem``: one line saying what failed and what to do (None when
    nothing failed); ``fatal``: the chat cannot go on (the conversation was deleted
    from the store meanwhile); ``saved``: the store holds every message of the client.
    """

    answered: bool
    stopped: bool = False
    problem: str | None = None
    fatal: bool = False
    saved: bool = True


def ollama_address() -> str:
    """The Ollama address the ``ollama`` client uses, as shown to the user (password masked)."""
    return mask_url(os.environ.get("OLLAMA_HOST") or DEFAULT_ADDRESS)


def describe_ollama_error(error: BaseException, model: str) -> str:
    """One line for a failed request to Ollama, saying what to do."""
    where = ollama_address()
    if isinstance(error, ResponseError):
        text = " ".join(str(error.error).split())
        if error.status_code == 404 and "not found" in text:
            return f"model {model!r} is not on the Ollama server at {where}: run `ollama pull {model}` or choose another with --model"
        if error.status_code == -1:
            return f"Ollama failed in the middle of the reply: {text}"
        return f"Ollama at {where} answered HTTP {error.status_code}: {text}"
    if isinstance(error, (ConnectionError, httpx.ConnectError)):  # a stream's refused connection is httpx's
        return f"cannot reach Ollama at {where}: start it (`ollama serve`) or point OLLAMA_HOST at it"
    return f"the connection to Ollama at {where} failed: {' '.join(str(error).split()) or type(error).__name__}"


def take_turn(client: OllamaChatClient, saver: AutoSave, text: str, out: TextIO) -> Outcome:
    """Send ``text``, print the streamed reply to ``out`` and return how the turn ended.

    Ctrl-C (KeyboardInterrupt) while the reply streams stops it; Ollama's errors and
    store errors are caught and described. Whatever happens, messages the store lacks
    afterwards are saved once more (a save that fails again stays pending, as autosave
    keeps it, and goes with the next turn).
    """
    before = len(client.conversation.messages)
    printer = ReplyPrinter(out)
    stopped = False
    failure: str | None = None
    save_error: SessionStoreError | None = None
    try:
        try:
            stream = client.stream_chat(text)
            try:
                for chunk in stream:
                    printer.write(chunk.content or "")
            finally:
                # Closing a stream stopped early saves the turn (autosave's rule).
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
        finally:
            printer.end()
    except KeyboardInterrupt:
        stopped = True
    except ConversationNotFoundError:
        return Outcome(answered=False, problem=_deleted(saver), fatal=True, saved=False)
    except SessionStoreError as error:
        save_error = error
    except BrokenPipeError:  # our own output went away (a ConnectionError too, but not Ollama's)
        raise
    except OLLAMA_ERRORS as error:
        failure = describe_ollama_error(error, client.conversation.model_name)
    except Exception as error:  # noqa: BLE001 - one line, never a traceback; the store is synced below
        if is_wrapped_interrupt(error):
            stopped = True
        else:
            failure = f"the turn failed unexpectedly ({type(error).__name__}: {_first_line(error)})"
    if saver.pending():  # a save failed (or was never reached): once more
        try:
            saver.sync()
        except KeyboardInterrupt:
            stopped = True
        except ConversationNotFoundError:
            return Outcome(answered=False, problem=_deleted(saver), fatal=True, saved=False)
        except SessionStoreError as error:
            save_error = error
    unsaved = bool(saver.pending())
    answered = any(m.role == MessageRole.ASSISTANT for m in client.conversation.messages[before:])
    problems = []
    if failure is not None:
        problems.append(f"{failure}; {'type' if unsaved else 'your message is saved, type'} another message or /exit")
    if unsaved:
        reason = describe_store_error(save_error) if save_error is not None else "the store refused the messages"
        problems.append(f"saving failed: {reason}; the unsaved messages go with the next turn")
    return Outcome(answered=answered, stopped=stopped, problem="; ".join(problems) or None, saved=not unsaved)


def is_wrapped_interrupt(error: Exception) -> bool:
    """True for a Ctrl-C that pydantic turned into an error: a KeyboardInterrupt raised while
    the ``ollama`` client serializes the request comes out as a PydanticSerializationError."""
    return isinstance(error, PydanticSerializationError) and "KeyboardInterrupt" in str(error)


def describe_store_error(error: SessionStoreError) -> str:
    """The first line of a store error's message (its class name when it has none)."""
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error).strip() else type(error).__name__


def _deleted(saver: AutoSave) -> str:
    return f"conversation {saver.conversation_id} was deleted from the store meanwhile; the chat stops"
