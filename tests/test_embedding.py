"""Embedders: the contract for each built-in one, Ollama over HTTP against the stand-in, the registry."""

from __future__ import annotations

import importlib.util
import math
import sys
import textwrap
import types
from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qv_session_manager import PluginLoadWarning, hookimpl, plugins
from qv_session_manager.embedding import Embedder, TextEmbedder, available_embedders, open_embedder, split_spec
from qv_session_manager.embedding.ollama import OllamaEmbedder, task_prefixes
from qv_session_manager.embedding.vectors import finish, halves, pool
from qv_session_manager.errors import (
    EmbedderConflictError,
    EmbedderError,
    EmbedderUnavailableError,
    EmbeddingModelNotFoundError,
    InvalidEmbeddingError,
    InvalidInputError,
    MissingDependencyError,
    PluginConflictError,
    SessionStoreError,
    UnknownEmbedderError,
)
from qv_session_manager.testing import embedders as test_embedders
from qv_session_manager.testing.embedder_contract import EmbedderContract, assert_contract_vector, cosine
from qv_session_manager.testing.embedders import HashEmbedder, SynonymEmbedder

from ollama_standin import CHAT_MODEL, EMBED_MODELS, StandIn, embedding_of

# Found, not imported: importing it is the embedder's job (and not at collection).
HAVE_WORDLLAMA = importlib.util.find_spec("wordllama") is not None

needs_wordllama = pytest.mark.skipif(
    not HAVE_WORDLLAMA, reason='wordllama is not installed: pip install -e ".[semantic]" runs these tests'
)


@pytest.fixture
def kit() -> Iterator[None]:
    """The test-only embedders (hash, synonyms) registered for one test."""
    test_embedders.install()
    yield
    test_embedders.uninstall()


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


# -- the contract, for every built-in embedder --------------------------------------


class TestHashEmbedder(EmbedderContract):
    @pytest.fixture
    def embedder(self) -> TextEmbedder:
        return HashEmbedder(64)


class TestSynonymEmbedder(EmbedderContract):
    @pytest.fixture
    def embedder(self) -> TextEmbedder:
        return SynonymEmbedder(32)


class TestOllamaEmbedder(EmbedderContract):
    @pytest.fixture
    def embedder(self, standin: StandIn) -> TextEmbedder:
        return OllamaEmbedder("nomic-embed-text", host=standin.url, batch_size=3)

    @pytest.fixture
    def long_text(self) -> str:
        # Past the stand-in's 64-token context, and short enough to keep the splits few.
        return " ".join(f"word{i} filler" for i in range(200))


@pytest.fixture(scope="module")
def wordllama_embedder() -> TextEmbedder:
    return open_embedder("wordllama")


@needs_wordllama
class TestWordLlamaEmbedder(EmbedderContract):
    @pytest.fixture
    def embedder(self, wordllama_embedder: TextEmbedder) -> TextEmbedder:
        return wordllama_embedder


# -- the shared steps ------------------------------------------------------------


@given(st.text(min_size=2, max_size=200))
def test_halves_are_two_non_empty_parts_of_the_text(text: str) -> None:
    left, right = halves(text)
    assert left and right and left + right == text


def test_halves_cut_at_whitespace_near_the_middle() -> None:
    assert halves("alpha beta gamma delta") == ("alpha beta ", "gamma delta")


@given(st.lists(st.floats(-1e30, 1e30), min_size=1, max_size=40))
@example([1.0725573133705453e-161])  # its square underflows: found by the CI profile
@example([1e-320, 0.0, 3e-320])
def test_finish_gives_a_contract_vector(values: list[float]) -> None:
    assert_contract_vector(finish(values), len(values))


def test_finish_refuses_what_breaks_the_contract() -> None:
    with pytest.raises(InvalidEmbeddingError, match="non-finite"):
        finish([1.0, math.nan])
    with pytest.raises(InvalidEmbeddingError, match="recorded as 3"):
        finish([1.0, 0.0], 3)
    with pytest.raises(InvalidEmbeddingError, match="empty"):
        finish([])


def test_pool_is_the_weighted_mean_made_unit_length() -> None:
    assert pool([([1.0, 0.0], 3.0), ([0.0, 1.0], 1.0)]) == finish([3.0, 1.0])


# -- the test embedders ----------------------------------------------------------


def test_texts_sharing_words_are_closer_than_texts_sharing_none() -> None:
    embedder = HashEmbedder(256)
    base, near, far = embedder.embed(["the dead car battery", "my car battery is dead", "tomato soup recipe"])
    assert cosine(base, near) > 0.6 > 0.2 > cosine(base, far)  # 3 of 4 and 5 words shared: 0.67


