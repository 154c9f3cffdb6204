"""Deterministic embedders for tests: no model, no server, the same vectors on every machine.

- :class:`HashEmbedder` (``"hash"``, ``"hash:64"``): feature hashing over the shared
  tokenizer (:func:`qv_session_manager.text.tokens`). Each token adds ±1 to one
  coordinate chosen by a BLAKE2b hash of it, so texts that share words are close
  and texts that share none are nearly orthogonal.
- :class:`SynonymEmbedder` (``"synonyms"``, ``"synonyms:64"``): the same, after
  mapping each token to its group's first word in a small synonym table, so texts
  can be close in meaning without sharing a word ("car" and "automobile").

Both are test-only: they are registered with the plugin system only by
:func:`install` (the test suite calls it), never for users by default.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..embedding.protocol import Vector
from ..embedding.registry import Embedder, split_spec
from ..embedding.vectors import checked_texts, finish
from ..errors import InvalidInputError
from ..hookspecs import hookimpl
from ..text import tokens

DEFAULT_DIMENSION = 64

#: The default synonym groups of :class:`SynonymEmbedder`: each word stands for its group's first.
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("car", "automobile", "auto", "vehicle"),
    ("battery", "accumulator", "cell"),
    ("dead", "flat", "drained", "empty"),
    ("start", "starts", "starting", "ignition", "crank"),
    ("fix", "repair", "mend"),
    ("doctor", "physician", "medic"),
    ("happy", "glad", "joyful", "cheerful"),
    ("big", "large", "huge"),
)


class HashEmbedder:
    """Feature hashing over the shared tokenizer (see the module doc); ``dimension`` >= 2."""

    name = "hash"

    def __init__(self, dimension: int = DEFAULT_DIMENSION) -> None:
        if not isinstance(dimension, int) or isinstance(dimension, bool) or dimension < 2:
            raise InvalidInputError(f"a hash embedder needs a dimension of at least 2, not {dimension!r}")
        self._dimension = dimension

    @property
    def model(self) -> str:
        return f"blake2b-tokens-{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def words(self, text: str) -> Iterable[str]:
        """The features a text contributes: its tokens."""
        return tokens(text)

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        return [self._one(text) for text in checked_texts(texts)]

    def embed_queries(self, texts: Sequence[str]) -> list[Vector]:
        """The same as :meth:`embed` (no query side)."""
        return self.embed(texts)

    def _one(self, text: str) -> Vector:
        counts = [0.0] * self._dimension
        for word in self.words(text):
            digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
            counts[digest % self._dimension] += 1.0 if (digest >> 63) & 1 else -1.0
        return finish(counts, self._dimension, source=self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dimension={self._dimension})"


class SynonymEmbedder(HashEmbedder):
    """:class:`HashEmbedder` after mapping each token to its synonym group's first word.

    ``groups`` replaces the default :data:`SYNONYMS` (words are folded as tokens are).
    """

    name = "synonyms"

    def __init__(self, dimension: int = DEFAULT_DIMENSION, groups: Iterable[Sequence[str]] = SYNONYMS) -> None:
        super().__init__(dimension)
        self._canonical: dict[str, str] = {}
        for group in groups:
            folded = [token for word in group for token in tokens(word)]
            for word in folded:
                self._canonical.setdefault(word, folded[0])

    @property
    def model(self) -> str:
        return f"blake2b-synonyms-{self._dimension}"

    def words(self, text: str) -> Iterable[str]:
        return [self._canonical.get(token, token) for token in tokens(text)]


def _opener(kind: type[HashEmbedder]) -> Callable[[str, Mapping[str, Any]], HashEmbedder]:
    def open_spec(spec: str, options: Mapping[str, Any]) -> HashEmbedder:
        _, rest = split_spec(spec)
        options = dict(options)
        if rest:
            if not rest.isdigit():
                raise InvalidInputError(
                    f"a {kind.name} spec looks like '{kind.name}' or '{kind.name}:64', not {spec!r}"
                )
            options.setdefault("dimension", int(rest))
        return kind(**options)

    return open_spec


@hookimpl
def register_embedders(register: Callable[[Embedder], None]) -> None:
    register(Embedder("hash", _opener(HashEmbedder), "test only: feature hashing of tokens"))
    register(Embedder("synonyms", _opener(SynonymEmbedder), "test only: feature hashing after a synonym table"))


#: The plugin name under which :func:`install` registers this module.
PLUGIN_NAME = "qv_session_manager.testing.embedders"


def install() -> None:
    """Make ``hash`` and ``synonyms`` openable by :func:`~qv_session_manager.embedding.open_embedder`.

    Idempotent; :func:`uninstall` undoes it.
    """
    from .. import plugins

    plugins.load_plugins()
    if not plugins.pm.has_plugin(PLUGIN_NAME):
        import sys

        plugins.pm.register(sys.modules[__name__], name=PLUGIN_NAME)


def uninstall() -> None:
    """Remove what :func:`install` registered (harmless when it was not)."""
    from .. import plugins

    if plugins.pm.has_plugin(PLUGIN_NAME):
        plugins.pm.unregister(name=PLUGIN_NAME)
