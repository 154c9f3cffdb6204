"""The catalogue of bad inputs, as data: each row a call through the public API and its expected outcome.

Numbers are the rows of the catalogue in the reliability research notes ("(b) Catalogue
of bad inputs": search queries 1-23, ids 24-31, paths 32-40, timestamps 41-49, titles
and contents 50-58, metadata 59-68). A case either is *rejected* with a typed error
(a :class:`SessionStoreError` that is also the named builtin) or *gives* a result,
which its check asserts. ``test_rel_bad_inputs.py`` runs every case on every backend
and adds the invariants common to all: nothing else is ever raised, a rejected call
leaves every stored conversation exactly as it was and the store writable, a read
changes nothing.

Paths (32-40) concern opening a store, not a store's contents: they are the table
:data:`PATH_CASES`. Not expressible as a call: 40 (a database on NFS; documented
only) and 38 (read-only files, proven in ``test_rel_faults.py``).
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from qv_ollama_sdk.domain.models import Conversation, Function, Message, MessageRole, ToolCall

from qv_session_manager import (
    ConversationNotFoundError,
    CorruptStorageError,
    InvalidInputError,
    SessionManager,
    SessionStoreError,
    StorageError,
    UnknownBackendError,
)

import reliability_kit

BASE = datetime(2025, 1, 20, 12, 0, 0)

#: The conversations every case starts from: name -> the content of its one message.
CORPUS: dict[str, str] = {
    "lists": "Python lists are ordered, mutable collections",
    "resume": "Please update my Résumé before Friday",
    "tokyo": "東京の天気はどうですか",
    "agents": "multi-agent systems in C++ and C#, it's fine",
    "network": "mail a.b@example.com about 10.0.0.1 on ubuntu 20.04: /etc/passwd is 50% readable, ask @nasa if a=b",
    "stopwords": "the and of",
    "nul": "before\x00after",
    "cats": "cats and dogs",
    "catsonly": "cats alone",
    "rtl": "مرحبا بالعالم",
    "nfc": unicodedata.normalize("NFC", "école"),
    "emoji": "rocket 🚀 launch 👩‍💻",
}


def corpus_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"qvrel-inputs-{name}"))


def corpus_title(name: str) -> str:
    """A title no query of the catalogue matches, so hits come from the message alone."""
    return f"entry{list(CORPUS).index(name):02d}"


def corpus_conversations() -> list[Conversation]:
    """The corpus as SDK objects: fixed ids, distinct update times (newest last), one message each."""
    made = []
    for index, (name, content) in enumerate(CORPUS.items()):
        at = BASE + timedelta(minutes=index)
        conversation = Conversation(
            id=uuid.UUID(corpus_id(name)),
            title=corpus_title(name),
            created_at=at,
            updated_at=at,
            metadata={"name": name},
        )
        conversation.messages.append(
            Message(
                role=MessageRole.USER,
                content=content,
                created_at=at,
                id=uuid.uuid5(uuid.NAMESPACE_URL, f"qvrel-inputs-{name}-message"),
            )
        )
        made.append(conversation)
    return made


@dataclass
class Env:
    """What a case works with: the manager of one backend, holding the corpus."""

    backend: str
    manager: SessionManager
    directory: Path | None = None  # the store's directory, for file-based backends

    def names(self, rows: Iterable[dict[str, Any]]) -> list[str]:
        """Corpus names of result dicts (other ids as they are)."""
        by_id = {corpus_id(name): name for name in CORPUS}
        return [by_id.get(row["id"], row["id"]) for row in rows]


Check = Callable[[Any, Env], None]


@dataclass(frozen=True)
class Rejected:
    """The call must raise ``error``, which must also be a ``builtin``."""

    error: type[SessionStoreError]
    builtin: type[BaseException]


@dataclass(frozen=True)
class Case:
    number: int
    label: str
    call: Callable[[Env], Any]
    expect: Rejected | Check
    writes: bool = False  # a successful call may change stored data
    backends: frozenset[str] | None = field(default=None)  # None: every backend

    @property
    def id(self) -> str:
        return f"{self.number:02d} {self.label}"


BAD_VALUE = Rejected(InvalidInputError, ValueError)
NOT_FOUND = Rejected(ConversationNotFoundError, LookupError)


def conversation(
    title: str | None = "made by a case",
    *,
    updated: datetime = BASE,
    id: Any = None,
    metadata: Any = None,
    messages: Iterable[Message] = (),
) -> Conversation:
    made = Conversation(
        title=title,
        created_at=updated,
        updated_at=updated,
        metadata={} if metadata is None else metadata,
        messages=list(messages),
    )
    if id is not None:
        made.id = id
    return made


def message(content: Any = "hello", *, at: datetime = BASE, **fields: Any) -> Message:
    return Message(role=fields.pop("role", MessageRole.USER), content=content, created_at=at, **fields)


# -- checks --------------------------------------------------------------------------------


def finds(*names: str) -> Check:
    """The result is the search/list result holding exactly these corpus conversations."""

    def check(result: Any, env: Env) -> None:
        assert isinstance(result, list), result
        assert sorted(env.names(result)) == sorted(names), f"found {env.names(result)}, expected {sorted(names)}"

    return check


def equals(expected: Any) -> Check:
    def check(result: Any, env: Env) -> None:
        assert result == expected, f"got {result!r}, expected {expected!r}"

    return check


def loads_title(title: str) -> Check:
    def check(result: Any, env: Env) -> None:
        assert result is not None and result.title == title, result

    return check


def same_messages(got: Conversation | None, want: Conversation) -> None:
    """``got`` holds ``want``'s fields and messages (ids, roles, contents, times, metadata, tool calls)."""
    assert got is not None, "the saved conversation does not load"
    assert (got.title, got.metadata, got.created_at, got.updated_at) == (
        want.title,
        want.metadata,
        want.created_at,
        want.updated_at,
    )

    def fields(m: Message) -> tuple[Any, ...]:
        calls = [(c.function.name, c.function.arguments, c.id) for c in m.tool_calls or []]
        return (
            str(m.id),
            m.role,
            m.content,
            m.created_at,
            m.created_at.utcoffset(),
            m.metadata,
            calls,
            m.tool_call_id,
            m.images,
        )

    assert [fields(m) for m in got.messages] == [fields(m) for m in want.messages]


