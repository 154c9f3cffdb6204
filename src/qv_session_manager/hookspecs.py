"""The plugin hooks. Plugins implement them with :data:`hookimpl`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:
    from .embedding.registry import Embedder
    from .registry import Backend

hookspec = HookspecMarker("qv_session_manager")
hookimpl = HookimplMarker("qv_session_manager")


@hookspec
def register_backends(register: Callable[[Backend], None]) -> None:
    """Register storage backends: call ``register(Backend(...))`` once for each."""


@hookspec
def register_embedders(register: Callable[[Embedder], None]) -> None:
    """Register embedders: call ``register(Embedder(...))`` once for each."""
