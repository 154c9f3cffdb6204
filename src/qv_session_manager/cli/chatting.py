"""``qv-sessions chat``: continue a stored conversation, or start one, with Ollama in the terminal.

Contract:

- ``chat`` starts a new conversation (``--model``, ``--system``); ``chat ID`` (a unique
  prefix will do, :mod:`.ids`) and ``chat --last`` (the most recently updated
  conversation) continue a stored one, first showing its last ``--turns`` turns
  (loaded as a window, ``load_conversation(last_turns=N)``). ``--model`` on resume
  switches the conversation's model and records it (:func:`~qv_session_manager.ollama.resume`).
- Every turn is streamed and saved by the autosave integration
  (:mod:`qv_session_manager.ollama`); :mod:`.turns` says what a stopped or failed turn
  leaves in the store (never a partial reply).
- The session ends cleanly on ``/exit`` (or ``/quit``), Ctrl-D (end of input) and
  Ctrl-C at the prompt; Ctrl-C during a reply stops that reply and the chat goes on,
  as it does after an error of one turn (one ``error: ...`` line saying what to do).
- Exit code 0, or 1 when the last turn failed, when messages are left unsaved at the
  end, or when the chat cannot start or go on (missing conversation, store deleted
  meanwhile); 2 for usage errors.
- Model text reaches the terminal only escaped (:mod:`.turns`, :mod:`.render`);
  replies go to standard output, status lines to standard error.
"""

from __future__ import annotations

import logging
import os
import sys

import click
from qv_ollama_sdk.client import OllamaChatClient

from ..errors import SessionStoreError
from ..manager import SessionManager
from ..ollama import AutoSave, attached, autosave, resume
from .common import fail, open_manager, say, stdout_console
from .ids import all_ids, resolve_id, short_ids
from .render import transcript
from .turns import SaveShield, describe_store_error, take_turn

__all__ = ["chat_command"]

#: The model of a new chat when neither --model nor $OLLAMA_MODEL names one.
DEFAULT_MODEL = "llama3.2"
MODEL_VARIABLE = "OLLAMA_MODEL"
PROMPT = "> "
EXIT_WORDS = ("/exit", "/quit")


def _use_line_editing() -> None:
    """Arrow keys and history at the prompt, when typing on a terminal and readline exists."""
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401 - importing it is what turns line editing on for input()
        except ImportError:  # pragma: no cover - Windows without pyreadline
            pass


def _show_window(manager: SessionManager, key: str, turns: int) -> None:
    """Print the conversation's last ``turns`` turns (nothing when 0)."""
    if turns == 0:
        return
    window = manager.load_conversation(key, last_turns=turns)
    if window is None:
        fail(f"no conversation {key!r}")
    label = f"the last {turns} turn{'s' if turns != 1 else ''}"
    stdout_console().print(transcript(window, markdown=sys.stdout.isatty(), window=label))
    click.echo()


def _start(
    manager: SessionManager, key: str | None, model: str | None, system: str | None, turns: int
) -> tuple[OllamaChatClient, AutoSave]:
    """The client for this chat, with autosave attached: resumed (after showing its end) or new."""
    if key is None:
        client = OllamaChatClient(
            model_name=model or os.environ.get(MODEL_VARIABLE) or DEFAULT_MODEL, system_message=system
        )
        return client, autosave(client, manager)
    _show_window(manager, key, turns)
    client = resume(manager, key, model_name=model)
    if not client.conversation.model_name:  # stored without one (an import): as for a new chat, recorded as --model is
        client.conversation.model_name = os.environ.get(MODEL_VARIABLE) or DEFAULT_MODEL
        manager.save_conversation(client.conversation, [])
    saver = attached(client)
    assert saver is not None  # resume attaches autosave
    return client, saver


def _pick(manager: SessionManager, conversation_id: str | None, resume_last: bool) -> str | None:
    """The stored id to continue: ``conversation_id`` resolved, the newest for --last, else None (a new chat)."""
    if resume_last:
        newest = manager.list_conversations(limit=1)
        if not newest:
            fail("no conversation to continue: the store is empty (start one with `qv-sessions chat`)")
        return str(newest[0]["id"])
    if conversation_id is None:
        return None
    return resolve_id(manager, conversation_id)


