"""The README's example backend (examples/kv_store.py) passes the whole conformance suite.

The README shows that file; the last test keeps what it shows equal to the file.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from qv_session_manager import open_store
from qv_session_manager.plugins import pm
from qv_session_manager.protocol import Capability, offers
from qv_session_manager.testing import StoreContract, managed_opener

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "kv_store.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("kv_store", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kv_store = _load_example()


class TestGuideExampleContract(StoreContract):
    @pytest.fixture
    def store_opener(self, tmp_path):
        with managed_opener(lambda name: kv_store.KeyValueStore(tmp_path / f"{name}.db")) as opener:
            yield opener


def test_the_example_has_the_optional_sides_the_guide_names(tmp_path):
    store = kv_store.KeyValueStore(tmp_path / "sides.db")
    try:
        sides = (Capability.BULK_SAVING, Capability.WINDOWED_LOADING, Capability.PURGING, Capability.DROPPABLE)
        assert all(offers(store, side) for side in sides)
    finally:
        store.close()


def test_the_example_opens_by_url_once_registered(tmp_path):
    pm.register(kv_store, name="guide-example-kv-store")
    try:
        store = open_store(f"kvstore://{tmp_path / 'by-url.db'}")  # kvstore:///tmp/...
        try:
            assert isinstance(store, kv_store.KeyValueStore) and store.path == str(tmp_path / "by-url.db")
        finally:
            store.close()
    finally:
        pm.unregister(name="guide-example-kv-store")


def test_the_readme_shows_the_example_as_it_is():
    """The README shows the whole example file, and this module's contract class, verbatim."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = re.findall(r"```python\n# examples/kv_store\.py\n(.*?)```", readme, flags=re.DOTALL)
    assert shown == [EXAMPLE.read_text(encoding="utf-8")], "the README's copy of examples/kv_store.py differs from it"
    test_class = re.search(r"```python\n(class TestGuideExampleContract.*?)```", readme, flags=re.DOTALL)
    assert test_class is not None, "the README no longer shows the example's contract class"
    assert test_class.group(1) in Path(__file__).read_text(encoding="utf-8"), (
        "the README's TestGuideExampleContract differs from this module's"
    )
