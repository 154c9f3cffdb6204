"""Fuzzing save and load on every backend: what goes in comes out, exactly.

Arbitrary conversations (built from :mod:`qv_session_manager.testing.strategies`:
any Unicode with NUL and control characters, nested JSON metadata, tool calls, str
and bytes images, naive and offset timestamps with microseconds, plus named zones
here) are saved as qv-ollama-sdk objects through ``SessionManager`` on memory,
SQLite, jsonl and PostgreSQL, in one of several ways (one save, a bulk save, a save
followed by appended messages, a save rewritten with ``replace=True``), and loaded
through a *second* store instance. Then the backend's export is imported into it
again and loaded once more.

Every load must equal what was saved field for field and also by ``repr``, which
``==`` alone does not cover: ``1`` against ``1.0`` or ``True``, ``-0.0`` against
``0.0``, a timestamp's UTC offset, ``str`` against ``bytes`` images. The one change
allowed is documented: a named zone comes back as its fixed UTC offset.
"""

from __future__ import annotations

import copy
import dataclasses
import io
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import SessionManager
from qv_session_manager.convert import canonical_id, record_to_conversation
from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.records import StoredConversation, fixed_offset
from qv_session_manager.testing import strategies as gen

import reliability_kit
from rel_fuzz_kit import REL_FUZZ_BACKENDS, StoreOpener, rel_fuzz_opener, rel_fuzz_report

pytestmark = pytest.mark.slow  # fuzzed round trips on every backend

#: Hypothesis examples per backend; each saves and loads one to three conversations.
EXAMPLES = reliability_kit.budget(60, 2_000)
COUNTS: Counter[str] = Counter()