@click.command("chat")
@click.argument("conversation_id", metavar="[ID]", required=False)
@click.option("--last", "resume_last", is_flag=True, help="Continue the most recently updated conversation.")
@click.option(
    "-m",
    "--model",
    default=None,
    metavar="NAME",
    help=f"The Ollama model. New chat: default ${MODEL_VARIABLE}, else {DEFAULT_MODEL}. "
    "Resumed: default the conversation's own (one stored without a model, e.g. imported: as for a new chat); "
    "another name switches it.",
)
@click.option("-s", "--system", default=None, metavar="TEXT", help="A system message (new chats only).")
@click.option(
    "--turns",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    metavar="N",
    help="On resume, show the last N turns first (0: none).",
)
@click.pass_context
def chat_command(
    ctx: click.Context,
    conversation_id: str | None,
    resume_last: bool,
    model: str | None,
    system: str | None,
    turns: int,
) -> None:
    """Chat with Ollama: continue conversation ID (a unique prefix will do), the newest with --last, or a new one.

    Replies stream as they come; every turn is saved as it ends. Ctrl-C stops a
    reply (your message is kept, the partial reply is not); /exit, Ctrl-D or Ctrl-C
    at the prompt end the chat. Ollama's address is $OLLAMA_HOST (default
    127.0.0.1:11434).
    """
    if resume_last and conversation_id is not None:
        raise click.UsageError("give either ID or --last")
    if system is not None and (resume_last or conversation_id is not None):
        raise click.UsageError("--system is for a new chat; a resumed conversation keeps its own")
    if model is not None and not model.strip():
        raise click.BadParameter("an empty name names no model", param_hint="--model")
    # A save that fails after a failed turn is reported here, not as a logged traceback.
    logging.getLogger("qv_session_manager").addHandler(logging.NullHandler())
    manager = open_manager(ctx, create=conversation_id is None and not resume_last)
    key = _pick(manager, conversation_id, resume_last)
    client, saver = _start(manager, key, model, system, turns)
    shield = SaveShield()
    shield.protect(saver)
    state = "continuing" if key is not None else "new conversation"
    say(f"{state} {saver.conversation_id} with {client.conversation.model_name}; /exit or Ctrl-D to leave")
    _use_line_editing()
    with shield.active():
        ending = _converse(client, saver)
    ctx.exit(1 if ending == FATAL else _finish(manager, saver, failed=ending == FAILED))


#: How a chat ended: the last turn went well (or none was taken), failed, or the chat could not go on.
OK, FAILED, FATAL = "ok", "failed", "fatal"


def _converse(client: OllamaChatClient, saver: AutoSave) -> str:
    """Read lines and take turns until the user leaves; how it ended (OK, FAILED or FATAL)."""
    ending = OK
    try:
        while True:
            try:
                line = input(PROMPT)
            except EOFError:
                click.echo()
                return ending
            text = line.strip()
            if not text:
                continue
            if text in EXIT_WORDS:
                return ending
            if line.startswith("/") and " " not in text:
                say(f"unknown command {text} (type /exit to leave; start a message with a space to send it as it is)")
                continue
            outcome = take_turn(client, saver, line, sys.stdout)
            if outcome.stopped and not outcome.fatal:
                kept = "the reply was complete" if outcome.answered else "the partial reply is dropped"
                say(f"stopped: {kept}{'; your message is saved' if outcome.saved else ''}")
            if outcome.problem is not None:
                say(f"error: {outcome.problem}")
            if outcome.fatal:
                return FATAL
            ending = FAILED if outcome.problem is not None else OK
    except KeyboardInterrupt:  # Ctrl-C at the prompt (or between turns)
        click.echo()
        return ending


def _finish(manager: SessionManager, saver: AutoSave, *, failed: bool) -> int:
    """Save what is left, say how to come back, and return the exit code."""
    if saver.pending():
        try:
            saver.sync()
        except SessionStoreError as error:
            say(f"error: {len(saver.pending())} message(s) could not be saved: {describe_store_error(error)}")
            return 1
    stored = manager.load_conversation(saver.conversation_id, last_messages=1) is not None
    if stored:
        short = short_ids(all_ids(manager), [saver.conversation_id])[saver.conversation_id]
        say(f"saved as {saver.conversation_id}; continue with `qv-sessions chat {short}`")
    return 1 if failed else 0
