"""The whole conformance suite against the store URL in ``QV_SESSION_MANAGER_TEST_URL``.

    QV_SESSION_MANAGER_TEST_URL='sqlite:///{tmp}/{name}.db' pytest --pyargs qv_session_manager.testing.url_suite
    QV_SESSION_MANAGER_TEST_URL='postgresql://localhost/test?schema=qvtest_{name}' \
        HYPOTHESIS_PROFILE=qv-no-shrink pytest --pyargs qv_session_manager.testing.url_suite

``{name}`` is unique to each test and run, ``{run}`` is the run's id and ``{tmp}`` a
fresh directory per test; stores that are
:class:`~qv_session_manager.protocol.Droppable` are dropped after each test (see
:meth:`.contract.StoreContract.store_opener`).
"""

from qv_session_manager.testing import StoreContract


class TestStoreAtURL(StoreContract):
    """Stores come from the URL (the default ``store_opener``)."""
