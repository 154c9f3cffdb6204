"""Property: the SQLite and memory backends give identical answers to every read.

The memory backend evaluates the shared query AST in Python; SQLite compiles it to
FTS5. Random data and random queries drawn from a small vocabulary (so that
matches, ties and exclusions are frequent) must give the same hits, in the same
order, naming the same documents.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.query import parse
from strategies import conversations, message_lists, metadata, timestamps

VOCABULARY = ["alpha", "Alpha", "beta", "gamma", "délta", "delta", "東", "京", "東京", "al", "x_y", "a-b"]
query_pieces = st.sampled_from(
    VOCABULARY + ["OR", "-alpha", "-beta", '"alpha beta"', '"beta', "al*", "de*", "東*", "-", "*", "%"]
)
queries = st.lists(query_pieces, max_size=5).map(" ".join)
contents = st.lists(st.sampled_from(VOCABULARY + [" ", ",", "\x00"]), max_size=8).map(" ".join)
filters = st.builds(
    ConversationFilter,
    field=st.sampled_from(["updated_at", "created_at"]),
    start=st.one_of(st.none(), timestamps()),
    end=st.one_of(st.none(), timestamps()),
    metadata=st.one_of(
        st.none(),
        st.dictionaries(st.sampled_from(["k", "n"]), st.sampled_from([None, True, 1, 1.0, "v", 0]), max_size=2),
    ),
)


@st.composite
def datasets(draw: st.DrawFn):
    items = []
    for index in range(draw(st.integers(0, 6))):
        record = draw(conversations(id=f"c{index}"))
        record = record.__class__(**{**record.__dict__, "title": draw(st.one_of(st.none(), contents)),
                                     "metadata": draw(st.one_of(metadata, st.dictionaries(
                                         st.sampled_from(["k", "n"]), st.sampled_from([None, True, 1, 1.0, "v", 0]))))})
        messages = [m.__class__(**{**m.__dict__, "content": draw(contents)}) for m in draw(message_lists(max_size=4))]
        items.append((record, messages))
    return items


@given(datasets(), st.lists(queries, min_size=1, max_size=4), filters, st.sampled_from(["recent", "relevance"]))
@settings(max_examples=120)
def test_search_and_list_agree(tmp_path_factory, data, query_texts, filter, order) -> None:
    sqlite = SQLiteStore(tmp_path_factory.mktemp("agree") / "s.db")
    memory = MemoryStore()
    try:
        for record, messages in data:
            sqlite.save(record, messages)
            memory.save(record, messages)
        assert sqlite.list(filter) == memory.list(filter), "list() differs between backends"
        for text in query_texts:
            query = parse(text)
            got = sqlite.search(query, filter, with_text=True)
            want = memory.search(query, filter, with_text=True)
            assert [(h.conversation.id, h.message_id, h.text) for h in got] == [
                (h.conversation.id, h.message_id, h.text) for h in want
            ], f"search({text!r}) differs between backends"
            ranked = {h.conversation.id for h in sqlite.search(query, filter, order=order)}
            assert ranked == {h.conversation.id for h in want}, "relevance order changed the hit set"
    finally:
        sqlite.close()
        memory.close()
