"""Plugin discovery: the built-in backends plus every ``qv_session_manager`` entry point."""

from __future__ import annotations

import importlib
import threading
import warnings
from importlib.metadata import entry_points

import pluggy

from . import hookspecs
from .errors import PluginLoadWarning

pm = pluggy.PluginManager("qv_session_manager")
pm.add_hookspecs(hookspecs)

BUILTIN_PLUGINS = ("qv_session_manager.backends.sqlite", "qv_session_manager.backends.memory")
_loaded = False
_lock = threading.Lock()


def load_plugins() -> None:
    """Register the built-in backends and installed plugins, once per process.

    A plugin that fails to import or to register (a hook that does not match the
    hook specification, a module registered twice) is skipped with a
    :class:`PluginLoadWarning`.
    """
    global _loaded
    with _lock:
        if _loaded:
            return
        for module_name in BUILTIN_PLUGINS:
            if not pm.has_plugin(module_name):
                pm.register(importlib.import_module(module_name), name=module_name)
        for entry_point in entry_points(group="qv_session_manager"):
            if pm.has_plugin(entry_point.name):
                continue
            try:
                pm.register(entry_point.load(), name=entry_point.name)
            except Exception as exc:  # a broken plugin must never crash the host
                warnings.warn(
                    f"qv_session_manager plugin {entry_point.name!r} ({entry_point.value}) "
                    f"failed to load and was skipped: {exc!r}",
                    PluginLoadWarning,
                    stacklevel=2,
                )
        _loaded = True
