"""The seed (qv-session-manager 0.3.0) README, run as tests.

Every code example of the seed's README is executed here as close to verbatim as
possible, and its real outcome is checked: this library is a drop-in successor, so
code written against that README must keep working and keep meaning the same thing.
Examples that use the default ``SessionManager()`` run in a temporary working
directory (the default file is ``session_manager.db`` there).

The qv-ollama-sdk integration example needs a live Ollama server; it is replaced by
building the Conversation the way the SDK does (``Conversation(model_name=...)``
plus user/assistant messages) and exercising save / load / continue.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime

import pytest
from qv_ollama_sdk.domain import models as sdk_models
from qv_ollama_sdk.domain.models import Conversation

import qv_session_manager
from qv_session_manager import SessionManager
from seed_layouts import SEED_DDL

SUMMARY_KEYS = {"id", "title", "model_name", "created_at", "updated_at", "metadata"}
MESSAGE_DB_DICT_KEYS = {"id", "role", "content", "created_at", "metadata"}



@pytest.fixture
def in_tmp_cwd(tmp_path, monkeypatch):
    """Run in an empty working directory with no store URL in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QV_SESSION_MANAGER_URL", raising=False)
    return tmp_path


@pytest.fixture
def mgr(tmp_path):
    """The README's ``mgr``: a SessionManager on a file of its own."""
    manager = SessionManager(db_path=str(tmp_path / "readme.db"))
    yield manager
    manager.close()


def _saved_conversation(mgr: SessionManager, title: str, *messages: tuple[str, str], **fields) -> Conversation:
    conv = Conversation(title=title, model_name=fields.pop("model_name", "llama3"), **fields)
    for role, content in messages:
        getattr(conv, f"add_{role}_message")(content)
    mgr.save_conversation(conv, conv.messages)
    return conv


# -- Quickstart ------------------------------------------------------------------


def test_quickstart(tmp_path, monkeypatch, capsys):
    """Quickstart: save, load and search work as printed in the README."""
    monkeypatch.chdir(tmp_path)

    # -- README code, verbatim --
    from qv_session_manager import SessionManager
    from qv_ollama_sdk.domain.models import Conversation

    # Initialize SessionManager
    mgr = SessionManager(db_path="my_sessions.db")

    # Create new conversation
    conv = Conversation(title="Python Help", model_name="llama3")
    conv.add_user_message("Explain Python lists to me!")
    conv.add_assistant_message("Lists are ordered, mutable collections...")

    # Save
    mgr.save_conversation(conv, conv.messages)

    # Load
    loaded = mgr.load_conversation(str(conv.id))
    print(f"Loaded: {loaded.title} with {len(loaded.messages)} messages")

    # Search
    results = mgr.search_conversations("lists")
    print(f"Found: {len(results)} conversations")
    # -- end of README code --

    out = capsys.readouterr().out.splitlines()
    assert out == ["Loaded: Python Help with 2 messages", "Found: 1 conversations"]
    assert (tmp_path / "my_sessions.db").is_file()
    assert loaded.id == conv.id
    assert loaded.model_name == "llama3"
    assert [(m.role.value, m.content) for m in loaded.messages] == [
        ("user", "Explain Python lists to me!"),
        ("assistant", "Lists are ordered, mutable collections..."),
    ]
    assert [m.id for m in loaded.messages] == [m.id for m in conv.messages]
    assert [r["id"] for r in results] == [str(conv.id)]
    assert set(results[0]) == SUMMARY_KEYS
    mgr.close()


# -- API Documentation ------------------------------------------------------------


def test_initialization_with_db_path(tmp_path):
    """``SessionManager(db_path=...)`` stores in that SQLite file, which survives reopening."""
    path = str(tmp_path / "chats.db")
    first = SessionManager(db_path=path)
    conv = _saved_conversation(first, "Persisted", ("user", "hello"))
    first.close()

    assert (tmp_path / "chats.db").is_file()
    second = SessionManager(path)  # positional, as in the seed signature
    loaded = second.load_conversation(str(conv.id))
    second.close()
    assert loaded is not None and loaded.title == "Persisted"
    assert [m.content for m in loaded.messages] == ["hello"]


