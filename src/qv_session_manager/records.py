"""Backend-neutral records: what crosses the storage protocol.

Records hold plain Python values only (no qv-ollama-sdk types), so a backend can be
written without importing the SDK. A record is validated when it is built: as
built, every backend can store it and give it back unchanged. Records are frozen,
but their dicts (``metadata``, tool-call ``arguments``) stay mutable, so a store
checks what it writes again: ``dataclasses.replace(record)`` repeats a record's
checks (a message's, not those of its ToolCallRecords), and
:func:`qv_session_manager.codec.dumps` and :func:`expiry_key` raise
InvalidInputError for what JSON cannot hold and for a bad ``expires_at``.
Timestamps are kept exactly as given (naive stays naive, aware keeps its offset).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import InvalidInputError
from .timeutil import time_key, time_range

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]
Image = str | bytes

#: The roles qv-ollama-sdk knows; a message with another role is refused.
ROLES = frozenset({"system", "user", "assistant", "tool"})

#: The reserved conversation metadata key holding its expiry: an ISO 8601 timestamp string
#: (``datetime.isoformat()``; naive counts as UTC). See :func:`expiry_of` and the protocol.
EXPIRES_AT = "expires_at"


def check_text(value: object, what: str, *, allow_none: bool = False) -> None:
    """Raise InvalidInputError unless ``value`` is a str that UTF-8 can encode.

    NUL and control characters are allowed; lone surrogates are not (no engine can
    store them).
    """
    if value is None and allow_none:
        return
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a str, not {type(value).__name__}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(
                f"{what} contains a lone surrogate at index {exc.start} (text must be valid Unicode)"
            ) from None


def check_id(value: object, what: str) -> None:
    """Raise InvalidInputError unless ``value`` is a usable, non-empty id string."""
    check_text(value, what)
    if not value or "\x00" in value:  # type: ignore[operator]  # check_text: a str
        raise InvalidInputError(f"{what} must be a non-empty string without NUL characters")


#: JSON nesting deeper than this is refused (and cycles with it).
MAX_JSON_DEPTH = 100


def is_storable_id(value: object) -> bool:
    """Whether ``value`` could name a stored conversation or message at all.

    Backends answer lookups of anything else with None/False instead of asking the engine.
    """
    try:
        check_id(value, "id")
    except InvalidInputError:
        return False
    return True


def check_json(value: object, what: str, depth: int = 0) -> None:
    """Raise InvalidInputError unless ``value`` round-trips through JSON unchanged.

    Allowed: dict with str keys, list, str, int within 64 bits, finite float, bool,
    None, nested at most MAX_JSON_DEPTH deep. Tuples, sets, non-str keys, NaN,
    infinities, bigger ints and cyclic structures are refused: JSON or some engine
    would change or reject them.
    """
    if depth > MAX_JSON_DEPTH:
        raise InvalidInputError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels (or is cyclic)")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise InvalidInputError(f"{what} is an int outside the 64-bit range, which not every engine can store")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{what} is {value!r}, which JSON cannot represent")
        return
    if isinstance(value, str):
        check_text(value, what)
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, f"{what}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{what} has a non-str key {key!r}; JSON keys are strings")
            check_text(key, f"key {key!r} of {what}")
            check_json(item, f"{what}[{key!r}]", depth + 1)
        return
    raise InvalidInputError(f"{what} is a {type(value).__name__}, which is not JSON data")


def check_datetime(value: object, what: str) -> None:
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is not None:  # naive ones always have a UTC form: themselves
        time_key(value)  # raises InvalidInputError when the instant has no UTC form


def expiry_of(metadata: Mapping[str, Any]) -> datetime | None:
    """The expiry a conversation's metadata holds under :data:`EXPIRES_AT`, None when it has none.

    The value must be a str holding an ISO 8601 date or datetime (a date means its
    midnight; a trailing ``Z`` is UTC) whose instant has a UTC form; anything else
    raises InvalidInputError naming the key. This is the one parser of expiries.
    """
    if EXPIRES_AT not in metadata:
        return None
    value = metadata[EXPIRES_AT]
    moment = None
    if isinstance(value, str):
        try:
            moment = time_range(value, None)[0]  # None for an empty string
            if moment is not None:
                time_key(moment)  # an aware instant out of range once in UTC has no key
        except InvalidInputError:
            moment = None
    if moment is None:
        raise InvalidInputError(f"metadata[{EXPIRES_AT!r}] must be an ISO 8601 timestamp string, not {value!r}")
    return moment


def expiry_key(metadata: Mapping[str, Any]) -> str | None:
    """The time key (see :func:`~qv_session_manager.timeutil.time_key`) of the metadata's expiry, or None.

    What backends store and compare; raises InvalidInputError as :func:`expiry_of` does.
    """
    moment = expiry_of(metadata)
    return None if moment is None else time_key(moment)


def stored_expiry_key(metadata: Mapping[str, Any]) -> str | None:
    """:func:`expiry_key` of metadata read back from storage: None when the value does not parse.

    Such a value was stored before ``expires_at`` was reserved; its conversation never expires.
    """
    try:
        return expiry_key(metadata)
    except InvalidInputError:
        return None


def fixed_offset(value: datetime) -> datetime:
    """``value`` with a named zone (ZoneInfo...) replaced by its fixed UTC offset.

    Every backend stores the offset, not the zone name, so records hold the same.
    """
    zone = value.tzinfo
    if zone is None or isinstance(zone, timezone):
        return value
    offset = value.utcoffset()
    return value.replace(tzinfo=None) if offset is None else value.replace(tzinfo=timezone(offset), fold=0)


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call of an assistant message."""

    name: str
    arguments: dict[str, JSONValue] = field(default_factory=dict)
    id: str | None = None

    def __post_init__(self) -> None:
        check_text(self.name, "tool call name")
        _check_arguments(self)
        check_text(self.id, "tool call id", allow_none=True)