def round_trip(made: Conversation, env: Env) -> Conversation:
    """Save ``made``, then load it back, asserting it is unchanged; return what loaded."""
    env.manager.save_conversation(made)
    loaded = env.manager.load_conversation(str(made.id))
    same_messages(loaded, made)
    return loaded  # type: ignore[return-value]


def search(query: Any, **options: Any) -> Callable[[Env], Any]:
    return lambda env: env.manager.search_conversations(query, **options)


def between(start: Any, end: Any, **options: Any) -> Callable[[Env], Any]:
    return lambda env: env.manager.search_by_time(start, end, **options)


def load(conversation_id: Any) -> Callable[[Env], Any]:
    return lambda env: env.manager.load_conversation(conversation_id)


LISTS = corpus_id("lists")


def _full_width(text: str) -> str:
    """``text`` with its first ASCII digit replaced by the FULLWIDTH digit (U+FF10..)."""
    for index, char in enumerate(text):
        if char.isdigit():
            return text[:index] + chr(ord(char) + 0xFEE0) + text[index + 1 :]
    raise AssertionError("no digit")


def _save_then(made: Conversation, then: Callable[[Env], Any]) -> Callable[[Env], Any]:
    def call(env: Env) -> Any:
        env.manager.save_conversation(made)
        return then(env)

    return call


# -- search queries (1-23) -------------------------------------------------------------------

SEARCH_CASES: list[tuple[int, Any, Check | Rejected]] = [
    (1, "", finds()),
    (2, "   ", finds()),
    (2, "\t\n", finds()),
    (3, '"mutable', finds("lists")),
    (3, 'mutable"', finds("lists")),
    (3, '"', finds()),
    (4, "it's", finds("agents")),
    (4, "it's fine", finds("agents")),
    (5, "python OR", finds("lists")),
    (5, "python AND", finds()),  # AND is a plain word here
    (5, "python NOT", finds()),
    (6, "OR", finds()),
    (6, "AND", finds("agents", "stopwords", "cats")),
    (6, "NOT", finds()),
    (6, "NOT python", finds()),
    (7, "cats NOT dogs", finds()),  # literal words: nothing has "not"
    (7, "cats -dogs", finds("catsonly")),  # the language's exclusion
    (8, "NEAR(", finds()),
    (8, "NEAR(a b", finds()),
    (9, "multi-agent", finds("agents")),
    (9, "multi agent", finds("agents")),
    (9, "python -java", finds("lists")),
    (9, "-python", finds()),
    (10, "*", finds()),
    (10, "*thon", finds()),
    (10, "pyth*", finds("lists")),
    (11, "title:python", finds()),
    (11, "foo:bar", finds()),
    (11, "http://x.com", finds()),
    (12, "^", finds()),
    (12, "(", finds()),
    (12, ")", finds()),
    (12, "()", finds()),
    (12, "{", finds()),
    (12, "[", finds()),
    (13, "C++", finds("agents")),
    (13, "C#", finds("agents")),
    (13, "a.b@example.com", finds("network")),
    (13, "10.0.0.1", finds("network")),
    (13, "ubuntu 20.04", finds("network")),
    (13, "/etc/passwd", finds("network")),
    (13, "50%", finds("network")),
    (13, "@nasa", finds("network")),
    (13, "a=b", finds("network")),
    (14, "'; DROP TABLE t; --", finds()),
    (14, "'; DROP TABLE messages; --", finds()),
    (15, "%", finds()),
    (15, "_", finds()),
    (16, "\x00", finds()),
    (16, "before\x00after", finds("nul")),
    (16, "after", finds("nul")),
    (17, "\ud800", finds()),
    (17, "mutable\ud800", finds("lists")),  # a lone surrogate separates words like punctuation
    (18, "x" * 10_000, finds()),
    (18, "python " * 1000, finds("lists")),  # only the first 256 terms count
    (18, "q" * 1_000_000, finds()),
    (19, "東京", finds("tokyo")),
    (19, "天気", finds("tokyo")),
    (20, "resume", finds("resume")),
    (20, "RÉSUMÉ", finds("resume")),
    (21, "the", finds("stopwords")),  # no stop words on any backend
    (22, "python asyncio", finds()),
    (22, "python lists", finds("lists")),
    (23, None, BAD_VALUE),
    (23, 123, BAD_VALUE),
    (23, b"x", BAD_VALUE),
    (55, unicodedata.normalize("NFD", "école"), finds("nfc")),
    (55, "ECOLE", finds("nfc")),
    (55, "مرحبا", finds("rtl")),
]


