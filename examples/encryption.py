"""Two ways to keep chats encrypted at rest, side by side.

1. Whole-file encryption of the SQLite store (SQLCipher, the ``[sqlcipher]`` extra):
   every page of the file and its WAL is encrypted, search runs in FTS5 as usual.
2. Field-level encryption around any store (``EncryptedStore``, the ``[encryption]``
   extra): titles, content, metadata, images and tool calls are encrypted before the
   backend sees them; ids, timestamps and roles stay readable, search runs in Python.

Run it with ``python examples/encryption.py``; it works in a temporary directory.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import EncryptionKeyError, SessionManager
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.encryption import EncryptedStore
from qv_session_manager.protocol import ConversationFilter

SECRET = "aubergine"


def chat() -> Conversation:
    conversation = Conversation(title="Dinner plans", model_name="llama3", metadata={"guest": "Ada"})
    conversation.add_user_message(f"What can I cook with an {SECRET}?")
    conversation.add_assistant_message(f"Grill the {SECRET} with garlic and olive oil.")
    return conversation


def whole_file(folder: Path) -> None:
    # In a real deployment the variable is set outside the program (a secret store,
    # a systemd credential...). A raw key in SQLCipher's x'...' notation skips the
    # passphrase derivation; any other value is taken as a passphrase.
    os.environ["CHATS_KEY"] = f"x'{secrets.token_hex(32)}'"
    url = f"sqlite:///{folder / 'chats.db'}?key_env=CHATS_KEY"  # the URL names the variable, never the key

    with SessionManager(url=url) as mgr:
        mgr.save_conversation(chat())
        print("whole file: search finds", [hit["title"] for hit in mgr.search_conversations(SECRET)])
    print("whole file: plaintext in the file:", SECRET.encode() in (folder / "chats.db").read_bytes())

    os.environ["CHATS_KEY"] = "not the key"
    try:
        SessionManager(url=url)
    except EncryptionKeyError:
        print("whole file: a wrong key raises EncryptionKeyError")


def field_level(folder: Path) -> None:
    keys = {"2025-01": secrets.token_bytes(32)}  # key id -> 32-byte key; rotate by adding a new id
    path = folder / "fields.db"
    with SessionManager(store=EncryptedStore(SQLiteStore(path), keys, current="2025-01")) as mgr:
        mgr.save_conversation(chat())
        print("field level: search finds", [hit["title"] for hit in mgr.search_conversations(SECRET)])
    print("field level: plaintext in the file:", SECRET.encode() in path.read_bytes())
    backend = SQLiteStore(path)  # what the backend itself holds: roles in the clear, content sealed
    try:
        (record,) = backend.list(ConversationFilter())
        stored = backend.load(record.id)
        assert stored is not None
        first = stored.messages[0]
        print(f"field level: the backend holds {first.role!r}, {first.content.split(':')[0]!r}...")
    finally:
        backend.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        whole_file(Path(folder))
        field_level(Path(folder))


if __name__ == "__main__":
    main()
