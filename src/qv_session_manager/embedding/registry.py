"""Embedders by name, and opening one from a spec string such as ``ollama:nomic-embed-text``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import EmbedderConflictError, InvalidInputError, UnknownEmbedderError
from ..plugins import gather
from .protocol import TextEmbedder

#: Opens an embedder from its spec string and the keyword options given with it.
EmbedderOpener = Callable[[str, Mapping[str, Any]], TextEmbedder]


@dataclass(frozen=True)
class Embedder:
    """An embedder a plugin offers (as :class:`~qv_session_manager.Backend` is a backend).

    ``open(spec, options)`` returns a :class:`TextEmbedder`; ``spec`` is the whole
    string given to :func:`open_embedder` (``"ollama:nomic-embed-text"``), whose
    part before the first ``:`` is ``name``; ``options`` are its keyword options.
    ``plugin`` is filled in at registration.
    """

    name: str
    open: EmbedderOpener
    description: str = ""
    plugin: str = field(default="", compare=False, kw_only=True)


def available_embedders() -> dict[str, Embedder]:
    """Every installed embedder, by name.

    Raises EmbedderConflictError, naming both plugins, when two plugins claim one
    name. A plugin whose hook raises is skipped with a PluginLoadWarning (the same
    rule as for backends).
    """
    return gather(
        "register_embedders",
        Embedder,
        "embedder",
        lambda embedder: (embedder.name.lower(),),
        lambda embedder, plugin: replace(embedder, plugin=plugin),
        EmbedderConflictError,
    )


def split_spec(spec: str) -> tuple[str, str]:
    """``(name, rest)`` of a spec: ``"ollama:nomic-embed-text:v1.5"`` -> ``("ollama", "nomic-embed-text:v1.5")``.

    The name is lower-cased; ``rest`` is ``""`` when the spec is a bare name.
    InvalidInputError for anything but a string with a name.
    """
    if not isinstance(spec, str) or not spec.split(":", 1)[0].strip():
        shown = repr(spec) if isinstance(spec, str) else type(spec).__name__
        raise InvalidInputError(f"an embedder spec looks like 'ollama:nomic-embed-text' or 'wordllama', not {shown}")
    name, _, rest = spec.partition(":")
    return name.strip().lower(), rest.strip()


def open_embedder(spec: str, **options: Any) -> TextEmbedder:
    """Open the embedder a spec names, e.g. ``open_embedder("ollama:nomic-embed-text")``.

    Raises UnknownEmbedderError (a LookupError) listing the installed embedders when
    none has the spec's name, and whatever the embedder's opener raises (for
    example InvalidInputError for a spec it cannot read, MissingDependencyError for
    an uninstalled extra).
    """
    name, _ = split_spec(spec)
    table = available_embedders()
    embedder = table.get(name)
    if embedder is None:
        installed = ", ".join(sorted(table)) or "none"
        raise UnknownEmbedderError(f"no embedder is named {name!r}; installed: {installed}")
    return embedder.open(spec, options)