def _search_cases() -> list[Case]:
    cases = [Case(number, f"search {query!r:.40}", search(query), expect) for number, query, expect in SEARCH_CASES]
    cases += [
        Case(
            13, "search relevance with snippets", search("a=b", order="relevance", snippets=True), _network_with_marks
        ),
        Case(23, "search with a bad mark", search("python", snippets=True, mark="**"), BAD_VALUE),
        Case(23, "search with a bad order", search("python", order="random"), BAD_VALUE),
        Case(23, "search with limit -1", search("python", limit=-1), BAD_VALUE),
    ]
    return cases


def _network_with_marks(result: list[dict[str, Any]], env: Env) -> None:
    finds("network")(result, env)
    # The phrase "a b" is marked where it occurs: in "a.b@..." and in "a=b".
    assert "**a.b**" in result[0]["snippet"] and "**a=b**" in result[0]["snippet"], result[0]["snippet"]


# -- ids (24-31) -----------------------------------------------------------------------------


def _moved_message(env: Env) -> tuple[list[str], list[str]]:
    shared = message("shared message")
    first, second = conversation("first"), conversation("second")
    env.manager.save_conversation(first, [shared])
    env.manager.save_conversation(second, [shared])
    loaded = [env.manager.load_conversation(str(c.id)) for c in (first, second)]
    return [str(m.id) for m in loaded[0].messages], [str(m.id) for m in loaded[1].messages]  # type: ignore[union-attr]


def _stays_inside(result: Any, env: Env) -> None:
    loaded, made = result
    same_messages(loaded, made)
    if env.directory is not None:
        assert not (env.directory / "../../etc/passwd").resolve().exists(), "a file was written outside the store"
        assert all(p.parent == env.directory for p in env.directory.rglob("*")), "a file left the directory"


def _path_like_id(env: Env) -> tuple[Conversation | None, Conversation]:
    made = conversation("path-like id", id="../../etc/passwd", messages=[message("inside the store")])
    env.manager.save_conversation(made)
    return env.manager.load_conversation("../../etc/passwd"), made


