"""Hypothesis strategies for records: any Unicode text, JSON metadata, tied timestamps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.records import EXPIRES_AT, ROLES, ConversationRecord, MessageRecord, ToolCallRecord

# Any valid Unicode (no lone surrogates), including NUL, controls, CJK, combining marks.
text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
words = st.sampled_from(
    [
        "python",
        "Python",
        "lists",
        "résumé",
        "resume",
        "東京",
        "天気",
        "multi-agent",
        "C++",
        "%",
        "_",
        "NOT",
        "OR",
        "and",
        "x\x00y",
        "Straße",
        "strasse",
        "ÉCOLE",
        "pyth",
        "py",
    ]
)
prose = st.lists(st.one_of(words, text), max_size=8).map(" ".join)

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_value = st.recursive(
    json_scalar,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(text, children, max_size=3)),
    max_leaves=8,
)
metadata = st.dictionaries(text, json_value, max_size=4)
#: Conversation metadata: any keys but the reserved EXPIRES_AT, whose value must be a
#: timestamp (Hypothesis also tries string constants of the code, so it does find the key).
conversation_metadata = st.dictionaries(text.filter(lambda key: key != EXPIRES_AT), json_value, max_size=4)

offsets = st.sampled_from(
    [None, timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]
)


@st.composite
def timestamps(draw: st.DrawFn) -> datetime:
    """Few distinct instants (so ties are common), naive or aware, with microseconds."""
    minute = draw(st.integers(0, 5))
    micro = draw(st.sampled_from([0, 1, 999_999, 123_456]))
    moment = datetime(2025, 1, 20, 12, minute, 0, micro)
    zone = draw(offsets)
    return moment if zone is None else moment.replace(tzinfo=zone)


#: The only instants of :func:`tied_timestamps`: two a minute apart, and one a microsecond after the first.
TIED_INSTANTS = (
    datetime(2025, 1, 20, 12, 0, tzinfo=timezone.utc),
    datetime(2025, 1, 20, 12, 0, 0, 1, tzinfo=timezone.utc),
    datetime(2025, 1, 20, 12, 1, tzinfo=timezone.utc),
)


@st.composite
def tied_timestamps(draw: st.DrawFn) -> datetime:
    """One of three instants (:data:`TIED_INSTANTS`), naive (as UTC) or in any offset.

    Ties are then the rule, not the exception, so tie-breaking and exclusive bounds are
    checked at nearly every listing; equal instants often have different wall clocks.
    """
    instant = draw(st.sampled_from(TIED_INSTANTS))
    zone = draw(offsets)
    return instant.replace(tzinfo=None) if zone is None else instant.astimezone(zone)


tool_calls = st.lists(
    st.builds(
        ToolCallRecord,
        name=st.sampled_from(["get_weather", "search", "é"]),
        arguments=st.dictionaries(text, json_value, max_size=3),
        id=st.one_of(st.none(), st.text(min_size=1, max_size=8)),
    ),
    max_size=2,
).map(tuple)
images = st.lists(st.one_of(st.binary(max_size=16), text), max_size=2).map(tuple)
ids = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=6)


@st.composite
def messages(draw: st.DrawFn, id: str | None = None) -> MessageRecord:
    return MessageRecord(
        id=id or draw(ids),
        role=draw(st.sampled_from(sorted(ROLES))),
        content=draw(prose),
        created_at=draw(timestamps()),
        metadata=draw(metadata),
        images=draw(st.one_of(st.none(), images)),
        tool_calls=draw(st.one_of(st.none(), tool_calls)),
        tool_call_id=draw(st.one_of(st.none(), st.text(max_size=8))),
    )


@st.composite
def message_lists(draw: st.DrawFn, max_size: int = 6) -> list[MessageRecord]:
    chosen = draw(st.lists(ids, max_size=max_size, unique=True))
    return [draw(messages(id=i)) for i in chosen]


@st.composite
def conversations(draw: st.DrawFn, id: str | None = None) -> ConversationRecord:
    return ConversationRecord(
        id=id or draw(ids),
        title=draw(st.one_of(st.none(), prose)),
        model_name=draw(st.one_of(st.none(), st.sampled_from(["llama3", "gemma3:1b"]))),
        created_at=draw(timestamps()),
        updated_at=draw(timestamps()),
        metadata=draw(conversation_metadata),
    )


#: Words that make matches, ties and exclusions frequent in generated data.
VOCABULARY = ["alpha", "Alpha", "beta", "gamma", "délta", "delta", "東", "京", "東京", "al", "x_y", "a-b", "ß", "SS"]
_vocabulary_word = st.sampled_from(VOCABULARY)
# Two parts vocabulary to one part arbitrary Unicode: matches are common, oddities still appear.
vocabulary_text = st.lists(st.one_of(_vocabulary_word, _vocabulary_word, text), min_size=1, max_size=6).map(" ".join)
query_pieces = st.one_of(
    st.sampled_from(
        VOCABULARY + ["OR", "-alpha", "-beta", '"alpha beta"', '"beta', "al*", "de*", "東*", "-", "*", "%"]
    ),
    text,
)
queries = st.lists(query_pieces, max_size=5).map(" ".join)
filter_values = st.sampled_from([None, True, False, 1, 1.0, 0, "v", "w"])
metadata_with_filter_keys = st.dictionaries(st.sampled_from(["k", "n"]), filter_values, max_size=2)


@st.composite
def filters(draw: st.DrawFn, times: st.SearchStrategy[datetime] | None = None) -> ConversationFilter:
    """Filters on either field; bounds come from ``times`` (default :func:`timestamps`)."""
    times = timestamps() if times is None else times
    return ConversationFilter(
        field=draw(st.sampled_from(["updated_at", "created_at"])),
        start=draw(st.one_of(st.none(), times)),
        end=draw(st.one_of(st.none(), times)),
        metadata=draw(st.one_of(st.none(), metadata_with_filter_keys)),
    )
