"""The built-in embedders' plugin: ``ollama`` and ``wordllama``, registered like any plugin's.

Nothing heavy is imported here: each embedder's module is imported when it is opened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..hookspecs import hookimpl
from .protocol import TextEmbedder
from .registry import Embedder


def _open_ollama(spec: str, options: Mapping[str, Any]) -> TextEmbedder:
    from .ollama import open_ollama

    return open_ollama(spec, options)


def _open_wordllama(spec: str, options: Mapping[str, Any]) -> TextEmbedder:
    from .wordllama import open_wordllama

    return open_wordllama(spec, options)


@hookimpl
def register_embedders(register: Callable[[Embedder], None]) -> None:
    register(Embedder("ollama", _open_ollama, "Ollama's /api/embed, e.g. 'ollama:nomic-embed-text' (needs the server)"))
    register(Embedder("wordllama", _open_wordllama, "WordLlama, offline, 256-d (needs the [semantic] extra)"))