def test_save_conversation_example(mgr):
    """``mgr.save_conversation(conv, conv.messages)`` stores the conversation and all messages."""
    conv = Conversation(title="Saved", model_name="mistral", metadata={"k": 1})
    conv.add_system_message("You are terse.")
    conv.add_user_message("Hi")
    conv.add_assistant_message("Hello.")

    mgr.save_conversation(conv, conv.messages)

    loaded = mgr.load_conversation(str(conv.id))
    assert loaded.title == "Saved"
    assert loaded.model_name == "mistral"
    assert loaded.metadata == {"k": 1}
    assert loaded.created_at == conv.created_at and loaded.updated_at == conv.updated_at
    assert [(m.id, m.role.value, m.content, m.created_at) for m in loaded.messages] == [
        (m.id, m.role.value, m.content, m.created_at) for m in conv.messages
    ]


def test_load_conversation_example(mgr):
    """``load_conversation("<uuid>")`` returns the Conversation, or None when the id is unknown."""
    # README code, verbatim, against an empty store:
    conv = mgr.load_conversation("550e8400-e29b-41d4-a716-446655440000")
    assert conv is None

    stored = Conversation(id=uuid.UUID("550e8400-e29b-41d4-a716-446655440000"), title="Known", model_name="llama3")
    stored.add_user_message("first")
    stored.add_assistant_message("second")
    mgr.save_conversation(stored, stored.messages)

    # README code, verbatim, once the conversation exists:
    conv = mgr.load_conversation("550e8400-e29b-41d4-a716-446655440000")
    assert isinstance(conv, Conversation)
    assert conv.id == uuid.UUID("550e8400-e29b-41d4-a716-446655440000")
    assert conv.title == "Known"
    assert [m.content for m in conv.messages] == ["first", "second"]


def test_list_conversations_example(mgr, capsys):
    """``list_conversations()`` returns seed-shaped dicts, most recently updated first."""
    older = Conversation(title="Older", model_name="llama3", updated_at=datetime(2025, 1, 1, 8, 0))
    older.created_at = datetime(2025, 1, 1, 7, 0)
    newer = Conversation(title="Newer", model_name="gemma3:1b", created_at=datetime(2025, 2, 1, 9, 0))
    newer.updated_at = datetime(2025, 2, 2, 10, 30, 15, 123456)
    mgr.save_conversation(older, older.messages)
    mgr.save_conversation(newer, newer.messages)

    # -- README code, verbatim --
    all_convs = mgr.list_conversations()
    for conv in all_convs:
        print(f"{conv['title']} - {conv['created_at']}")
    # -- end of README code --

    assert capsys.readouterr().out.splitlines() == [
        "Newer - 2025-02-01T09:00:00",
        "Older - 2025-01-01T07:00:00",
    ]
    assert [set(c) for c in all_convs] == [SUMMARY_KEYS, SUMMARY_KEYS]
    assert all_convs[0] == {
        "id": str(newer.id),
        "title": "Newer",
        "model_name": "gemma3:1b",
        "created_at": "2025-02-01T09:00:00",
        "updated_at": "2025-02-02T10:30:15.123456",
        "metadata": {},
    }
    assert all_convs[1]["id"] == str(older.id)
    assert all_convs[1]["updated_at"] == "2025-01-01T08:00:00"


def test_search_conversations_example(mgr):
    """``search_conversations("Python")`` finds matches in titles and in message contents."""
    by_title = _saved_conversation(mgr, "Python tips", ("user", "How do I sort a list?"))
    by_message = _saved_conversation(mgr, "Misc", ("user", "Is python fast?"), ("assistant", "Fast enough."))
    _saved_conversation(mgr, "Rust help", ("user", "Explain borrowing."))

    # -- README code, verbatim --
    results = mgr.search_conversations("Python")
    # -- end of README code --

    assert {r["id"] for r in results} == {str(by_title.id), str(by_message.id)}
    assert len(results) == 2
    assert all(set(r) == SUMMARY_KEYS for r in results)


