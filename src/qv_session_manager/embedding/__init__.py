"""Embedders: turning texts into vectors, for search by meaning.

An embedder is any object with the :class:`TextEmbedder` shape. Plugins offer them
through the ``register_embedders`` hook (see :mod:`qv_session_manager.hookspecs`),
as they offer backends; :func:`open_embedder` picks one by a spec string:
``"ollama:nomic-embed-text"``, ``"wordllama"``, ``"wordllama:128"``. Built in:
``ollama`` (:mod:`.ollama`, the user's own Ollama server) and ``wordllama``
(:mod:`.wordllama`, offline: ``pip install wordllama``, from a checkout ``pip install -e ".[semantic]"``).
Deterministic embedders for tests live in :mod:`qv_session_manager.testing.embedders`.

Stores keep the vectors (:class:`~qv_session_manager.protocol.VectorStorage`) and
:mod:`qv_session_manager.meaning` searches with them.
"""

from .protocol import TextEmbedder, Vector
from .registry import Embedder, EmbedderOpener, available_embedders, open_embedder, split_spec

__all__ = ["Embedder", "EmbedderOpener", "TextEmbedder", "Vector", "available_embedders", "open_embedder", "split_spec"]