@dataclass(frozen=True)
class MessageRecord:
    """One message. ``id`` is unique within its conversation."""

    id: str
    role: str
    content: str
    created_at: datetime
    metadata: dict[str, JSONValue] = field(default_factory=dict)
    images: tuple[Image, ...] | None = None
    tool_calls: tuple[ToolCallRecord, ...] | None = None
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        check_id(self.id, "message id")
        if self.role not in ROLES:
            raise InvalidInputError(f"message role {self.role!r} is not one of {sorted(ROLES)}")
        check_text(self.content, f"content of message {self.id}")
        check_datetime(self.created_at, f"created_at of message {self.id}")
        object.__setattr__(self, "created_at", fixed_offset(self.created_at))
        _check_metadata(self)
        if self.images is not None:
            if not isinstance(self.images, tuple):
                raise InvalidInputError("images must be a tuple of str or bytes")
            for index, image in enumerate(self.images):
                if type(image) is bytes:
                    continue
                if not isinstance(image, str):
                    raise InvalidInputError(
                        f"image {index} of message {self.id} must be str or bytes, not {type(image).__name__}"
                    )
                check_text(image, f"image {index} of message {self.id}")
        if self.tool_calls is not None and (
            not isinstance(self.tool_calls, tuple)
            or not all(isinstance(call, ToolCallRecord) for call in self.tool_calls)
        ):
            raise InvalidInputError("tool_calls must be a tuple of ToolCallRecord")
        check_text(self.tool_call_id, "tool_call_id", allow_none=True)

    @classmethod
    def unchecked(cls, **fields: Any) -> MessageRecord:
        """A record built without validation, for a backend decoding rows it wrote itself.

        Everything it stored passed validation when its record was built, so checking
        again on every read only costs time. Never use it on data from elsewhere.
        """
        record = object.__new__(cls)
        record.__dict__.update(fields)
        return record


