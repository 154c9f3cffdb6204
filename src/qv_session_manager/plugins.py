"""Plugin discovery: the built-in backends plus every ``qv_session_manager`` entry point."""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import TypeVar

import pluggy

from . import hookspecs
from .errors import BackendConflictError, PluginConflictError, PluginLoadWarning

pm = pluggy.PluginManager("qv_session_manager")
pm.add_hookspecs(hookspecs)

GROUP = "qv_session_manager"
BUILTIN_PLUGINS = (
    "qv_session_manager.backends.sqlite",
    "qv_session_manager.backends.memory",
    "qv_session_manager.embedding.builtin",
)
_loaded = False
_lock = threading.Lock()


def load_plugins() -> None:
    """Register the built-in backends and installed plugins, once per process.

    A plugin that fails to import or to register (a hook that does not match the
    hook specification, a module registered twice) is skipped with a
    :class:`PluginLoadWarning`. Two distributions declaring one entry-point name
    raise :class:`BackendConflictError` naming both, before any entry point is
    loaded, and on every call until one of them is uninstalled (as two plugins
    claiming one backend name do).
    """
    global _loaded
    with _lock:
        if _loaded:
            return
        for module_name in BUILTIN_PLUGINS:
            if not pm.has_plugin(module_name):
                pm.register(importlib.import_module(module_name), name=module_name)
        points = list(entry_points(group=GROUP))
        check_unique_names(points)
        for entry_point in points:
            if not pm.has_plugin(entry_point.name):
                _register(entry_point)
        _loaded = True


def check_unique_names(points: Iterable[EntryPoint]) -> None:
    """Raise BackendConflictError when two distributions declare one entry-point name.

    pluggy knows a plugin by its name, so the second of two such plugins could only
    be dropped; the error names both distributions instead of dropping one silently.
    """
    seen: dict[str, EntryPoint] = {}
    for entry_point in points:
        first = seen.setdefault(entry_point.name, entry_point)
        if first is not entry_point and _origin(first) != _origin(entry_point):
            raise BackendConflictError(
                f"the {GROUP} entry point {entry_point.name!r} is declared by two distributions: "
                f"{_origin(first)} and {_origin(entry_point)}; uninstall one of them "
                "(plugin authors: name the entry point after the distribution)"
            )


def _origin(entry_point: EntryPoint) -> str:
    """The distribution declaring an entry point, with what it points to, for messages."""
    dist = entry_point.dist
    name = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    return f"{name!r} ({entry_point.value})"


def _register(entry_point: EntryPoint) -> None:
    try:
        pm.register(entry_point.load(), name=entry_point.name)
    except Exception as exc:  # noqa: BLE001  # a broken plugin must never crash the host
        warnings.warn(
            f"qv_session_manager plugin {entry_point.name!r} ({entry_point.value}) "
            f"failed to load and was skipped: {exc!r}",
            PluginLoadWarning,
            stacklevel=3,
        )


T = TypeVar("T")


def gather(
    hook: str,
    kind: type[T],
    noun: str,
    keys: Callable[[T], Iterable[str]],
    stamp: Callable[[T, str], T],
    conflict: type[PluginConflictError],
) -> dict[str, T]:
    """What every plugin registers through the hook named ``hook``, by each of its keys.

    The one rule for backends and embedders alike: each plugin's hook is called with
    a ``register`` function taking a ``kind`` (anything else is a TypeError, which
    makes the plugin fail); ``stamp(item, plugin_name)`` records who offered it. A
    plugin whose hook raises is skipped whole, with a :class:`PluginLoadWarning`. Two
    plugins claiming one key raise ``conflict`` naming both (one plugin may register
    one key twice: the later wins). ``noun`` names the kind in messages.
    """
    load_plugins()
    table: dict[str, T] = {}
    owner: dict[str, str] = {}
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):
        offered: list[T] = []
        plugin = impl.plugin_name

        def register(item: T, plugin: str = plugin) -> None:
            if not isinstance(item, kind):
                raise TypeError(f"register() takes {kind.__name__} objects, not {type(item).__name__}")
            offered.append(stamp(item, plugin))

        try:
            impl.function(**{name: register for name in impl.argnames})
        except Exception as exc:
            warnings.warn(
                f"qv_session_manager plugin {plugin!r} failed to register its {noun}s and was skipped: {exc!r}",
                PluginLoadWarning,
                stacklevel=3,
            )
            continue
        for item in offered:
            for key in keys(item):
                if key in owner and owner[key] != plugin:
                    raise conflict(
                        f"{noun} {key!r} is registered by two plugins: {owner[key]!r} and {plugin!r}; "
                        "uninstall one of them"
                    )
                table[key], owner[key] = item, plugin
    return table