ID_CASES = [
    Case(24, "load 'not-a-uuid'", load("not-a-uuid"), equals(None)),
    Case(24, "delete 'not-a-uuid'", lambda env: env.manager.delete_conversation("not-a-uuid"), equals(False)),
    Case(
        24, "delete_message of 'not-a-uuid'", lambda env: env.manager.delete_message("not-a-uuid", "x"), equals(False)
    ),
    Case(25, "load the upper-case UUID", load(LISTS.upper()), loads_title(corpus_title("lists"))),
    Case(25, "load the braced UUID", load("{" + LISTS + "}"), loads_title(corpus_title("lists"))),
    Case(25, "load the UUID without hyphens", load(LISTS.replace("-", "")), loads_title(corpus_title("lists"))),
    Case(25, "load the urn:uuid: form", load("urn:uuid:" + LISTS), loads_title(corpus_title("lists"))),
    Case(25, "load a uuid.UUID", load(uuid.UUID(LISTS)), loads_title(corpus_title("lists"))),
    Case(25, "load with a full-width digit", load(_full_width(LISTS)), loads_title(corpus_title("lists"))),
    Case(
        25,
        "delete by the upper-case UUID",
        lambda env: (env.manager.delete_conversation(LISTS.upper()), env.manager.load_conversation(LISTS)),
        equals((True, None)),
        writes=True,
    ),
    Case(26, "load ''", load(""), equals(None)),
    Case(26, "load None", load(None), equals(None)),
    Case(26, "load 0", load(0), BAD_VALUE),
    Case(26, "delete ''", lambda env: env.manager.delete_conversation(""), equals(False)),
    Case(26, "delete 0", lambda env: env.manager.delete_conversation(0), BAD_VALUE),  # type: ignore[arg-type]
    Case(27, 'load "\' OR 1=1 --"', load("' OR 1=1 --"), equals(None)),
    Case(27, 'delete "\' OR 1=1 --"', lambda env: env.manager.delete_conversation("' OR 1=1 --"), equals(False)),
    Case(28, "save and load id '../../etc/passwd'", _path_like_id, _stays_inside, writes=True),
    Case(
        29,
        "one message id in two conversations",
        _moved_message,
        lambda result, env: _check(len(result[0]) == 1 and result[0] == result[1], f"both keep the message: {result}"),
        writes=True,
    ),
    Case(
        30,
        "duplicate message ids in one save",
        lambda env: env.manager.save_conversation(conversation(), [m := message("twice"), m]),
        BAD_VALUE,
    ),
    Case(31, "load an unknown id", load(str(uuid.uuid4())), equals(None)),
    Case(31, "delete an unknown id", lambda env: env.manager.delete_conversation(str(uuid.uuid4())), equals(False)),
    Case(
        31, "delete an unknown message", lambda env: env.manager.delete_message(LISTS, str(uuid.uuid4())), equals(False)
    ),
    Case(31, "resume an unknown id", lambda env: env.manager.resume_conversation(str(uuid.uuid4())), equals(None)),
    Case(
        31,
        "add_messages to an unknown id",
        lambda env: env.manager.add_messages(str(uuid.uuid4()), [message()]),
        NOT_FOUND,
    ),
    Case(31, "fork an unknown id", lambda env: env.manager.fork_conversation(str(uuid.uuid4()), "x"), NOT_FOUND),
    Case(
        31, "page after an unknown id", lambda env: env.manager.list_conversations(after=str(uuid.uuid4())), NOT_FOUND
    ),
]


def _check(condition: bool, why: str) -> None:
    assert condition, why


# -- timestamps (41-49) ------------------------------------------------------------------------

UTC = timezone.utc
PLUS2 = timezone(timedelta(hours=2))
MINUS5 = timezone(timedelta(hours=-5))


def _made_in(found: list[dict[str, Any]]) -> list[str]:
    return sorted(row["title"] for row in found)


def _naive_and_aware(env: Env) -> list[str]:
    env.manager.save_conversation(conversation("naive", updated=datetime(2024, 1, 1, 12, 0)))
    env.manager.save_conversation(conversation("aware", updated=datetime(2024, 1, 1, 12, 0, tzinfo=UTC)))
    env.manager.save_conversation(conversation("aware+2", updated=datetime(2024, 1, 1, 12, 0, tzinfo=PLUS2)))
    return _made_in(env.manager.search_by_time("2024-01-01T11:59:00+00:00", "2024-01-01T12:00:00Z"))


def _offsets_compare_as_instants(env: Env) -> tuple[list[str], list[str]]:
    env.manager.save_conversation(conversation("ten at +2", updated=datetime(2024, 1, 1, 10, 0, tzinfo=PLUS2)))
    later = _made_in(env.manager.search_by_time("2024-01-01T09:00:00+00:00", "2024-01-01T23:59:00+00:00"))
    at_eight = _made_in(env.manager.search_by_time("2024-01-01T08:00:00Z", "2024-01-01T08:00:00.000000z"))
    return later, at_eight


def _edited_first_keeps_place(env: Env) -> list[str]:
    made = conversation("ties", messages=[message(f"tie {i}") for i in range(6)])
    env.manager.save_conversation(made)
    made.messages[0].content = "tie 0 edited"
    env.manager.save_conversation(made, [made.messages[0]])
    loaded = env.manager.load_conversation(str(made.id))
    return [m.content for m in loaded.messages]  # type: ignore[union-attr]


def _clock_going_back(env: Env) -> list[str]:
    # Naive local times across a DST fall-back: 01:30, then 01:10 of the repeated hour.
    made = conversation(
        "dst",
        messages=[
            message("first", at=datetime(2024, 10, 27, 1, 30)),
            message("second", at=datetime(2024, 10, 27, 1, 10, fold=1)),
            message("third", at=datetime(2024, 10, 27, 1, 20)),
        ],
    )
    env.manager.save_conversation(made)
    return [m.content for m in env.manager.load_conversation(str(made.id)).messages]  # type: ignore[union-attr]


def _no_deprecated_adapters(env: Env) -> list[str]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        env.manager.save_conversation(conversation("adapters", updated=datetime(2023, 6, 1, 9, 30)))
        return _made_in(env.manager.search_by_time(datetime(2023, 6, 1), date(2023, 6, 1)))