def test_the_synonym_embedder_finds_meaning_beyond_words() -> None:
    words, synonyms = HashEmbedder(256), SynonymEmbedder(256)
    texts = ["my car won't start", "the automobile does not crank"]
    assert cosine(*synonyms.embed(texts)) > 0.35 > 0.2 > cosine(*words.embed(texts))  # 2 of 5 concepts shared


def test_hash_vectors_are_the_same_in_every_process() -> None:
    # BLAKE2b, not hash(): PYTHONHASHSEED changes nothing. A fixed value pins it.
    vector = HashEmbedder(8).embed(["hello world"])[0]
    assert [round(v, 4) for v in vector] == [round(v, 4) for v in HashEmbedder(8).embed(["world hello"])[0]]
    assert sum(1 for v in vector if v) == 2


# -- Ollama over HTTP, against the stand-in ----------------------------------------


def embed_requests_since(standin: StandIn, start: int) -> list[dict]:
    return standin.embed_requests[start:]


def test_ollama_vectors_are_the_servers(standin: StandIn) -> None:
    embedder = OllamaEmbedder("all-minilm", host=standin.url)
    assert embedder.embed(["hello there"]) == [embedding_of("hello there", 16)]


def test_ollama_batches_and_probes_the_dimension_once(standin: StandIn) -> None:
    embedder = OllamaEmbedder("nomic-embed-text", host=standin.url, batch_size=4)
    start = len(standin.embed_requests)
    assert embedder.dimension == EMBED_MODELS["nomic-embed-text"][0]
    assert embedder.dimension == EMBED_MODELS["nomic-embed-text"][0]
    vectors = embedder.embed([f"text {i}" for i in range(10)])
    sent = embed_requests_since(standin, start)
    assert [len(request["input"]) for request in sent] == [1, 4, 4, 2], "one probe, then batches of 4"
    assert all(request["truncate"] is False for request in sent), "Ollama must never cut a text silently"
    assert len(vectors) == 10


def test_ollama_probes_once_when_threads_ask_at_once(standin: StandIn) -> None:
    from concurrent.futures import ThreadPoolExecutor

    embedder = OllamaEmbedder("all-minilm", host=standin.url)
    start = len(standin.embed_requests)
    with ThreadPoolExecutor(8) as pool_:
        assert set(pool_.map(lambda _: embedder.dimension, range(8))) == {16}
    assert len(embed_requests_since(standin, start)) == 1


def test_ollama_records_the_dimension_from_the_first_answer(standin: StandIn) -> None:
    embedder = OllamaEmbedder("all-minilm", host=standin.url)
    start = len(standin.embed_requests)
    embedder.embed(["first"])
    assert embedder.dimension == 16
    assert len(embed_requests_since(standin, start)) == 1, "no probe once something was embedded"


