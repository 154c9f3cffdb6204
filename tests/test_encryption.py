"""EncryptedStore: the whole storage contract over two backends, nothing readable at rest, keys, tampering."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import SessionManager
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.encryption import EncryptedStore, EncryptionKeyError
from qv_session_manager.errors import InvalidInputError, StorageError
from qv_session_manager.protocol import BulkSaving, Capability, ConversationFilter, ConversationStore, offers
from qv_session_manager.query import parse
from qv_session_manager.records import ConversationRecord, MessageRecord, StoredConversation, ToolCallRecord
from qv_session_manager.testing import StoreContract, strategies
from qv_session_manager.testing.contract import assert_round_trip, conversation, message

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))


def encrypted(inner: ConversationStore, **keys: bytes) -> EncryptedStore:
    keys = keys or {"a": KEY_A}
    return EncryptedStore(inner, keys, current=list(keys)[-1])


@pytest.mark.slow
class TestEncryptedMemoryContract(StoreContract):
    @pytest.fixture
    def store_opener(self):
        return lambda name: encrypted(MemoryStore())


@pytest.mark.slow
class TestEncryptedSQLiteContract(StoreContract):
    @pytest.fixture
    def store_opener(self, tmp_path):
        return lambda name: encrypted(SQLiteStore(tmp_path / f"{name}.db"))


# -- helpers ----------------------------------------------------------------------

SECRETS = {
    "title": "Quarterly merger with Zyxcorp",
    "content": "the launch password is hunter2-plover",
    "reply": "noted: plover moves on Thursday",
    "conversation metadata": "client-Quillfeather",
    "message metadata": "ticket-Wobblestone",
    "image": "aW1hZ2UtU2NhcmFiZXVz",
    "bytes image": "RAW-Marmalade-PNG",
    "tool name": "lookup_Brindlewood",
    "tool argument": "Ravensgate-street",
}


def secret_conversation() -> tuple[ConversationRecord, list[MessageRecord]]:
    record = conversation("secret", title=SECRETS["title"], metadata={"client": SECRETS["conversation metadata"]})
    sent = [
        message(
            SECRETS["content"],
            id="m1",
            metadata={"ticket": SECRETS["message metadata"]},
            images=(SECRETS["image"], SECRETS["bytes image"].encode()),
        ),
        message(
            SECRETS["reply"],
            id="m2",
            role="assistant",
            tool_calls=(ToolCallRecord(SECRETS["tool name"], {"street": SECRETS["tool argument"]}, "call_1"),),
        ),
    ]
    return record, sent


def stored_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


# -- nothing readable at rest --------------------------------------------------------


def test_sqlite_files_hold_no_plaintext(tmp_path: Path) -> None:
    path = tmp_path / "enc.db"
    store = encrypted(SQLiteStore(path))
    record, sent = secret_conversation()
    store.save(record, sent)
    store.append("secret", [message("appended Pemberly-fjord", id="m3")])
    assert (tmp_path / "enc.db-wal").exists() or path.exists()
    raw = stored_bytes(path)
    for what, secret in [*SECRETS.items(), ("appended", "Pemberly")]:
        for form in {secret.encode(), secret.encode("utf-16-le")}:
            assert form not in raw, f"the {what} is readable in the SQLite files"
    assert b"qvenc1:a:" in raw, "encrypted values must be stored as tokens"
    assert_round_trip(
        store.load("secret"), StoredConversation(record, (*sent, message("appended Pemberly-fjord", id="m3")))
    )
    store.close()


def test_plain_sqlite_store_would_show_the_secrets(tmp_path: Path) -> None:
    """The check above can fail: without the wrapper the same bytes are found."""
    path = tmp_path / "plain.db"
    store = SQLiteStore(path)
    store.save(*secret_conversation())
    assert SECRETS["content"].encode() in stored_bytes(path)
    store.close()


def test_inner_store_sees_only_tokens() -> None:
    inner = MemoryStore()
    store = encrypted(inner)
    record, sent = secret_conversation()
    store.save(record, sent)
    raw = inner.load("secret")
    assert raw is not None
    assert raw.conversation.title is not None and raw.conversation.title.startswith("qvenc1:a:")
    assert set(raw.conversation.metadata) == {"qvenc1"}
    first, second = raw.messages
    assert first.content.startswith("qvenc1:a:") and set(first.metadata) == {"qvenc1"}
    assert first.images is not None and isinstance(first.images[0], str) and isinstance(first.images[1], bytes)
    assert all(image[:7] in ("qvenc1:", b"qvenc1:") for image in first.images)
    assert second.tool_calls is not None and second.tool_calls[0].name.startswith("qvenc1:")
    assert set(second.tool_calls[0].arguments) == {"qvenc1"} and second.tool_calls[0].id == "call_1"
    # What the threat model says stays visible, does.
    assert (raw.conversation.id, raw.conversation.model_name, [m.role for m in raw.messages]) == (
        "secret",
        "llama3",
        ["user", "assistant"],
    )


def test_same_plaintext_encrypts_differently_each_time() -> None:
    inner = MemoryStore()
    store = encrypted(inner)
    store.save(conversation("c"), [message("same", id="x"), message("same", id="y")])
    raw = inner.load("c")
    assert raw is not None and raw.messages[0].content != raw.messages[1].content


@given(strategies.conversations(), strategies.message_lists())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_records_round_trip_and_never_appear_in_the_inner_store(
    record: ConversationRecord, messages: list[MessageRecord]
) -> None:
    inner = MemoryStore()
    store = encrypted(inner)
    store.save(record, messages)
    assert_round_trip(store.load(record.id), StoredConversation(record, tuple(messages)))
    raw = inner.load(record.id)
    assert raw is not None
    for plain, sealed in zip(messages, raw.messages):
        assert sealed.content.startswith("qvenc1:a:") and sealed.metadata.keys() == {"qvenc1"}
        assert (sealed.images is None) == (plain.images is None)
        assert [type(i) for i in sealed.images or ()] == [type(i) for i in plain.images or ()]


# -- keys and rotation ----------------------------------------------------------------


def test_rotation() -> None:
    inner = MemoryStore()
    old = EncryptedStore(inner, {"a": KEY_A}, current="a")
    old.save(conversation("old", title="written under a"), [message("old text", id="m")])

    rotated = EncryptedStore(inner, {"a": KEY_A, "b": KEY_B}, current="b")
    loaded = rotated.load("old")
    assert loaded is not None and loaded.conversation.title == "written under a"
    assert loaded.messages[0].content == "old text"
    rotated.save(conversation("new", title="written under b"), [message("new text", id="m")])
    raw_new = inner.load("new")
    assert raw_new is not None and raw_new.conversation.title is not None
    assert raw_new.conversation.title.startswith("qvenc1:b:") and raw_new.messages[0].content.startswith("qvenc1:b:")

    only_b = EncryptedStore(inner, {"b": KEY_B}, current="b")
    new = only_b.load("new")
    assert new is not None and new.messages[0].content == "new text"
    with pytest.raises(EncryptionKeyError, match="key id 'a'"):
        only_b.load("old")
    with pytest.raises(EncryptionKeyError):
        only_b.get("old")
    with pytest.raises(EncryptionKeyError):
        only_b.list(ConversationFilter())

    # Saving again under b re-encrypts; then a is no longer needed.
    rotated.save(conversation("old", title="written under a"), [message("old text", id="m")])
    again = only_b.load("old")
    assert again is not None and again.messages[0].content == "old text"


def test_wrong_key_under_the_same_id_raises_never_garbage() -> None:
    inner = MemoryStore()
    encrypted(inner).save(conversation("c", title="hello"), [message("text")])
    impostor = EncryptedStore(inner, {"a": KEY_B}, current="a")
    for call in (
        lambda: impostor.load("c"),
        lambda: impostor.get("c"),
        lambda: impostor.search(parse("text"), ConversationFilter()),
    ):
        with pytest.raises(EncryptionKeyError) as info:
            call()
        assert isinstance(info.value, StorageError) and isinstance(info.value, PermissionError)


@pytest.mark.parametrize(
    ("keys", "current"),
    [
        ({}, "a"),
        ({"a": b"short"}, "a"),
        ({"a": KEY_A}, "b"),
        ({"a:b": KEY_A}, "a:b"),
        ({"": KEY_A}, ""),
        ({"a": bytearray(KEY_A)}, "a"),
    ],
    ids=["no-keys", "short-key", "unknown-current", "colon-in-id", "empty-id", "not-bytes"],
)
def test_bad_keys_are_refused(keys: Any, current: str) -> None:
    with pytest.raises(InvalidInputError):
        EncryptedStore(MemoryStore(), keys, current=current)


# -- tampering and moved ciphertexts ---------------------------------------------------


def _flip(token: str) -> str:
    """The token with one bit of its ciphertext changed (a middle base64 character swapped)."""
    prefix, key_id, payload = token.split(":")
    index = len(payload) // 2
    swapped = "A" if payload[index] != "A" else "B"
    return f"{prefix}:{key_id}:{payload[:index]}{swapped}{payload[index + 1 :]}"


@pytest.mark.parametrize("make_inner", [MemoryStore, lambda: SQLiteStore(":memory:")], ids=["memory", "sqlite"])
def test_tampered_content_raises(make_inner: Any) -> None:
    inner = make_inner()
    store = encrypted(inner)
    store.save(conversation("c"), [message("pay 10 euros", id="m")])
    raw = inner.load("c")
    assert raw is not None
    inner.save(raw.conversation, [dataclasses.replace(raw.messages[0], content=_flip(raw.messages[0].content))])
    with pytest.raises(EncryptionKeyError, match="failed authentication"):
        store.load("c")


@pytest.mark.parametrize("field", ["title", "metadata"])
def test_tampered_conversation_fields_raise(field: str) -> None:
    inner = MemoryStore()
    store = encrypted(inner)
    store.save(conversation("c", title="t", metadata={"k": "v"}), [])
    raw = inner.get("c")
    assert raw is not None and raw.title is not None
    changed = (
        {"title": _flip(raw.title)} if field == "title" else {"metadata": {"qvenc1": _flip(raw.metadata["qvenc1"])}}
    )  # type: ignore[arg-type]
    inner.save(dataclasses.replace(raw, **changed), [])
    with pytest.raises(EncryptionKeyError):
        store.get("c")
    with pytest.raises(EncryptionKeyError):
        store.list(ConversationFilter())


@pytest.mark.parametrize("value", ["plain text", "qvenc1:a:", "qvenc1:a:!!!notbase64", "qvenc1:a:AAAA"])
def test_values_that_are_not_valid_tokens_raise(value: str) -> None:
    inner = MemoryStore()
    store = encrypted(inner)
    inner.save(conversation("c"), [message(value, id="m", metadata={"qvenc1": value})])
    with pytest.raises(EncryptionKeyError):
        store.load("c")


def test_ciphertext_moved_to_another_message_fails() -> None:
    inner = MemoryStore()
    store = encrypted(inner)
    store.save(conversation("c"), [message("secret of m1", id="m1"), message("harmless", id="m2")])
    raw = inner.load("c")
    assert raw is not None
    stolen = raw.messages[0].content
    inner.save(raw.conversation, [dataclasses.replace(raw.messages[1], content=stolen)])
    with pytest.raises(EncryptionKeyError):
        store.load("c")


def test_ciphertext_moved_to_another_conversation_fails() -> None:
    inner = MemoryStore()
    store = encrypted(inner)
    store.save(conversation("from", title="t"), [message("secret", id="m")])
    store.save(conversation("to", title="t"), [message("other", id="m")])
    source, target = inner.load("from"), inner.load("to")
    assert source is not None and target is not None
    inner.save(target.conversation, [source.messages[0]])  # same message id, other conversation
    with pytest.raises(EncryptionKeyError):
        store.load("to")
    inner.save(dataclasses.replace(target.conversation, title=source.conversation.title), [], replace=True)
    with pytest.raises(EncryptionKeyError):
        store.get("to")


def test_ciphertext_moved_between_fields_fails() -> None:
    inner = MemoryStore()
    store = encrypted(inner)
    store.save(conversation("c", title="title text"), [message("content text", id="m", images=("img",))])
    raw = inner.load("c")
    assert raw is not None and raw.messages[0].images is not None
    image_token = raw.messages[0].images[0]
    assert isinstance(image_token, str)
    inner.save(raw.conversation, [dataclasses.replace(raw.messages[0], content=image_token)])
    with pytest.raises(EncryptionKeyError):
        store.load("c")


def test_str_image_token_cannot_pass_for_a_bytes_image() -> None:
    inner = MemoryStore()
    store = encrypted(inner)
    store.save(conversation("c"), [message("x", id="m", images=("abc",))])
    raw = inner.load("c")
    assert raw is not None and raw.messages[0].images is not None
    token = raw.messages[0].images[0]
    assert isinstance(token, str)
    inner.save(raw.conversation, [dataclasses.replace(raw.messages[0], images=(token.encode("ascii"),))])
    with pytest.raises(EncryptionKeyError):
        store.load("c")


# -- search, filters, optional sides ------------------------------------------------------


def test_search_finds_decrypted_text_with_relevance() -> None:
    store = encrypted(SQLiteStore(":memory:"))
    assert Capability.RELEVANCE in store.capabilities
    store.save(conversation("a", title="Résumé help"), [message("Python lists are mutable")])
    store.save(conversation("b", title="other"), [message("rust ownership")])
    assert [h.conversation.id for h in store.search(parse("resume"), ConversationFilter())] == ["a"]
    [hit] = store.search(parse("lists"), ConversationFilter(), with_text=True)
    assert (hit.conversation.title, hit.text) == ("Résumé help", "Python lists are mutable")
    assert store.search(parse("rust"), ConversationFilter(), order="relevance")[0].score > 0  # type: ignore[operator]
    store.close()


def test_metadata_filter_pages_over_decrypted_metadata() -> None:
    store = encrypted(MemoryStore())
    for i in range(6):
        store.save(
            conversation(
                f"c{i}",
                updated=conversation().updated_at.replace(minute=i),
                metadata={"topic": "web" if i % 2 else "other"},
            ),
            [],
        )
    web = ConversationFilter(metadata={"topic": "web"})
    assert [r.id for r in store.list(web)] == ["c5", "c3", "c1"]
    assert [r.id for r in store.list(web, limit=1, offset=1)] == ["c3"]
    first = store.list(web, limit=1)
    assert [r.id for r in store.list(web, after=first[0])] == ["c3", "c1"]
    assert all(r.metadata == {"topic": "web"} for r in store.list(web))


def test_save_many_exists_only_when_the_inner_store_has_it(tmp_path: Path) -> None:
    class NoBulk:
        """A store without save_many: every call goes to a MemoryStore."""

        def __init__(self) -> None:
            self.inner = MemoryStore()
            self.capabilities = self.inner.capabilities

        def __getattr__(self, name: str) -> Any:
            if name == "save_many":
                raise AttributeError(name)
            return getattr(self.inner, name)

    assert isinstance(encrypted(MemoryStore()), BulkSaving)
    plain = encrypted(NoBulk())  # type: ignore[arg-type]
    assert isinstance(plain, EncryptedStore) and not offers(plain, Capability.BULK_SAVING)
    plain.save(conversation("c"), [message("hi", id="m")])
    window = plain.load_window("c", last_messages=1)
    assert window is not None and window.messages[0].content == "hi"


def test_missing_cryptography_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import qv_session_manager.encryption as module

    monkeypatch.setattr(module, "AESGCM", None)
    with pytest.raises(InvalidInputError, match=r"\[encryption\]"):
        EncryptedStore(MemoryStore(), {"a": KEY_A}, current="a")


def test_fresh_random_keys_work() -> None:
    store = EncryptedStore(MemoryStore(), {"k1": os.urandom(32)}, current="k1")
    store.save(conversation("c", title="x"), [message("y", id="m")])
    loaded = store.load("c")
    assert loaded is not None and loaded.messages[0].content == "y"


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Encryption at rest") :]
    code = section[section.index("```python\n") + len("```python\n") : section.index("\n```\n")]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHAT_KEY_2025_01", "ab" * 32)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    mgr = namespace["mgr"]
    assert isinstance(mgr, SessionManager)
    chat = Conversation(title="secret title")
    chat.add_user_message("a very private message")
    mgr.save_conversation(chat)
    assert [c["title"] for c in mgr.search_conversations("private")] == ["secret title"]
    mgr.close()
    assert b"private message" not in (tmp_path / "private.db").read_bytes()
