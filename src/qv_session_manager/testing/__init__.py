"""The conformance kit for storage backends (from a checkout: ``pip install -e ".[testing]"``).

It needs pytest and Hypothesis (``pip install pytest hypothesis`` anywhere: the
``testing`` extra is not in the 0.3.0 release on PyPI).

Run every contract against your backend::

    from qv_session_manager.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_opener(self, tmp_path):
            return lambda name: MyStore(tmp_path / name)

or, without writing a class, run ``pytest --pyargs qv_session_manager.testing.url_suite``
with ``QV_SESSION_MANAGER_TEST_URL`` set to a URL containing ``{name}`` (see :mod:`.contract`).

Importing this package registers the kit's Hypothesis profiles (``qv-default``,
``qv-ci``, ``qv-deep``, ``qv-no-shrink``; see :mod:`.profiles`) and loads the one
``HYPOTHESIS_PROFILE`` names, if it names one of them.
"""

import pytest

pytest.register_assert_rewrite(
    "qv_session_manager.testing.contract",
    "qv_session_manager.testing.stateful",
    "qv_session_manager.testing.vector_contract",
)

from .contract import StoreContract, assert_round_trip  # noqa: E402
from .openers import StoreOpener, managed_opener  # noqa: E402
from .profiles import load_chosen_profile, register_profiles  # noqa: E402
from .stateful import StoreComparison, run_comparison  # noqa: E402

register_profiles()
load_chosen_profile()

__all__ = [
    "StoreComparison",
    "StoreContract",
    "StoreOpener",
    "assert_round_trip",
    "managed_opener",
    "run_comparison",
]