def test_ollama_refuses_a_model_that_changed_its_dimension(standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = OllamaEmbedder("all-minilm", host=standin.url)
    assert embedder.dimension == 16
    monkeypatch.setitem(EMBED_MODELS, "all-minilm", (24, 32))
    with pytest.raises(InvalidEmbeddingError, match="recorded as 16"):
        embedder.embed(["now the model is another"])


def test_ollama_checks_an_expected_dimension(standin: StandIn) -> None:
    with pytest.raises(InvalidEmbeddingError, match="not the 768 expected"):
        OllamaEmbedder("all-minilm", host=standin.url, dimension=768).embed(["x"])


def test_ollama_prefixes_each_side_for_models_with_task_prefixes(standin: StandIn) -> None:
    embedder = OllamaEmbedder("nomic-embed-text", host=standin.url)
    start = len(standin.embed_requests)
    document = embedder.embed(["car battery"])
    query = embedder.embed_queries(["car battery"])
    inputs = [request["input"] for request in embed_requests_since(standin, start)]
    assert inputs == [["search_document: car battery"], ["search_query: car battery"]]
    assert document != query
    assert task_prefixes("nomic-embed-text:v1.5") == ("search_document: ", "search_query: ")
    assert task_prefixes("all-minilm") == ("", "")
    plain = OllamaEmbedder("all-minilm", host=standin.url)
    assert plain.embed(["car battery"]) == plain.embed_queries(["car battery"])


def test_ollama_splits_a_text_past_the_context_and_pools_the_pieces(standin: StandIn) -> None:
    embedder = OllamaEmbedder("all-minilm", host=standin.url)  # 32-token context
    text = " ".join(f"w{i}" for i in range(100))
    start = len(standin.embed_requests)
    (vector,) = embedder.embed([text])
    sent = embed_requests_since(standin, start)
    assert sent[0]["input"] == [text], "sent whole first, refused"
    pieces = [piece for request in sent[1:] for piece in request["input"]]
    assert "".join(p for p in pieces if p in text), "pieces are parts of the text"
    fitted = [request["input"] for request in sent]
    assert all(len(piece.split()) <= 32 for batch in fitted[-1:] for piece in batch)
    assert vector != embedding_of(text, 16, 32), "not the silently cut vector"
    assert cosine(vector, embedding_of(" ".join(f"w{i}" for i in range(75, 100)), 16)) > 0.2, "the end counts"
    assert embedder.embed([text]) == [vector], "split the same way every time"
    assert embedder.embed(["short", text, "other"])[1] == vector, "and in any batch"


def test_ollama_bisects_a_batch_around_the_one_long_text(standin: StandIn) -> None:
    embedder = OllamaEmbedder("all-minilm", host=standin.url, batch_size=8)
    texts = [f"short text {i}" for i in range(8)]
    texts[5] = " ".join(f"w{i}" for i in range(40))
    start = len(standin.embed_requests)
    vectors = embedder.embed(texts)
    sent = embed_requests_since(standin, start)
    # all 8 refused; 0-3 fit; 4-7, then 4-5 refused; 4 fits, 5 refused and sent as two halves; 6-7 fit
    assert [len(request["input"]) for request in sent] == [8, 4, 4, 2, 1, 1, 2, 2], "bisected, not text by text"
    assert vectors[:5] + vectors[6:] == embedder.embed(texts[:5] + texts[6:])


def test_ollama_unreachable_says_how_to_start_it() -> None:
    with StandIn() as server:
        url = server.url
    embedder = OllamaEmbedder("nomic-embed-text", host=url, timeout=5)
    with pytest.raises(EmbedderUnavailableError) as caught:
        embedder.embed(["hello"])
    assert isinstance(caught.value, ConnectionError) and isinstance(caught.value, SessionStoreError)
    assert "ollama serve" in str(caught.value) and url in str(caught.value)


def test_ollama_silent_server_is_unavailable_after_the_timeout() -> None:
    import socket

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        host, port = listener.getsockname()[:2]
        embedder = OllamaEmbedder("nomic-embed-text", host=f"http://{host}:{port}", timeout=0.3)
        with pytest.raises(EmbedderUnavailableError, match="ollama serve"):
            embedder.embed(["hello"])


def test_ollama_model_not_pulled_names_the_pull_command(standin: StandIn) -> None:
    embedder = OllamaEmbedder("mxbai-embed-large", host=standin.url)
    with pytest.raises(EmbeddingModelNotFoundError) as caught:
        embedder.embed(["hello"])
    assert isinstance(caught.value, LookupError)
    assert "ollama pull mxbai-embed-large" in str(caught.value)
    with pytest.raises(EmbeddingModelNotFoundError):
        _ = embedder.dimension


def test_ollama_chat_model_cannot_embed(standin: StandIn) -> None:
    with pytest.raises(EmbedderError, match="embedding model"):
        OllamaEmbedder(CHAT_MODEL, host=standin.url).embed(["hello"])


def test_ollama_host_defaults_to_ollama_host(standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", standin.url)
    embedder = open_embedder("ollama:all-minilm")
    assert embedder.dimension == 16 and embedder.model == "all-minilm"


def test_ollama_options_are_checked() -> None:
    with pytest.raises(InvalidInputError):
        OllamaEmbedder("x", batch_size=0)
    with pytest.raises(InvalidInputError):
        OllamaEmbedder(" ")
    with pytest.raises(InvalidInputError):
        OllamaEmbedder("x", dimension=-1)


@settings(max_examples=20, deadline=None)
@given(texts=st.lists(st.text(max_size=300), max_size=5))
def test_ollama_any_texts_give_vectors_of_the_dimension(standin: StandIn, texts: list[str]) -> None:
    embedder = OllamaEmbedder("all-minilm", host=standin.url, batch_size=2)
    vectors = embedder.embed(texts)
    assert len(vectors) == len(texts)
    for vector in vectors:
        assert_contract_vector(vector, 16)


# -- WordLlama, offline ----------------------------------------------------------------


@needs_wordllama
def test_wordllama_is_wordllamas_own_normalised_embedding() -> None:
    from pathlib import Path

    import numpy

    from qv_session_manager.embedding.wordllama import _import_wordllama

    wordllama = _import_wordllama()
    texts = ["hello world", "my car won't start", "Résumé 東京"]
    for dimension in (64, 256):
        model = wordllama.WordLlama.load(
            cache_dir=Path(wordllama.__file__).parent,
            disable_download=True,
            trunc_dim=None if dimension == 256 else dimension,
        )
        ours = numpy.array(open_embedder(f"wordllama:{dimension}").embed(texts))
        assert numpy.abs(ours - model.embed(texts, norm=True)).max() < 1e-5


@needs_wordllama
def test_wordllama_is_close_in_meaning() -> None:
    embedder = open_embedder("wordllama")
    car, battery, soup = embedder.embed(["my car won't start", "the battery is dead", "tomato soup with basil"])
    assert cosine(car, battery) > cosine(car, soup)


@needs_wordllama
def test_wordllama_spec_names_the_dimension() -> None:
    assert open_embedder("wordllama:128").dimension == 128
    assert open_embedder("wordllama").model == "l2_supercat-256"
    with pytest.raises(InvalidInputError):
        open_embedder("wordllama:100")
    with pytest.raises(InvalidInputError):
        open_embedder("wordllama:big")


@needs_wordllama
def test_importing_wordllama_leaves_the_root_logger_alone() -> None:
    code = (
        "import logging\nfrom qv_session_manager.embedding import open_embedder\n"
        "open_embedder('wordllama')\nprint(len(logging.getLogger().handlers))"
    )
    assert run_python(code) == "0"


def test_wordllama_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wordllama", None)  # import raises ImportError
    with pytest.raises(MissingDependencyError) as caught:
        open_embedder("wordllama")
    assert isinstance(caught.value, ImportError)
    assert "pip install wordllama" in str(caught.value) and 'pip install -e ".[semantic]"' in str(caught.value)


# -- the registry ---------------------------------------------------------------------


def test_builtin_embedders_register_through_the_hook() -> None:
    table = available_embedders()
    assert {"ollama", "wordllama"} <= set(table)
    assert table["ollama"].plugin == "qv_session_manager.embedding.builtin"


def test_test_embedders_are_not_visible_by_default() -> None:
    assert not {"hash", "synonyms"} & set(available_embedders())
    with pytest.raises(UnknownEmbedderError):
        open_embedder("hash")


def test_embedders_open_by_name_and_spec(kit: None) -> None:
    assert open_embedder("hash").dimension == 64
    assert open_embedder("hash:16").dimension == 16
    assert open_embedder("HASH:16").dimension == 16
    assert open_embedder("hash", dimension=8).dimension == 8
    assert isinstance(open_embedder("synonyms:32"), SynonymEmbedder)
    with pytest.raises(InvalidInputError):
        open_embedder("hash:wide")


def test_split_spec() -> None:
    assert split_spec("ollama:nomic-embed-text:v1.5") == ("ollama", "nomic-embed-text:v1.5")
    assert split_spec("wordllama") == ("wordllama", "")
    for bad in ("", ":model", 3):
        with pytest.raises(InvalidInputError):
            split_spec(bad)  # type: ignore[arg-type]


def test_unknown_embedder_lists_the_installed_ones() -> None:
    with pytest.raises(UnknownEmbedderError) as caught:
        open_embedder("nosuch:model")
    assert isinstance(caught.value, LookupError)
    assert "ollama" in str(caught.value) and "wordllama" in str(caught.value)


def embedder_plugin(name: str, *embedders: str) -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def register_embedders(register):
        for embedder in embedders:
            register(Embedder(embedder, lambda spec, options: HashEmbedder(4)))

    module.register_embedders = register_embedders  # type: ignore[attr-defined]
    return module


@pytest.fixture
def registered() -> Iterator:
    added: list[str] = []

    def register(module: types.ModuleType) -> None:
        plugins.pm.register(module, name=module.__name__)
        added.append(module.__name__)

    yield register
    for name in added:
        plugins.pm.unregister(name=name)


def test_a_plugin_embedder_is_found_by_name(registered) -> None:
    registered(embedder_plugin("third_party_embedder", "thirdparty"))
    assert available_embedders()["thirdparty"].plugin == "third_party_embedder"
    assert open_embedder("thirdparty:anything").dimension == 4


def test_two_plugins_claiming_one_embedder_name_is_an_error_naming_both(registered) -> None:
    registered(embedder_plugin("first_embedder_plugin", "clash"))
    registered(embedder_plugin("second_embedder_plugin", "clash"))
    with pytest.raises(EmbedderConflictError) as caught:
        open_embedder("clash")
    assert isinstance(caught.value, PluginConflictError) and isinstance(caught.value, RuntimeError)
    assert "first_embedder_plugin" in str(caught.value) and "second_embedder_plugin" in str(caught.value)


def test_a_plugin_cannot_take_a_builtin_embedder_name(registered) -> None:
    registered(embedder_plugin("impostor_embedder", "ollama"))
    with pytest.raises(EmbedderConflictError, match="impostor_embedder"):
        available_embedders()


def test_an_embedder_plugin_whose_hook_raises_is_skipped(registered) -> None:
    module = types.ModuleType("raising_embedder_plugin")

    @hookimpl
    def register_embedders(register):
        register(Embedder("half", lambda spec, options: HashEmbedder(4)))
        raise RuntimeError("boom")

    module.register_embedders = register_embedders  # type: ignore[attr-defined]
    registered(module)
    with pytest.warns(PluginLoadWarning, match="raising_embedder_plugin"):
        table = available_embedders()
    assert "half" not in table and "ollama" in table


def test_register_takes_only_an_embedder(registered) -> None:
    module = types.ModuleType("wrong_kind_plugin")

    @hookimpl
    def register_embedders(register):
        register("not an Embedder")

    module.register_embedders = register_embedders  # type: ignore[attr-defined]
    registered(module)
    with pytest.warns(PluginLoadWarning, match="takes Embedder objects"):
        available_embedders()


def test_one_plugin_may_offer_backends_and_embedders(registered, tmp_path, monkeypatch) -> None:
    (tmp_path / "qv_both_plugin.py").write_text(
        textwrap.dedent("""
        from qv_session_manager import Backend, hookimpl
        from qv_session_manager.backends.memory import MemoryStore
        from qv_session_manager.embedding import Embedder
        from qv_session_manager.testing.embedders import HashEmbedder

        @hookimpl
        def register_backends(register):
            register(Backend("bothstore", lambda url, options: MemoryStore()))

        @hookimpl
        def register_embedders(register):
            register(Embedder("bothembed", lambda spec, options: HashEmbedder(6)))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [EntryPoint("ep-both", "qv_both_plugin", group)])
    try:
        from qv_session_manager import available_backends

        assert available_backends()["bothstore"].plugin == "ep-both"
        assert open_embedder("bothembed").dimension == 6
    finally:
        plugins.pm.unregister(name="ep-both")
        sys.modules.pop("qv_both_plugin", None)


def test_the_readme_example_runs(standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    monkeypatch.setenv("OLLAMA_HOST", standin.url)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Search by meaning", 1)[1].split("### Embedders", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert len(namespace["vectors"]) == 2 and len(namespace["query"]) == namespace["embedder"].dimension


def test_the_search_by_meaning_example_runs(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from pathlib import Path

    pytest.importorskip("wordllama", reason="the example uses the [semantic] extra's offline embedder")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QV_SESSION_MANAGER_URL", raising=False)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Search by meaning", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    namespace["manager"].close()
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "hybrid None 0"
    assert printed[1].startswith("garage The battery is flat and the engine does nothing")


def test_the_package_exports_the_embedding_api() -> None:
    import qv_session_manager

    assert qv_session_manager.open_embedder is open_embedder
    assert issubclass(qv_session_manager.EmbedderConflictError, qv_session_manager.PluginConflictError)
    assert issubclass(qv_session_manager.BackendConflictError, qv_session_manager.PluginConflictError)


def run_python(code: str) -> str:
    import subprocess

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_listing_embedders_imports_neither_wordllama_nor_numpy() -> None:
    code = (
        "import sys\nimport qv_session_manager as q\nq.available_embedders()\n"
        "print(sorted(m for m in ('wordllama', 'numpy') if m in sys.modules))"
    )
    assert run_python(code) == "[]"


@needs_wordllama
def test_wordllama_opens_and_embeds_with_the_network_closed() -> None:
    code = (
        "import socket\n"
        "def refuse(*args, **kwargs):\n    raise OSError('network closed by the test')\n"
        "socket.socket.connect = refuse\nsocket.create_connection = refuse\n"
        "from qv_session_manager.embedding import open_embedder\n"
        "print(len(open_embedder('wordllama').embed(['offline text'])[0]))"
    )
    assert run_python(code) == "256"