def test_search_by_time_examples(mgr):
    """``search_by_time``: ``start=today`` finds today's conversations; a period's end day is inclusive."""
    old = Conversation(title="January start", model_name="llama3", created_at=datetime(2025, 1, 1, 0, 0))
    old.updated_at = datetime(2025, 1, 1, 0, 0)
    late = Conversation(title="January end", model_name="llama3", created_at=datetime(2025, 1, 31, 23, 0))
    late.updated_at = datetime(2025, 1, 31, 23, 59, 59, 999999)
    before = Conversation(title="December", model_name="llama3", created_at=datetime(2024, 12, 31, 23, 59))
    before.updated_at = datetime(2024, 12, 31, 23, 59, 59, 999999)
    after = Conversation(title="February", model_name="llama3", created_at=datetime(2025, 2, 1, 0, 0))
    after.updated_at = datetime(2025, 2, 1, 0, 0)
    current = Conversation(title="Today", model_name="llama3")  # stamped datetime.now() by the SDK
    current.add_user_message("what is new?")
    for conv in (old, late, before, after, current):
        mgr.save_conversation(conv, conv.messages)

    # -- README code, verbatim --
    # Conversations from today
    today = datetime.now().strftime("%Y-%m-%d")
    recent = mgr.search_by_time(start=today)

    # Conversations from a period
    results = mgr.search_by_time(start="2025-01-01", end="2025-01-31")
    # -- end of README code --

    assert [c["id"] for c in recent] == [str(current.id)]
    assert [c["id"] for c in results] == [str(late.id), str(old.id)]  # newest first
    assert all(set(c) == SUMMARY_KEYS for c in recent + results)


def test_resume_conversation_example(mgr, capsys):
    """``resume_conversation`` returns the Conversation and the last message as a to_db_dict()."""
    conv = _saved_conversation(
        mgr, "Resumable", ("user", "Tell me a joke."), ("assistant", "Why did the chicken cross the road?")
    )

    # -- README code, verbatim --
    resumed = mgr.resume_conversation(str(conv.id))
    last_msg = resumed["last_message"]
    print(f"Last message: {last_msg['content']}")
    # -- end of README code --

    assert capsys.readouterr().out.splitlines() == ["Last message: Why did the chicken cross the road?"]
    assert set(resumed) == {"conversation", "last_message"}
    assert isinstance(resumed["conversation"], Conversation)
    assert resumed["conversation"].id == conv.id
    assert len(resumed["conversation"].messages) == 2
    assert MESSAGE_DB_DICT_KEYS <= set(last_msg)
    assert last_msg == conv.messages[-1].to_db_dict()
    assert last_msg["role"] == "assistant"


def test_delete_conversation_example(mgr):
    """``delete_conversation`` removes the conversation, its messages and its search entries."""
    conv = _saved_conversation(mgr, "Doomed", ("user", "ephemeral words here"))
    keep = _saved_conversation(mgr, "Kept", ("user", "permanent words here"))

    # -- README code, verbatim --
    mgr.delete_conversation(str(conv.id))
    # -- end of README code --

    assert mgr.load_conversation(str(conv.id)) is None
    assert [c["id"] for c in mgr.list_conversations()] == [str(keep.id)]
    assert mgr.search_conversations("ephemeral") == []
    assert mgr.search_conversations("Doomed") == []
    assert [c["id"] for c in mgr.search_conversations("words")] == [str(keep.id)]


# -- Advanced Examples --------------------------------------------------------------


