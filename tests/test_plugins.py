"""Backend discovery through pluggy: built-ins, entry points, broken and clashing plugins."""

from __future__ import annotations

import sys
import textwrap
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from qv_session_manager import (
    Backend,
    BackendConflictError,
    PluginLoadWarning,
    SessionManager,
    UnknownBackendError,
    available_backends,
    hookimpl,
    open_store,
    plugins,
)
from qv_session_manager.backends.memory import MemoryStore


def plugin_module(name: str, *backends: str) -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def register_backends(register):
        for backend in backends:
            register(Backend(backend, lambda url, options: MemoryStore(), schemes=(f"{backend}+x",)))

    module.register_backends = register_backends  # type: ignore[attr-defined]
    return module


@pytest.fixture
def registered():
    """Register plugin modules for one test and unregister them afterwards."""
    added: list[str] = []

    def register(module: types.ModuleType) -> None:
        plugins.pm.register(module, name=module.__name__)
        added.append(module.__name__)

    yield register
    for name in added:
        plugins.pm.unregister(name=name)


@pytest.fixture
def fresh_discovery(monkeypatch):
    """Make load_plugins() run again with the entry points a test provides."""

    def use(points: list[EntryPoint]) -> None:
        monkeypatch.setattr(plugins, "_loaded", False)
        monkeypatch.setattr(plugins, "entry_points", lambda group: [p for p in points if p.group == group])

    yield use
    for name, _ in list(plugins.pm.list_name_plugin()):
        if name.startswith("ep-"):
            plugins.pm.unregister(name=name)


def test_builtin_backends_register_through_the_hook() -> None:
    table = available_backends()
    assert {"sqlite", "memory"} <= set(table)
    assert table["sqlite"].plugin == "qv_session_manager.backends.sqlite"
    assert table["memory"].plugin == "qv_session_manager.backends.memory"


def test_a_plugin_backend_is_found_by_name_and_scheme(registered) -> None:
    registered(plugin_module("third_party", "thirdparty"))
    assert isinstance(open_store("thirdparty://anything"), MemoryStore)
    assert isinstance(open_store("thirdparty+x://anything"), MemoryStore)
    assert isinstance(SessionManager(url="thirdparty://x").store, MemoryStore)


def test_two_plugins_claiming_one_name_is_an_error_naming_both(registered) -> None:
    registered(plugin_module("first_plugin", "clash"))
    registered(plugin_module("second_plugin", "clash"))
    with pytest.raises(BackendConflictError) as caught:
        available_backends()
    assert "first_plugin" in str(caught.value) and "second_plugin" in str(caught.value)


def test_a_plugin_cannot_take_a_builtin_name(registered) -> None:
    registered(plugin_module("impostor", "sqlite"))
    with pytest.raises(BackendConflictError, match="impostor"):
        available_backends()


def test_unknown_scheme_lists_installed_backends() -> None:
    with pytest.raises(UnknownBackendError) as caught:
        open_store("nosuch://x")
    assert isinstance(caught.value, LookupError)
    assert "sqlite" in str(caught.value) and "memory" in str(caught.value)


def _memory_plugin(tmp_path, monkeypatch, module: str, backend: str) -> None:
    """An importable plugin module ``module`` registering an in-memory backend named ``backend``."""
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(f"""
        from qv_session_manager import Backend, hookimpl
        from qv_session_manager.backends.memory import MemoryStore

        @hookimpl
        def register_backends(register):
            register(Backend({backend!r}, lambda url, options: MemoryStore()))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))


def test_entry_point_plugins_are_loaded(fresh_discovery, tmp_path, monkeypatch) -> None:
    _memory_plugin(tmp_path, monkeypatch, "qv_fake_plugin", "fakeplugin")
    fresh_discovery([EntryPoint("ep-fake", "qv_fake_plugin", "qv_session_manager")])
    assert available_backends()["fakeplugin"].plugin == "ep-fake"
    sys.modules.pop("qv_fake_plugin", None)


def test_a_plugin_that_fails_to_import_warns_and_is_skipped(fresh_discovery) -> None:
    fresh_discovery([EntryPoint("ep-broken", "qv_no_such_module_anywhere", "qv_session_manager")])
    with pytest.warns(PluginLoadWarning, match="ep-broken"):
        table = available_backends()
    assert "sqlite" in table, "the host keeps working"


def test_a_plugin_whose_hook_raises_warns_and_is_skipped(registered) -> None:
    module = types.ModuleType("raising_plugin")

    @hookimpl
    def register_backends(register):
        register(Backend("half", lambda url, options: MemoryStore()))
        raise RuntimeError("boom")

    module.register_backends = register_backends  # type: ignore[attr-defined]
    registered(module)
    with pytest.warns(PluginLoadWarning, match="raising_plugin"):
        table = available_backends()
    assert "half" not in table, "nothing of a failing plugin is registered"


def test_a_plugin_whose_hook_does_not_match_the_spec_warns_and_is_skipped(
    fresh_discovery, tmp_path, monkeypatch
) -> None:
    (tmp_path / "qv_bad_signature.py").write_text(
        textwrap.dedent("""
        from qv_session_manager import hookimpl

        @hookimpl
        def register_backends(register, extra):
            pass
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_discovery([EntryPoint("ep-bad-signature", "qv_bad_signature", "qv_session_manager")])
    with pytest.warns(PluginLoadWarning, match="ep-bad-signature"):
        table = available_backends()
    assert "sqlite" in table
    assert isinstance(open_store("memory://"), MemoryStore), "later opens keep working"
    sys.modules.pop("qv_bad_signature", None)


def fake_distribution(site: Path, name: str, entry_points: str) -> None:
    """A ``<name>-1.0.dist-info`` under ``site`` declaring ``entry_points`` (entry_points.txt text)."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_two_distributions_declaring_one_entry_point_name_is_an_error_naming_both(tmp_path, monkeypatch) -> None:
    for distribution, module in [("qv-redis-one", "redis_one"), ("qv-redis-two", "redis_two")]:
        fake_distribution(tmp_path, distribution, f"[qv_session_manager]\nredis = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_loaded", False)
    for _ in range(2):  # on every call, not only the first
        with pytest.raises(BackendConflictError) as caught:
            available_backends()
        message = str(caught.value)
        assert "'redis'" in message and "qv-redis-one" in message and "qv-redis-two" in message
    assert not plugins.pm.has_plugin("redis"), "neither plugin is registered"
    assert "redis_one" not in sys.modules and "redis_two" not in sys.modules, "nothing is imported"


def test_one_distribution_found_twice_is_no_conflict(fresh_discovery, tmp_path, monkeypatch) -> None:
    _memory_plugin(tmp_path, monkeypatch, "qv_twice_plugin", "twice")
    point = EntryPoint("ep-twice", "qv_twice_plugin", "qv_session_manager")
    fresh_discovery([point, EntryPoint(point.name, point.value, point.group)])
    assert available_backends()["twice"].plugin == "ep-twice"
    sys.modules.pop("qv_twice_plugin", None)