TIME_CASES = [
    Case(41, "naive bounds and timestamps compare as UTC", _naive_and_aware, equals(["aware", "naive"]), writes=True),
    Case(42, "offsets compare as instants", _offsets_compare_as_instants, equals(([], ["ten at +2"])), writes=True),
    Case(
        43,
        "a 'Z' suffix on both bounds",
        between("2025-01-20T12:00:00Z", "2025-01-20T12:01:00z"),
        finds("lists", "resume"),
    ),
    Case(44, "start 'garbage'", between("garbage", None), BAD_VALUE),
    Case(44, "start '2024-13-45'", between("2024-13-45", None), BAD_VALUE),
    Case(44, "end 'zzz'", between("2024-01-01", "zzz"), BAD_VALUE),
    Case(44, "a bound of the wrong type", between(20240101, None), BAD_VALUE),
    Case(44, "field 'title'", between(None, None, field="title"), BAD_VALUE),
    Case(45, "start after end", between("2025-12-31", "2025-01-01"), finds()),
    Case(46, "datetime.min to datetime.max", between(datetime.min, datetime.max), finds(*CORPUS)),
    Case(46, "date.min to date.max", between(date.min, date.max), finds(*CORPUS)),
    Case(46, "'infinity'", between("infinity", None), BAD_VALUE),
    Case(46, "year 0", between("0000-01-01", None), BAD_VALUE),
    Case(
        46,
        "save an aware datetime.max west of UTC",
        lambda env: env.manager.save_conversation(conversation(updated=datetime.max.replace(tzinfo=MINUS5))),
        BAD_VALUE,
    ),
    Case(
        46,
        "save an aware datetime.min east of UTC",
        lambda env: env.manager.save_conversation(conversation(updated=datetime.min.replace(tzinfo=PLUS2))),
        BAD_VALUE,
    ),
    Case(
        46,
        "a message at an aware datetime.max west of UTC",
        lambda env: env.manager.save_conversation(conversation(), [message(at=datetime.max.replace(tzinfo=MINUS5))]),
        BAD_VALUE,
    ),
    Case(
        46,
        "save naive datetime.min and datetime.max",
        lambda env: round_trip(
            conversation("extremes", updated=datetime.max, messages=[message("oldest", at=datetime.min)]), env
        ),
        lambda result, env: None,
        writes=True,
    ),
    Case(
        47,
        "equal timestamps keep their order, an edit keeps its place",
        _edited_first_keeps_place,
        equals(["tie 0 edited", "tie 1", "tie 2", "tie 3", "tie 4", "tie 5"]),
        writes=True,
    ),
    Case(
        48,
        "a clock going back keeps the saved order",
        _clock_going_back,
        equals(["first", "second", "third"]),
        writes=True,
    ),
    Case(
        49,
        "datetimes pass without deprecated sqlite3 adapters",
        _no_deprecated_adapters,
        equals(["adapters"]),
        writes=True,
    ),
]


# -- titles and contents (50-58) ---------------------------------------------------------------


def _nul_everywhere(env: Env) -> list[str]:
    """Saved with NUL in the title and contents; which words after a NUL find it."""
    made = conversation("head\x00tail", messages=[message("alpha\x00omega", tool_call_id="id\x00x"), message("\x00")])
    round_trip(made, env)
    return [q for q in ("omega", "tail") if env.names(env.manager.search_conversations(q)) == [str(made.id)]]


def _distinct_words(count: int) -> list[str]:
    return [f"word{i:07d}" + "x" * 20 for i in range(count)]


def _huge_message(env: Env) -> dict[str, Any]:
    words = _distinct_words(reliability_kit.budget(60_000, 400_000))
    made = conversation("huge", messages=[message(" ".join(words))])
    round_trip(made, env)
    found = {}
    for label, query in (
        ("first", words[0]),
        ("early", words[1000]),
        ("last", words[-1]),
        ("pair", f'"{words[5]} {words[6]}"'),
    ):
        found[label] = env.names(env.manager.search_conversations(query)) == [str(made.id)]
    return found


def _huge_found(result: dict[str, Any], env: Env) -> None:
    expected = {"first": True, "early": True, "pair": True, "last": True}
    if env.backend == "postgres":
        # Documented limit (plugins/qv-session-manager-postgres/README.md, "PostgreSQL's limits"):
        # past 1 MB of distinct tokens, terms after the indexed prefix are not found.
        expected["last"] = False
    assert result == expected, result


def _long_word(env: Env) -> list[bool]:
    word = "z" * 3000
    made = conversation("long word", messages=[message(f"prologue {word} epilogue")])
    round_trip(made, env)
    return [env.names(env.manager.search_conversations(q)) == [str(made.id)] for q in (word, word[:200], "epilogue")]


def _many_words(env: Env) -> list[bool]:
    filler = " ".join(f"w{i % 500}" for i in range(20_000))
    made = conversation("many words", messages=[message(f"{filler} needle haystack")])
    round_trip(made, env)
    return [
        env.names(env.manager.search_conversations(q)) == [str(made.id)]
        for q in ("needle", '"needle haystack"', '"w499 needle"')
    ]


