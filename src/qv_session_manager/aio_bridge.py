"""Run blocking-style code on the event loop: sync functions that wait for awaitables.

This is how the async API reuses the sync logic (``SessionManager``, the PostgreSQL
store's SQL building) without a copy of it and without a thread: the sync function
runs in a greenlet started by :func:`run_bridged`; where it needs the result of I/O
it calls :func:`suspend` with an awaitable. That switches back to the coroutine
driving it, which awaits the awaitable on the event loop (other tasks run
meanwhile) and switches into the function again with the result, or with the
exception, raised where ``suspend`` was called. Cancellation of the driving task
arrives the same way, as ``CancelledError`` at the pending ``suspend``.

Needs the ``greenlet`` package (``pip install greenlet``; from a checkout ``pip install -e ".[async]"``);
:func:`available` tells whether it is installed.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .install_hints import install_hint

try:
    from greenlet import getcurrent, greenlet
except ImportError:  # an optional dependency: only native async stores need it
    greenlet = None  # type: ignore[assignment,misc]

T = TypeVar("T")


def available() -> bool:
    """Whether greenlet is installed, so that :func:`run_bridged` works."""
    return greenlet is not None


if greenlet is not None:

    class _Bridge(greenlet):
        """A greenlet started by run_bridged: the only place where suspend() may be called."""

else:  # pragma: no cover - exercised only without greenlet
    _Bridge = None  # type: ignore[assignment,misc]


async def run_bridged(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``function(*args, **kwargs)``, serving its :func:`suspend` calls on this event loop.

    Returns what the function returns and raises what it raises. Raises RuntimeError
    when greenlet is not installed.
    """
    if _Bridge is None:
        raise RuntimeError(f"native async stores need the greenlet package: {install_hint('greenlet', 'async')}")
    bridge = _Bridge(function, getcurrent())
    bridge.gr_context = contextvars.copy_context()  # the caller's context variables, as a thread would get
    request: Any = bridge.switch(*args, **kwargs)
    while not bridge.dead:
        try:
            value = await request
        except BaseException as exc:  # CancelledError too: the function sees it where it waits
            request = bridge.throw(exc)
        else:
            request = bridge.switch(value)
    return request  # type: ignore[no-any-return]


def in_bridge() -> bool:
    """Whether the caller runs inside :func:`run_bridged`, where :func:`suspend` works."""
    return _Bridge is not None and isinstance(getcurrent(), _Bridge)


def suspend(awaitable: Awaitable[T]) -> T:
    """Wait for ``awaitable`` on the event loop running the enclosing :func:`run_bridged`.

    Returns its result or raises its exception. Raises RuntimeError outside
    ``run_bridged`` (the awaitable is then closed, if it is a coroutine, unawaited).
    """
    if not in_bridge():
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()
        raise RuntimeError("suspend() works only inside run_bridged()")
    parent = getcurrent().parent
    assert parent is not None  # a _Bridge's parent is the greenlet that started it
    return parent.switch(awaitable)  # type: ignore[no-any-return]