@dataclass(frozen=True)
class ConversationRecord:
    """A conversation's own fields, without its messages."""

    id: str
    created_at: datetime
    updated_at: datetime
    title: str | None = None
    model_name: str | None = None
    metadata: dict[str, JSONValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_id(self.id, "conversation id")
        check_datetime(self.created_at, "conversation created_at")
        check_datetime(self.updated_at, "conversation updated_at")
        object.__setattr__(self, "created_at", fixed_offset(self.created_at))
        object.__setattr__(self, "updated_at", fixed_offset(self.updated_at))
        check_text(self.title, "title", allow_none=True)
        check_text(self.model_name, "model_name", allow_none=True)
        _check_metadata(self)

    @classmethod
    def unchecked(cls, **fields: Any) -> ConversationRecord:
        """A record built without validation, for a backend decoding rows it wrote itself.

        Everything it stored passed validation when its record was built, so checking
        again on every read only costs time. Never use it on data from elsewhere.
        """
        record = object.__new__(cls)
        record.__dict__.update(fields)
        return record

    @classmethod
    def from_storage(cls, **fields: Any) -> ConversationRecord:
        """A record validated as usual, for a backend decoding stored data, except for ``expires_at``.

        A metadata ``expires_at`` that does not parse was stored before the key was
        reserved: the record keeps it as it is (that conversation never expires)
        instead of being unreadable. Saving such a record again is refused until the
        value is fixed or removed.
        """
        metadata = fields.get("metadata")
        if not isinstance(metadata, dict) or EXPIRES_AT not in metadata:
            return cls(**fields)
        without = {key: value for key, value in metadata.items() if key != EXPIRES_AT}
        checked = cls(**{**fields, "metadata": without})
        return cls.unchecked(**{**checked.__dict__, "metadata": metadata})


@dataclass(frozen=True)
class StoredConversation:
    """A conversation with its messages in stored order."""

    conversation: ConversationRecord
    messages: tuple[MessageRecord, ...]


@dataclass(frozen=True)
class SearchHit:
    """One conversation that matched a search.

    ``message_id`` names the matched document: ``None`` when the title matched,
    otherwise the first matching message in stored order. ``text`` is that
    document's full text when the query asked for it (to build snippets), and
    ``score`` is a relevance score (higher is better) when ordering by relevance.
    """

    conversation: ConversationRecord
    message_id: str | None = None
    text: str | None = None
    score: float | None = None


def check_save(conversation: object, messages: Sequence[MessageRecord]) -> None:
    """Raise InvalidInputError unless these are a ConversationRecord and MessageRecords with distinct ids,
    whose mutable parts are still storable (see :func:`check_mutable_parts`)."""
    if not isinstance(conversation, ConversationRecord):
        raise InvalidInputError(f"expected a ConversationRecord, got {type(conversation).__name__}")
    check_mutable_parts(conversation)
    check_unique_message_ids(messages)


def check_mutable_parts(record: ConversationRecord | MessageRecord) -> None:
    """Raise InvalidInputError unless what can change in ``record`` after it was built is still storable.

    Records are frozen, but their metadata dicts (with a conversation's ``expires_at``)
    and a message's tool-call arguments are the caller's objects and can be changed
    after validation; these are checked again, with the checks that ran when the
    records were built.
    """
    _check_metadata(record)
    if isinstance(record, MessageRecord) and record.tool_calls:
        for call in record.tool_calls:
            _check_arguments(call)


def _check_metadata(record: ConversationRecord | MessageRecord) -> None:
    """The checks of a record's metadata, and of a conversation's ``expires_at``."""
    kind = "conversation" if isinstance(record, ConversationRecord) else "message"
    if not isinstance(record.metadata, dict):
        raise InvalidInputError(f"metadata of {kind} {record.id} must be a dict")
    if not record.metadata:  # the common empty dict: nothing to check (and no message to format)
        return
    check_json(record.metadata, f"metadata of {kind} {record.id}")
    if kind == "conversation" and EXPIRES_AT in record.metadata:
        try:
            expiry_of(record.metadata)
        except InvalidInputError as exc:
            raise InvalidInputError(f"conversation {record.id}: {exc}") from None


def _check_arguments(call: ToolCallRecord) -> None:
    """The checks of a tool call's arguments."""
    if not isinstance(call.arguments, dict):
        raise InvalidInputError("tool call arguments must be a dict")
    check_json(call.arguments, f"arguments of tool call {call.name!r}")


def checked_save_items(items: Iterable[Any]) -> Iterator[tuple[ConversationRecord, Sequence[MessageRecord]]]:
    """The ``(conversation, messages)`` pairs of a bulk save, each checked as :func:`check_save` does.

    Raises InvalidInputError for an item that is not a pair, naming its place.
    """
    for index, item in enumerate(items):
        try:
            conversation, messages = item
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"item {index} of save_many is a {type(item).__name__}, not a (conversation, messages) pair"
            ) from None
        check_save(conversation, messages)
        yield conversation, messages


def check_append(messages: Sequence[MessageRecord], updated_at: object) -> datetime | None:
    """Check an append's arguments; return ``updated_at`` as records hold it (fixed offset).

    Raises InvalidInputError for non-records, duplicate ids or an unusable ``updated_at``,
    whether or not the conversation exists.
    """
    check_unique_message_ids(messages)
    if updated_at is None:
        return None
    check_datetime(updated_at, "updated_at")
    return fixed_offset(updated_at)  # type: ignore[arg-type]  # check_datetime: a datetime


def check_unique_message_ids(messages: Sequence[MessageRecord]) -> None:
    """Raise InvalidInputError if two of ``messages`` share an id."""
    seen: set[str] = set()
    for message in messages:
        if not isinstance(message, MessageRecord):
            raise InvalidInputError(f"expected a MessageRecord, got {type(message).__name__}")
        if message.id in seen:
            raise InvalidInputError(f"message id {message.id} appears twice in one save")
        seen.add(message.id)
        check_mutable_parts(message)


def check_metadata_filter(metadata: Mapping[str, Any] | None) -> None:
    """Raise InvalidInputError unless ``metadata`` is a usable metadata filter.

    A filter maps top-level metadata keys to scalar JSON values (str, int, float,
    bool or None); a conversation matches when every key is present with an equal
    value of the same JSON type (``True`` does not match ``1``; ``1`` matches ``1.0``).
    """
    if metadata is None:
        return
    if not isinstance(metadata, Mapping):
        raise InvalidInputError("metadata filter must be a mapping of key to value")
    for key, value in metadata.items():
        check_text(key, "metadata filter key")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise InvalidInputError(f"metadata filter value for {key!r} must be str, int, float, bool or None")
        check_json(value, f"metadata filter value for {key!r}")


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def metadata_matches(metadata: Mapping[str, Any], wanted: Mapping[str, Any] | None) -> bool:
    """The reference rule for metadata filters (see :func:`check_metadata_filter`)."""
    if not wanted:
        return True
    for key, value in wanted.items():
        if key not in metadata:
            return False
        stored = metadata[key]
        if _json_kind(stored) != _json_kind(value) or stored != value:
            return False
    return True
