"""The whole conformance suite against the store URL in ``QV_SESSION_MANAGER_TEST_URL``.

    QV_SESSION_MANAGER_TEST_URL='sqlite:///{tmp}/{name}.db' pytest --pyargs qv_session_manager.testing.url_suite
"""

from qv_session_manager.testing import StoreContract


class TestStoreAtURL(StoreContract):
    """Stores come from the URL (the default ``store_opener``)."""