def test_conversation_management_with_metadata(in_tmp_cwd):
    """The metadata example: the README's list comprehension finds the conversation, and the
    new ``list_conversations(metadata=...)`` filter gives the same ids."""
    # Other conversations in the same default file (module-level names: the README code
    # below re-imports SessionManager and Conversation as locals of this function).
    other = qv_session_manager.SessionManager()
    unrelated = sdk_models.Conversation(title="Cooking", model_name="llama3", metadata={"topic": "food"})
    other.save_conversation(unrelated, unrelated.messages)
    no_metadata = sdk_models.Conversation(title="Plain", model_name="llama3")
    other.save_conversation(no_metadata, no_metadata.messages)
    other.close()

    # -- README code, verbatim --
    from qv_session_manager import SessionManager
    from qv_ollama_sdk.domain.models import Conversation

    mgr = SessionManager()

    # Conversation with metadata
    conv = Conversation(
        title="JavaScript Tutorial",
        model_name="llama3",
        metadata={
            "topic": "web-development", 
            "difficulty": "beginner",
            "language": "javascript"
        }
    )

    # Add messages
    conv.add_system_message("You are an experienced web developer.")
    conv.add_user_message("Explain closures in JavaScript.")

    # Save
    mgr.save_conversation(conv, conv.messages)

    # Search by topic
    web_convs = [c for c in mgr.list_conversations() 
                 if c.get('metadata', {}).get('topic') == 'web-development']
    # -- end of README code --

    assert (in_tmp_cwd / "session_manager.db").is_file()
    assert [c["id"] for c in web_convs] == [str(conv.id)]
    assert web_convs[0]["title"] == "JavaScript Tutorial"
    assert web_convs[0]["metadata"] == {
        "topic": "web-development",
        "difficulty": "beginner",
        "language": "javascript",
    }
    filtered = mgr.list_conversations(metadata={"topic": "web-development"})
    assert [c["id"] for c in filtered] == [c["id"] for c in web_convs]
    loaded = mgr.load_conversation(str(conv.id))
    assert [(m.role.value, m.content) for m in loaded.messages] == [
        ("system", "You are an experienced web developer."),
        ("user", "Explain closures in JavaScript."),
    ]
    mgr.close()


def test_batch_delete_conversations_of_one_day(in_tmp_cwd, capsys):
    """Batch operations: the README loop deletes exactly the conversations updated on 2025-01-20
    (the whole day, both ends) and leaves the neighbouring days alone."""
    mgr = SessionManager()
    on_day = {}
    for title, stamp in [
        ("Midnight", datetime(2025, 1, 20, 0, 0, 0)),
        ("Noon", datetime(2025, 1, 20, 12, 30, 0, 500)),
        ("Last microsecond", datetime(2025, 1, 20, 23, 59, 59, 999999)),
    ]:
        conv = Conversation(title=title, model_name="llama3", created_at=stamp)
        conv.add_user_message(f"message of {title}")
        conv.created_at = stamp
        conv.updated_at = stamp
        mgr.save_conversation(conv, conv.messages)
        on_day[str(conv.id)] = title
    survivors = {}
    for title, stamp in [
        ("Day before", datetime(2025, 1, 19, 23, 59, 59, 999999)),
        ("Day after", datetime(2025, 1, 21, 0, 0, 0)),
    ]:
        conv = Conversation(title=title, model_name="llama3")
        conv.created_at = stamp
        conv.updated_at = stamp
        mgr.save_conversation(conv, conv.messages)
        survivors[str(conv.id)] = title

    # -- README code, verbatim --
    # Delete all conversations from a specific day
    target_date = "2025-01-20"
    old_convs = mgr.search_by_time(start=target_date, end=target_date)

    for conv in old_convs:
        mgr.delete_conversation(conv['id'])
        print(f"Deleted: {conv['title']}")
    # -- end of README code --

    assert {c["id"] for c in old_convs} == set(on_day)
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["Deleted: Last microsecond", "Deleted: Noon", "Deleted: Midnight"]  # newest first
    assert {c["id"]: c["title"] for c in mgr.list_conversations()} == survivors
    for conversation_id in on_day:
        assert mgr.load_conversation(conversation_id) is None
    assert mgr.search_conversations("message") == []
    mgr.close()