def _scripts(env: Env) -> list[bool]:
    texts = [
        "東京は日本の首都です",
        "שלום עולם",
        unicodedata.normalize("NFD", "Ångström café"),
        "🧪🚀 emoji only",
        "Z\u0351\u036b\u0343\u036a\u0302 zalgo",
    ]
    made = conversation("scripts", messages=[message(text) for text in texts])
    round_trip(made, env)
    return [
        env.names(env.manager.search_conversations(q)) == [str(made.id)] for q in ("首都", "עולם", "angstrom", "CAFÉ")
    ]


def _many_messages(env: Env) -> tuple[int, bool, bool]:
    count = reliability_kit.budget(2_000, 100_000)
    made = conversation("many messages", messages=[message(f"message number {i}") for i in range(count)])
    made.messages[-1].content = "the very last unusualword"
    env.manager.save_conversation(made)
    loaded = env.manager.load_conversation(str(made.id))
    ordered = [str(m.id) for m in loaded.messages] == [str(m.id) for m in made.messages]  # type: ignore[union-attr]
    found = env.names(env.manager.search_conversations("unusualword")) == [str(made.id)]
    return len(loaded.messages), ordered, found  # type: ignore[union-attr]


def _tool_calls(env: Env) -> None:
    call = ToolCall(
        function=Function(name="get_weather", arguments={"city": "Paris", "days": [1, 2], "x": None}), id="call_1"
    )
    made = conversation(
        "tools",
        messages=[
            message("", role=MessageRole.ASSISTANT, tool_calls=[call]),
            message("sunny", role=MessageRole.TOOL, tool_call_id="call_1"),
        ],
    )
    round_trip(made, env)


def _string_arguments(env: Env) -> None:
    call = ToolCall(function=Function(name="f", arguments='{"city": "Paris"}'), id="c")  # type: ignore[arg-type]
    env.manager.save_conversation(conversation(), [message("", role=MessageRole.ASSISTANT, tool_calls=[call])])


CONTENT_CASES = [
    Case(50, "NUL in title, content and tool_call_id", _nul_everywhere, equals(["omega", "tail"]), writes=True),
    Case(
        51,
        "a lone surrogate in content",
        lambda env: env.manager.save_conversation(conversation(), [message("bad \ud800 text")]),
        BAD_VALUE,
    ),
    Case(
        51,
        "a lone surrogate in the title",
        lambda env: env.manager.save_conversation(conversation("bad \udfff title")),
        BAD_VALUE,
    ),
    Case(
        51,
        "a lone surrogate in a stored conversation's new message",
        lambda env: env.manager.add_messages(LISTS, [message("ok"), message("\ud800")]),
        BAD_VALUE,
    ),
    Case(52, "a huge message of distinct words", _huge_message, _huge_found, writes=True),
    Case(53, "a 3000-character word", _long_word, equals([True, True, True]), writes=True),
    Case(54, "more than 16,383 words", _many_words, equals([True, True, True]), writes=True),
    Case(55, "CJK, RTL, NFD, emoji and combining marks", _scripts, equals([True, True, True, True]), writes=True),
    Case(
        55,
        "the corpus's RTL and emoji conversations load as saved",
        lambda env: [
            env.manager.load_conversation(corpus_id(n)).messages[0].content  # type: ignore[union-attr]
            for n in ("rtl", "emoji")
        ],
        equals([CORPUS["rtl"], CORPUS["emoji"]]),
    ),
    Case(56, "content None", lambda env: env.manager.save_conversation(conversation(), [message(None)]), BAD_VALUE),
    Case(56, "content bytes", lambda env: env.manager.save_conversation(conversation(), [message(b"x")]), BAD_VALUE),
    Case(56, "content int", lambda env: env.manager.save_conversation(conversation(), [message(123)]), BAD_VALUE),
    Case(56, "title bytes", lambda env: env.manager.save_conversation(conversation(b"t")), BAD_VALUE),  # type: ignore[arg-type]
    Case(
        56,
        "empty content and a None title round-trip",
        lambda env: round_trip(conversation(None, messages=[message("")]), env),
        lambda result, env: _check(result.title is None and result.messages[0].content == "", repr(result)),
        writes=True,
    ),
    Case(
        57,
        "one conversation with very many messages",
        _many_messages,
        equals((reliability_kit.budget(2_000, 100_000), True, True)),
        writes=True,
    ),
    Case(58, "tool calls with dict arguments round-trip", _tool_calls, equals(None), writes=True),
    Case(58, "tool call arguments as a JSON string", _string_arguments, BAD_VALUE),
]


# -- metadata (59-68) -------------------------------------------------------------------------


def _with_metadata(value: Any) -> Callable[[Env], Any]:
    return lambda env: env.manager.save_conversation(conversation(metadata=value))


def _message_metadata(value: Any) -> Callable[[Env], Any]:
    return lambda env: env.manager.save_conversation(conversation(), [message(metadata=value)])


def _cyclic() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"d": value}
    return value