_ZONES = [ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")]
#: Instants a named zone makes hard: New York's repeated hour (both folds), Berlin's skipped hour.
_ZONED = [datetime(2025, 11, 2, 1, 30, 0, 5, tzinfo=_ZONES[1], fold=fold) for fold in (0, 1)] + [
    datetime(2025, 3, 30, 2, 30, tzinfo=_ZONES[0]),
]


@st.composite
def moments(draw: st.DrawFn) -> datetime:
    """A timestamp of the shared strategy, sometimes moved into a named zone."""
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return draw(st.sampled_from(_ZONED))
    moment = draw(gen.timestamps())
    if choice == 1:
        return moment.replace(tzinfo=draw(st.sampled_from(_ZONES)))
    return moment


#: Ids that are hard for file names (jsonl), case-blind systems or UUID parsing; any other text too.
_ODD_IDS = [
    ".",
    "..",
    "CON",
    "nul.txt",
    "a/b",
    "../x",
    "%2F",
    "Ab",
    "ab",
    " ",
    "\n",
    "é",
    "e\u0301",
    "x" * 300,
    "東京" * 100,
    ".x.tmp",
    "x.jsonl",
    "urn:uuid:12345678-1234-5678-1234-567812345678",
]
_ANY_ID_CHARACTER = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
IDS = st.one_of(
    gen.ids, st.uuids().map(str), st.sampled_from(_ODD_IDS), st.text(_ANY_ID_CHARACTER, min_size=1, max_size=12)
)


@st.composite
def sdk_conversation(draw: st.DrawFn, id: str) -> tuple[Conversation, Conversation]:
    """(a Conversation to save, the Conversation a load must return)."""
    record = draw(gen.conversations(id=id))
    messages = draw(gen.message_lists())
    if draw(st.booleans()):  # UUID message ids (the SDK's own kind: they come back as uuid.UUID) or odd ones
        fresh = draw(st.lists(IDS, min_size=len(messages), max_size=len(messages), unique_by=canonical_id))
        messages = [dataclasses.replace(m, id=canonical_id(i)) for m, i in zip(messages, fresh)]
    sent = record_to_conversation(StoredConversation(record, tuple(messages)))
    expected = copy.deepcopy(sent)  # shares nothing with what is saved
    # Records already hold fixed offsets; SDK objects may carry named zones.
    targets = [(sent, expected, "created_at"), (sent, expected, "updated_at")]
    targets += [(m, e, "created_at") for m, e in zip(sent.messages, expected.messages)]
    for target, owner, field in targets:
        if draw(st.integers(0, 2)) == 0:
            zoned = draw(moments())
            setattr(target, field, zoned)
            setattr(owner, field, fixed_offset(zoned))
    return sent, expected


@st.composite
def conversation_sets(draw: st.DrawFn) -> list[tuple[Conversation, Conversation]]:
    ids = draw(st.lists(IDS, min_size=1, max_size=3, unique_by=canonical_id))
    return [draw(sdk_conversation(canonical_id(id))) for id in ids]


SAVE_WAYS = st.sampled_from(["save", "save_many", "append", "replace"])
ExportKind = Literal["jsonl", "json"]  # the lossless export formats


def _save(manager: SessionManager, way: str, conversations: list[Conversation], cut: int) -> None:
    """Save ``conversations`` so that the store ends up holding exactly them, in ``way``."""
    if way == "save_many":
        assert manager.save_many(conversations, batch_size=2) == len(conversations)
        return
    for conversation in conversations:
        messages = conversation.messages
        if way == "append":  # the first messages, then the rest appended by a second save
            manager.save_conversation(conversation, messages[:cut])
            manager.save_conversation(conversation, messages[cut:])
        elif way == "replace":  # reversed first, then rewritten in the right order
            manager.save_conversation(conversation, list(reversed(messages)))
            manager.save_conversation(conversation, messages, replace=True)
        else:
            manager.save_conversation(conversation)


def _assert_exact(got: Conversation | None, want: Conversation, how: str) -> None:
    assert got is not None, f"{how}: conversation {want.id} did not load"
    assert got == want, f"{how}: conversation {want.id} came back changed\n want {want!r}\n got  {got!r}"
    assert repr(got) == repr(want), (
        f"{how}: conversation {want.id} came back equal but not identical (a type, offset or image kind changed)"
        f"\n want {want!r}\n got  {got!r}"
    )


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    rel_fuzz_report(request, "rel_fuzz_roundtrip", COUNTS, {"examples_per_backend": EXAMPLES})


@pytest.fixture(params=REL_FUZZ_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def test_any_conversation_round_trips_exactly(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    opener: StoreOpener = rel_fuzz_opener(backend, tmp_path, request)
    writer_store = opener()
    request.addfinalizer(writer_store.close)
    reader_store = opener()
    request.addfinalizer(reader_store.close)
    writer, reader = SessionManager(store=writer_store), SessionManager(store=reader_store)

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(pairs=conversation_sets(), way=SAVE_WAYS, cut=st.integers(0, 6), format=st.sampled_from(["jsonl", "json"]))
    def check(pairs: list[tuple[Conversation, Conversation]], way: str, cut: int, format: ExportKind) -> None:
        for left in writer_store.list(ConversationFilter()):  # each example starts from an empty store
            writer_store.delete(left.id)
        sent = [s for s, _ in pairs]
        before = repr(sent)
        _save(writer, way, sent, cut)
        assert repr(sent) == before, f"{backend}: saving changed the caller's Conversation objects"
        for _, expected in pairs:
            _assert_exact(reader.load_conversation(str(expected.id)), expected, f"{backend}, saved by {way}")
        COUNTS[f"round_trips_{backend}"] += len(pairs)
        COUNTS[f"messages_{backend}"] += sum(len(e.messages) for _, e in pairs)

        exported = io.StringIO()
        assert reader.export_conversations(exported, format=format) == len(pairs)
        for _, expected in pairs:
            assert writer.delete_conversation(str(expected.id))
        exported.seek(0)
        report = writer.import_conversations(exported, format=format)
        assert (report.imported, report.skipped) == (len(pairs), [])
        for _, expected in pairs:
            _assert_exact(reader.load_conversation(str(expected.id)), expected, f"{backend}, {format} export/import")
        COUNTS[f"export_import_round_trips_{backend}"] += len(pairs)

    check()
