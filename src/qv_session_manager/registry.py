"""Backends by name and URL scheme, and opening a store from a URL."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .errors import BackendConflictError, InvalidInputError, PluginLoadWarning, SessionStoreError, UnknownBackendError
from .plugins import load_plugins, pm
from .protocol import ConversationStore
from .redact import mask_url, scrub, scrub_exception

if TYPE_CHECKING:
    from .async_protocol import AsyncConversationStore


#: Opens a store from a URL and the keyword options given with it.
Opener = Callable[[str, Mapping[str, Any]], "ConversationStore"]
#: Opens a native async store, or returns None when it cannot (a missing optional dependency).
AsyncOpener = Callable[[str, Mapping[str, Any]], "AsyncConversationStore | None"]


@dataclass(frozen=True)
class Backend:
    """A storage backend a plugin offers.

    ``open(url, options)`` returns a store; ``options`` are the keyword options
    given to :func:`open_store`. The backend is chosen by a URL whose scheme is
    ``name`` or one of ``schemes``. ``open_async``, when given, takes the same
    arguments and returns a native async store (see
    :mod:`qv_session_manager.async_protocol`), or None to let async callers run the
    sync store on threads. ``plugin`` is filled in at registration.
    """

    name: str
    open: Opener
    schemes: tuple[str, ...] = ()
    description: str = ""
    open_async: AsyncOpener | None = field(default=None, kw_only=True)
    plugin: str = field(default="", compare=False, kw_only=True)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.name, *self.schemes)))


def available_backends() -> dict[str, Backend]:
    """Every installed backend, by name and by each of its URL schemes.

    Raises BackendConflictError, naming both plugins, when two plugins claim one
    name or scheme. A plugin whose hook raises is skipped with a PluginLoadWarning.
    """
    load_plugins()
    table: dict[str, Backend] = {}
    for impl in reversed(pm.hook.register_backends.get_hookimpls()):
        offered: list[Backend] = []

        def register(backend: Backend, plugin: str = impl.plugin_name) -> None:
            if not isinstance(backend, Backend):
                raise TypeError(f"register() takes a Backend, not {type(backend).__name__}")
            offered.append(replace(backend, schemes=tuple(backend.schemes), plugin=plugin))

        try:
            impl.function(**{name: register for name in impl.argnames})
        except Exception as exc:
            warnings.warn(
                f"qv_session_manager plugin {impl.plugin_name!r} failed to register its "
                f"backends and was skipped: {exc!r}",
                PluginLoadWarning,
                stacklevel=2,
            )
            continue
        for backend in offered:
            for key in backend.keys:
                if key in table and table[key].plugin != backend.plugin:
                    raise BackendConflictError(
                        f"backend {key!r} is registered by two plugins: "
                        f"{table[key].plugin!r} and {backend.plugin!r}; uninstall one of them"
                    )
                table[key] = backend
    return table


def scheme_of(url: str) -> str:
    """The lower-cased scheme of a store URL; InvalidInputError (URL masked) when it has none."""
    if not isinstance(url, str) or "://" not in url:
        shown = repr(mask_url(url)) if isinstance(url, str) else type(url).__name__
        raise InvalidInputError(f"a store URL looks like 'sqlite:///path.db' or 'memory://', not {shown}")
    return url.split("://", 1)[0].lower()


def open_with(opener: Callable[[str, Mapping[str, Any]], Any], url: str, options: Mapping[str, Any]) -> Any:
    """``opener(url, options)`` with the URL's password masked in whatever it raises.

    A plugin may quote the URL in an error; this is the net that keeps the secret
    out of messages either way. A bare ValueError (a URL the plugin could not
    split, say) becomes InvalidInputError, with the original as its cause.
    """
    try:
        return opener(url, options)
    except SessionStoreError as error:
        raise scrub_exception(error, [url])  # noqa: B904 - the caught error itself, scrubbed in place
    except ValueError as error:
        reason = scrub(str(error), [url]) or type(error).__name__
        raise InvalidInputError(f"{mask_url(url)!r} is not a usable store URL: {reason}") from scrub_exception(
            error, [url]
        )


def open_store(url: str, **options: Any) -> ConversationStore:
    """Open the store a URL names, e.g. ``sqlite:///chats.db`` or ``memory://``.

    Raises UnknownBackendError (a LookupError) listing the installed backends when
    no backend handles the URL's scheme. Errors never show the URL's password (see
    :func:`open_with`).
    """
    scheme = scheme_of(url)
    table = available_backends()
    backend = table.get(scheme)
    if backend is None:
        installed = ", ".join(sorted(table)) or "none"
        raise UnknownBackendError(f"no backend handles {scheme + '://'!r}; installed: {installed}")
    store: ConversationStore = open_with(backend.open, url, options)
    return store
