"""A conversation with hostile text in every field, for the CLI and export safety tests."""

from __future__ import annotations

from datetime import datetime

from qv_ollama_sdk.domain.models import (
    Conversation,
    Function,
    Message,
    MessageRole,
    ToolCall,
)

#: Clears the screen, sets the window title (OSC 0 ended by BEL), a C1 CSI, a bidi
#: override and rich markup: none of it may act on a terminal.
ATTACK = "\x1b[2J\x1b]0;PWNED\x07\x9b31m\u202e[red]x[/red][link=http://e.vil]y[/link]"
#: ATTACK without slashes, for file names.
FILE_ATTACK = "\x1b[2J\x1b]0;PWNED\x07\x9b31m\u202e[red]x[/red]"
#: The part of the attack every output shows, escaped (terminal_safe, then JSON's form).
TITLE_SHOWN = ("\\x1b]0;PWNED\\x07", "\\u001b]0;PWNED\\u0007")
#: How terminal_safe shows ATTACK.
SHOWN = "\\x1b[2J\\x1b]0;PWNED\\x07\\x9b31m\\u202e[red]x[/red][link=http://e.vil]y[/link]"
#: Cells a spreadsheet would run: one per formula trigger.
FORMULAS = ('=HYPERLINK("http://e.vil","x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1")
CONVERSATION_ID = f"id{ATTACK}"
MOMENT = datetime(2025, 3, 1, 12, 0, 0)


def hostile_conversation(conversation_id: str = CONVERSATION_ID, formula: str = FORMULAS[0]) -> Conversation:
    """Every field holds ATTACK (behind a word, so search finds it) or, for CSV, ``formula``."""
    call = ToolCall(
        function=Function(name=f"tool{ATTACK}", arguments={f"arg{ATTACK}": f"{formula}{ATTACK}"}), id=f"call{ATTACK}"
    )
    conversation = Conversation(
        id=conversation_id,
        title=f"{formula}title{ATTACK}",
        model_name=f"model{ATTACK}",
        created_at=MOMENT,
        updated_at=MOMENT,
        metadata={f"key{ATTACK}": f"value{ATTACK}", "n": [f"list{ATTACK}"]},
    )
    conversation.messages = [
        Message(
            role=MessageRole.USER, content=f"hello {ATTACK} world", id=f"{formula}message{ATTACK}", created_at=MOMENT
        ),
        Message(role=MessageRole.ASSISTANT, content=formula, tool_calls=[call], created_at=MOMENT),
        Message(
            role=MessageRole.TOOL, content=f"{formula}result", tool_call_id=f"{formula}call{ATTACK}", created_at=MOMENT
        ),
    ]
    return conversation