def _metadata_round_trip(metadata: dict[str, Any], key: str) -> Callable[[Env], Any]:
    def call(env: Env) -> tuple[bool, list[str]]:
        made = conversation("meta", metadata=metadata, messages=[message(metadata=metadata)])
        round_trip(made, env)
        return True, env.names(env.manager.list_conversations(metadata={key: metadata[key]}))

    return call


def _found_by_filter(result: tuple[bool, list[str]], env: Env) -> None:
    assert result[0] and len(result[1]) == 1 and result[1][0] not in CORPUS, result


class _Opaque:
    pass


def _nul_filters(env: Env) -> list[bool]:
    """Which filters find a conversation whose metadata has NUL in a key and in a value
    (with a look-alike without NUL stored beside it)."""
    made = conversation("nul meta", metadata={"k": "a\x00b", "z\x00": "v", "n": 1})
    env.manager.save_conversation(made)
    env.manager.save_conversation(conversation("plain meta", metadata={"k": "a", "z": "v"}))
    filters: list[dict[str, Any]] = [{"k": "a\x00b"}, {"k": "a"}, {"z\x00": "v"}, {"z": "v"}, {"k": "a\x00b", "n": 1.0}]
    return [str(made.id) in env.names(env.manager.list_conversations(metadata=f)) for f in filters]


METADATA_CASES = [
    Case(59, "a datetime value", _with_metadata({"when": datetime.now()}), BAD_VALUE),
    Case(59, "a set value", _with_metadata({"s": {1, 2}}), BAD_VALUE),
    Case(59, "a bytes value", _with_metadata({"b": b"x"}), BAD_VALUE),
    Case(59, "an object value", _with_metadata({"o": _Opaque()}), BAD_VALUE),
    Case(59, "a message's datetime value", _message_metadata({"when": datetime.now()}), BAD_VALUE),
    Case(59, "a filter with a list value", lambda env: env.manager.list_conversations(metadata={"k": [1]}), BAD_VALUE),
    Case(60, "NaN", _with_metadata({"x": float("nan")}), BAD_VALUE),
    Case(60, "infinity", _with_metadata({"x": float("inf")}), BAD_VALUE),
    Case(60, "a message's -infinity", _message_metadata({"x": float("-inf")}), BAD_VALUE),
    Case(
        60, "a NaN filter", lambda env: env.manager.search_conversations("x", metadata={"x": float("nan")}), BAD_VALUE
    ),
    Case(61, "an int key", _with_metadata({1: "x"}), BAD_VALUE),
    Case(61, "a None key", _with_metadata({None: 1}), BAD_VALUE),
    Case(61, "a tuple key", _with_metadata({(1, 2): 1}), BAD_VALUE),
    Case(62, "a tuple value", _with_metadata({"t": (1, 2)}), BAD_VALUE),
    Case(63, "a self-referencing dict", _with_metadata(_cyclic()), BAD_VALUE),
    Case(64, "5000-deep nesting", _with_metadata(_deep(5000)), BAD_VALUE),
    Case(
        64,
        "100-deep nesting round-trips",
        lambda env: round_trip(conversation(metadata={"deep": _deep(99)}), env),
        lambda result, env: None,
        writes=True,
    ),
    Case(
        65,
        "NUL inside metadata strings",
        _metadata_round_trip({"k": "a\x00b", "k\x00": ["\x00"]}, "k"),
        _found_by_filter,
        writes=True,
    ),
    Case(
        65,
        "filters on keys and values holding NUL match exactly",
        _nul_filters,
        equals([True, False, True, False, True]),
        writes=True,
    ),
    Case(66, "an int of 2**63", _with_metadata({"big": 2**63}), BAD_VALUE),
    Case(66, "an int below -2**63", _message_metadata({"small": -(2**63) - 1}), BAD_VALUE),
    Case(
        66,
        "the 64-bit extremes round-trip",
        _metadata_round_trip({"n": 2**63 - 1, "m": -(2**63)}, "n"),
        _found_by_filter,
        writes=True,
    ),
    Case(67, "metadata None", lambda env: env.manager.save_conversation(_none_metadata()), BAD_VALUE),
    Case(67, "metadata a list", _with_metadata(["a"]), BAD_VALUE),
    Case(67, "metadata a str", _with_metadata("a"), BAD_VALUE),
    Case(67, "a message's metadata a list", _message_metadata(["a"]), BAD_VALUE),
    Case(
        68,
        "non-ASCII metadata round-trips and filters",
        _metadata_round_trip({"städt": "東京 ü 🚀"}, "städt"),
        _found_by_filter,
        writes=True,
    ),
]


def _none_metadata() -> Conversation:
    made = conversation()
    made.metadata = None  # type: ignore[assignment]
    return made


CASES: list[Case] = [*_search_cases(), *ID_CASES, *TIME_CASES, *CONTENT_CASES, *METADATA_CASES]


