"""What happens when a conversation arrives under an id its destination already holds.

One rule for every path that brings conversations into a store from elsewhere:
imports (JSON Lines, JSON, ShareGPT; a repeated id within one file counts as well)
and :func:`~qv_session_manager.transfer.copy_store`. The incoming conversation is
never merged with the stored one; ``on_conflict`` picks one of:

- ``"skip"``: the stored conversation stays exactly as it is; the incoming one is
  not written (and is reported as skipped);
- ``"replace"``: the incoming conversation replaces the stored one whole (title,
  metadata, times and exactly its own messages, as ``save(..., replace=True)``);
- ``"rename"``: both are kept: the incoming conversation is written under a new
  random id (a UUID4), messages and everything else unchanged;
- ``"fail"``: the collision is an error (ImportFormatError for the line of an
  import, following ``on_error``; ConversationExistsError for a copy), raised
  before the incoming conversation is written.

An id is taken when the destination holds a conversation under it that reads can
see (an expired conversation is missing to every read, so it does not count), or
when an earlier conversation of the same import batch was given it. The check and
the write are separate calls: a conversation saved under the same id by another
writer in between is treated as the store's upserts treat any two writers (see the
README's guarantees), so run imports and copies while nobody else writes those ids.
"""

from __future__ import annotations

import dataclasses
import uuid
from enum import Enum
from typing import Literal

from .errors import InvalidInputError
from .records import StoredConversation

OnConflict = Literal["skip", "replace", "rename", "fail"]
#: The choices of ``on_conflict``, in the order the CLI lists them.
ON_CONFLICT_CHOICES: tuple[str, ...] = ("skip", "replace", "rename", "fail")


class Outcome(Enum):
    """What becomes of one incoming conversation."""

    NEW = "new"  #: written under its own id, which was free
    SKIPPED = "skipped"  #: not written; the stored one is kept
    REPLACED = "replaced"  #: written over the stored one
    RENAMED = "renamed"  #: written under a new id
    FAILED = "failed"  #: refused as an error


def check_on_conflict(on_conflict: object) -> None:
    """Raise InvalidInputError unless ``on_conflict`` is one of ON_CONFLICT_CHOICES."""
    if not isinstance(on_conflict, str) or on_conflict not in ON_CONFLICT_CHOICES:
        raise InvalidInputError(f"on_conflict must be one of {list(ON_CONFLICT_CHOICES)}, not {on_conflict!r}")


def decide(taken: bool, on_conflict: OnConflict) -> Outcome:
    """The outcome for a conversation whose id is ``taken`` or free."""
    if not taken:
        return Outcome.NEW
    return {
        "skip": Outcome.SKIPPED,
        "replace": Outcome.REPLACED,
        "rename": Outcome.RENAMED,
        "fail": Outcome.FAILED,
    }[on_conflict]


def with_new_id(stored: StoredConversation) -> StoredConversation:
    """``stored`` under a fresh random id; everything else, messages included, unchanged.

    Message ids are scoped to their conversation in every backend, so they need no change.
    """
    record = dataclasses.replace(stored.conversation, id=str(uuid.uuid4()))
    return StoredConversation(record, stored.messages)


def conflict_reason(conversation_id: str, outcome: Outcome) -> str:
    """Why a conversation was skipped or refused, naming its id and the choice that applied."""
    choice = "skip" if outcome is Outcome.SKIPPED else "fail"
    return f"a conversation with id {conversation_id!r} is already stored (on_conflict={choice!r})"