def test_conversation_continuation(mgr):
    """Continuation: load, add two messages, save again; the stored conversation then has all
    four messages in order, none duplicated."""
    original = Conversation(title="Continued", model_name="llama3")
    original.add_user_message("What is a monad?")
    original.add_assistant_message("A monad is a design pattern...")
    mgr.save_conversation(original, original.messages)
    existing_id = str(original.id)

    # -- README code, verbatim except for the id --
    # Load and extend an existing conversation
    conv = mgr.load_conversation(existing_id)

    if conv:
        # Add new messages
        conv.add_user_message("Can you explain that again?")
        conv.add_assistant_message("Sure! Let me rephrase that...")
        
        # Save updated version
        mgr.save_conversation(conv, conv.messages)
    # -- end of README code --

    reloaded = mgr.load_conversation(existing_id)
    assert [(m.role.value, m.content) for m in reloaded.messages] == [
        ("user", "What is a monad?"),
        ("assistant", "A monad is a design pattern..."),
        ("user", "Can you explain that again?"),
        ("assistant", "Sure! Let me rephrase that..."),
    ]
    ids = [m.id for m in reloaded.messages]
    assert len(set(ids)) == 4
    assert ids[:2] == [m.id for m in original.messages]
    assert ids == [m.id for m in conv.messages]
    assert reloaded.updated_at == conv.updated_at
    assert len(mgr.list_conversations()) == 1


def test_conversation_continuation_with_unknown_id_does_nothing(mgr):
    """Continuation verbatim with the README's placeholder id: nothing is found, nothing is written."""
    # -- README code, verbatim --
    # Load and extend an existing conversation
    conv = mgr.load_conversation("existing-conversation-id")

    if conv:
        # Add new messages
        conv.add_user_message("Can you explain that again?")
        conv.add_assistant_message("Sure! Let me rephrase that...")
        
        # Save updated version
        mgr.save_conversation(conv, conv.messages)
    # -- end of README code --

    assert conv is None
    assert mgr.list_conversations() == []


# -- Error Handling ---------------------------------------------------------------


def test_error_handling_example(mgr, capsys):
    """Error Handling: ``load_conversation("invalid-id")`` returns None (no exception)."""
    _saved_conversation(mgr, "Something", ("user", "anything"))

    # -- README code, verbatim --
    try:
        conv = mgr.load_conversation("invalid-id")
        if conv is None:
            print("Conversation not found")
    except Exception as e:
        print(f"Error loading: {e}")
    # -- end of README code --

    assert conv is None
    assert capsys.readouterr().out.splitlines() == ["Conversation not found"]


# -- Integration with qv-ollama-sdk ------------------------------------------------------


def test_integration_with_qv_ollama_sdk(in_tmp_cwd):
    """The SDK integration example without a server: a Conversation built as the SDK builds it
    (model gemma3:1b, title set, user/assistant turns) is persisted, reloaded and continued."""
    session_mgr = SessionManager()

    # New conversation (what the SDK's client creates)
    conv = Conversation(model_name="gemma3:1b")
    conv.title = "Code Review Session"

    # Chat with Ollama (what chat() appends: the user turn, then the reply)
    conv.add_user_message("Explain Clean Code principles to me")
    conv.add_assistant_message("Clean Code means readable, simple, well-named code.")

    # Persist session
    session_mgr.save_conversation(conv, conv.messages)

    # Later: load and continue session
    loaded_conv = session_mgr.load_conversation(str(conv.id))
    assert loaded_conv is not None
    assert loaded_conv.id == conv.id
    assert loaded_conv.title == "Code Review Session"
    assert loaded_conv.model_name == "gemma3:1b"
    assert loaded_conv.get_message_history() == conv.get_message_history()

    loaded_conv.add_user_message("Which tools do you recommend?")
    loaded_conv.add_assistant_message("Linters, formatters and code review tools.")
    session_mgr.save_conversation(loaded_conv, loaded_conv.messages)
    session_mgr.close()

    reopened = SessionManager()
    final = reopened.load_conversation(str(conv.id))
    assert [(m.role.value, m.content) for m in final.messages] == [
        ("user", "Explain Clean Code principles to me"),
        ("assistant", "Clean Code means readable, simple, well-named code."),
        ("user", "Which tools do you recommend?"),
        ("assistant", "Linters, formatters and code review tools."),
    ]
    assert final.model_name == "gemma3:1b"
    assert [c["id"] for c in reopened.search_conversations("Clean Code")] == [str(conv.id)]
    assert [c["id"] for c in reopened.search_conversations("tools")] == [str(conv.id)]
    reopened.close()