# -- paths and URLs (32-39) ---------------------------------------------------------------------


@dataclass(frozen=True)
class PathCase:
    """Opening a store, run with the test's temporary directory as working directory.

    ``open`` gets that directory and returns a SessionManager; ``expect`` is Rejected or
    a check of the opened manager and the directory. ``untouched`` names a file (relative
    to the directory) that must stay byte-identical.
    """

    number: int
    label: str
    open: Callable[[Path], SessionManager]
    expect: Rejected | Callable[[SessionManager, Path], None]
    untouched: str | None = None

    @property
    def id(self) -> str:
        return f"{self.number:02d} {self.label}"


def works_and_persists(name: str, *, persists: bool = True) -> Callable[[SessionManager, Path], None]:
    """The manager saves and loads; reopened by ``name`` (db_path), the data is there or not."""

    def check(manager: SessionManager, directory: Path) -> None:
        made = conversation("kept", messages=[message("persist me")])
        manager.save_conversation(made)
        same_messages(manager.load_conversation(str(made.id)), made)
        manager.close()
        if persists:
            with SessionManager(db_path=name) as again:
                same_messages(again.load_conversation(str(made.id)), made)
        assert not (directory / ":memory:").exists()

    return check


def _jsonl_works(manager: SessionManager, directory: Path) -> None:
    made = conversation("kept", messages=[message("in a new directory")])
    manager.save_conversation(made)
    same_messages(manager.load_conversation(str(made.id)), made)
    assert (directory / "new" / "nested").is_dir()


STORAGE = Rejected(StorageError, OSError)
CORRUPT = Rejected(CorruptStorageError, OSError)

PATH_CASES = [
    PathCase(32, "a text file as db_path", lambda d: SessionManager(db_path="passwd"), CORRUPT, "passwd"),
    PathCase(32, "a text file as sqlite URL", lambda d: SessionManager(url="sqlite:///passwd"), CORRUPT, "passwd"),
    PathCase(32, "a text file as jsonl directory", lambda d: SessionManager(url="jsonl:///passwd"), STORAGE, "passwd"),
    PathCase(
        33,
        "':memory:' works for the store's lifetime",
        lambda d: SessionManager(db_path=":memory:"),
        works_and_persists(":memory:", persists=False),
    ),
    PathCase(
        33,
        "'sqlite://' works in memory",
        lambda d: SessionManager(url="sqlite://"),
        works_and_persists(":memory:", persists=False),
    ),
    PathCase(33, "an empty db_path", lambda d: SessionManager(db_path=""), BAD_VALUE),
    PathCase(
        34,
        "'file:x.db?mode=memory' is a plain file name",
        lambda d: SessionManager(db_path="file:x.db?mode=memory"),
        works_and_persists("file:x.db?mode=memory"),
    ),
    PathCase(
        34, "a sqlite URL with a foreign option", lambda d: SessionManager(url="sqlite:///x.db?mode=memory"), BAD_VALUE
    ),
    PathCase(34, "a URL given as db_path", lambda d: SessionManager(db_path="memory://"), BAD_VALUE),
    PathCase(35, "a missing directory", lambda d: SessionManager(db_path="missing/x.db"), STORAGE),
    PathCase(35, "a directory as the database", lambda d: SessionManager(db_path="."), STORAGE),
    PathCase(
        35, "jsonl creates a missing directory", lambda d: SessionManager(url="jsonl:///new/nested"), _jsonl_works
    ),
    PathCase(
        36,
        "a zero-length file opens as a new store",
        lambda d: SessionManager(url="sqlite:///empty.db"),
        works_and_persists("empty.db"),
    ),
    PathCase(37, "a garbage file", lambda d: SessionManager(db_path="garbage.db"), CORRUPT, "garbage.db"),
    PathCase(39, "NUL in db_path", lambda d: SessionManager(db_path="a\x00b.db"), BAD_VALUE),
    PathCase(39, "NUL in a sqlite URL", lambda d: SessionManager(url="sqlite:///a%00b.db"), BAD_VALUE),
    PathCase(39, "NUL in a jsonl URL", lambda d: SessionManager(url="jsonl:///a%00b"), BAD_VALUE),
    PathCase(
        39, "an unknown scheme", lambda d: SessionManager(url="nosuch:///x"), Rejected(UnknownBackendError, LookupError)
    ),
    PathCase(
        39,
        "PostgreSQL with an empty schema",
        lambda d: SessionManager(url="postgresql://127.0.0.1:1/x?schema="),
        BAD_VALUE,
    ),
    PathCase(35, "PostgreSQL nobody listens on", lambda d: SessionManager(url="postgresql://127.0.0.1:1/x"), STORAGE),
]

#: Files each path case finds in its directory.
PATH_FILES = {
    "passwd": b"root:x:0:0:root:/root:/bin/bash\n",
    "empty.db": b"",
    "garbage.db": bytes(range(256)) * 16,
}