# -- The default store ----------------------------------------------------------------


def test_default_file_is_session_manager_db_in_cwd(in_tmp_cwd):
    """``SessionManager()`` with no arguments and no env var stores in ./session_manager.db."""
    mgr = SessionManager()
    assert type(mgr.store).__name__ == "SQLiteStore"
    conv = _saved_conversation(mgr, "Default file", ("user", "stored by default"))
    mgr.close()

    assert (in_tmp_cwd / "session_manager.db").is_file()
    assert not (in_tmp_cwd / "session_manager.sqlite3").exists()
    explicit = SessionManager(db_path=str(in_tmp_cwd / "session_manager.db"))
    assert explicit.load_conversation(str(conv.id)).title == "Default file"
    explicit.close()


def test_default_opens_seed_file_when_only_it_exists(in_tmp_cwd):
    """When only the seed's default ``session_manager.sqlite3`` exists, ``SessionManager()``
    opens it (upgrading it in place) instead of starting an empty ``session_manager.db``."""
    conversation_id = str(uuid.uuid4())
    message_id = str(uuid.uuid4())
    db = sqlite3.connect(in_tmp_cwd / "session_manager.sqlite3")
    db.executescript(SEED_DDL)
    db.execute(
        "INSERT OR REPLACE INTO conversations (id, title, model_name, created_at, updated_at, metadata)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (conversation_id, "From the seed", "llama3", "2025-01-20T10:00:00.123456",
         "2025-01-20T10:05:00.654321", '{"origin": "seed"}'),
    )
    db.execute(
        "INSERT OR REPLACE INTO messages (id, conversation_id, role, content, created_at, metadata)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (message_id, conversation_id, "user", "Seed era question", "2025-01-20T10:00:01.000001", "{}"),
    )
    db.commit()
    db.close()

    mgr = SessionManager()
    assert [c["id"] for c in mgr.list_conversations()] == [conversation_id]
    loaded = mgr.load_conversation(conversation_id)
    assert loaded.title == "From the seed"
    assert loaded.metadata == {"origin": "seed"}
    assert [(str(m.id), m.content) for m in loaded.messages] == [(message_id, "Seed era question")]
    assert [c["id"] for c in mgr.search_conversations("question")] == [conversation_id]
    mgr.close()
    assert not (in_tmp_cwd / "session_manager.db").exists()


def test_default_prefers_session_manager_db_when_both_exist(in_tmp_cwd):
    """With both default files present, ``session_manager.db`` (the documented default) wins."""
    seed_file = SessionManager(db_path="session_manager.sqlite3")
    _saved_conversation(seed_file, "In the seed file")
    seed_file.close()
    ours = SessionManager(db_path="session_manager.db")
    _saved_conversation(ours, "In the new file")
    ours.close()

    mgr = SessionManager()
    assert [c["title"] for c in mgr.list_conversations()] == ["In the new file"]
    mgr.close()


def test_environment_variable_selects_memory_backend(in_tmp_cwd, monkeypatch):
    """``QV_SESSION_MANAGER_URL=memory://`` makes ``SessionManager()`` use the memory backend."""
    monkeypatch.setenv("QV_SESSION_MANAGER_URL", "memory://")
    mgr = SessionManager()
    assert type(mgr.store).__name__ == "MemoryStore"
    conv = _saved_conversation(mgr, "In memory", ("user", "volatile"))
    assert mgr.load_conversation(str(conv.id)).title == "In memory"
    assert [c["id"] for c in mgr.search_conversations("volatile")] == [str(conv.id)]
    mgr.close()
    assert list(in_tmp_cwd.iterdir()) == []
