"""mask_url and the errors of opening a store: a password in a URL never shows."""

from __future__ import annotations

import asyncio
import logging
import types
import warnings
from urllib.parse import unquote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from qv_session_manager import (
    Backend,
    InvalidInputError,
    SessionManager,
    SessionStoreError,
    hookimpl,
    open_store,
    plugins,
)
from qv_session_manager.aio import AsyncSessionManager
from qv_session_manager.errors import StorageError
from qv_session_manager.redact import mask_url, scrub, scrub_exception, secrets_of

SECRET = "Zq7-HUSH-p4ss"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://user:s3cret@host/db", "postgresql://user:***@host/db"),
        ("postgresql://user:s3cret@host:5432/db?schema=x", "postgresql://user:***@host:5432/db?schema=x"),
        ("postgresql://user:s3%zzcret@host/db", "postgresql://user:***@host/db"),  # a bad percent-escape
        ("postgresql:/user:s3cret@host/db", "postgresql:/user:***@host/db"),  # one slash missing
        ("postgresql:user:s3cret@host/db", "postgresql:***@host/db"),  # no slash: the user may be the secret too
        ("user:s3cret@host/db", "user:***@host/db"),  # no scheme
        ("postgresql://user:s3cret@[::1/db", "postgresql://user:***@[::1/db"),  # does not split
        ("postgresql://user:pa/ss?w@rd@host/db", "postgresql://user:***@host/db"),  # raw / ? @ in the password
        ("postgresql://host/db?password=s3cret&sslmode=require", "postgresql://host/db?password=***&sslmode=require"),
        ("postgresql://host/db?PassWord=s3cret", "postgresql://host/db?PassWord=***"),
        ("postgresql://host/db?sslpassword=s3cret", "postgresql://host/db?sslpassword=***"),
        ("host=h password='s 3cret' dbname=d", "host=h password=*** dbname=d"),  # libpq keyword form
        ("sqlite:///chats.db?key=s3cret&key_env=VAR", "sqlite:///chats.db?key=***&key_env=VAR"),
        # Nothing secret: unchanged.
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("postgresql://host:5432/db", "postgresql://host:5432/db"),
        ("sqlite:///chats.db?key_env=VAR", "sqlite:///chats.db?key_env=VAR"),
        ("sqlite:////home/me/a@b.db", "sqlite:////home/me/a@b.db"),
        ("memory://", "memory://"),
        ("", ""),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


users = st.text(st.characters(blacklist_characters=":@/?#"), max_size=8)
passwords = st.text(min_size=1)
hosts = st.text(st.characters(blacklist_characters="@="), max_size=20)  # "=" could start a secret parameter


@given(st.sampled_from(["postgresql", "postgres", "mystore", "x+y"]), users, passwords, hosts)
def test_the_password_is_replaced_whatever_it_holds(scheme: str, user: str, password: str, rest: str) -> None:
    assert mask_url(f"{scheme}://{user}:{password}@{rest}") == f"{scheme}://{user}:***@{rest}"


@given(st.text())
def test_mask_url_never_raises_and_is_idempotent(url: str) -> None:
    once = mask_url(url)
    assert mask_url(once) == once


@given(users, st.text(st.characters(blacklist_characters="*"), min_size=1), hosts, st.text())
def test_scrub_leaves_no_trace_of_the_password(user: str, password: str, rest: str, noise: str) -> None:
    assume("*" not in unquote(password))  # the mask itself is made of stars
    url = f"postgresql://{user}:{password}@{rest}"
    message = f"{noise}{url}{noise}{url!r}{password}{unquote(password)}{noise}"
    scrubbed = scrub(message, [url])
    assert password not in scrubbed and unquote(password) not in scrubbed


def test_scrub_masks_the_url_its_repr_and_its_secrets_alone() -> None:
    url = f"postgresql://app:{SECRET}%41@db/x"
    message = f'cannot open {url!r}; token "{SECRET}%41" or decoded {SECRET}A; at {url}'
    scrubbed = scrub(message, [url, None, ""])
    assert SECRET not in scrubbed
    assert "'postgresql://app:***@db/x'" in scrubbed and scrubbed.endswith("at postgresql://app:***@db/x")
    assert sorted(secrets_of(url)) == sorted([f"{SECRET}%41", f"{SECRET}A"])


def test_scrub_exception_masks_the_whole_chain_in_place() -> None:
    url = f"postgresql://app:{SECRET}@db/x"
    try:
        try:
            raise ValueError(f"driver says {url}")
        except ValueError as inner:
            raise StorageError(f"opening {url} failed") from inner
    except StorageError as error:
        assert scrub_exception(error, [url]) is error
        assert isinstance(error, StorageError) and SECRET not in str(error) and SECRET not in str(error.__cause__)
    low = OSError(2, f"no such file {SECRET}", f"/tmp/{SECRET}")
    scrub_exception(low, [url])
    assert SECRET not in str(low) and low.errno == 2


# -- the library: open_store, SessionManager, AsyncSessionManager -------------------


def echoing_plugin() -> types.ModuleType:
    """A careless backend that quotes the whole URL in its errors (typed, and bare ValueError)."""
    module = types.ModuleType("echoing_plugin")

    def open_url(url: str, options: object) -> object:
        if "bare" in url:
            raise ValueError(f"cannot split {url}")
        raise StorageError(f"cannot reach {url}")

    @hookimpl
    def register_backends(register):  # type: ignore[no-untyped-def]
        register(Backend("echoing", open_url))

    module.register_backends = register_backends  # type: ignore[attr-defined]
    return module


@pytest.fixture
def echoing() -> object:
    plugins.load_plugins()
    module = echoing_plugin()
    plugins.pm.register(module, name=module.__name__)
    yield module
    plugins.pm.unregister(name=module.__name__)


BAD_URLS = [
    f"echoing://app:{SECRET}@host/db",  # the plugin quotes it
    f"echoing://app:{SECRET}@host/bare",  # ... in a bare ValueError
    f"nosuch://app:{SECRET}@host/db",  # unknown scheme
    f"echoing:/app:{SECRET}@host/db",  # one slash missing
    f"sqlite://app:{SECRET}@/chats.db",  # SQLite takes no host
    f"sqlite://app:{SECRET}@[::1/chats.db",  # does not split
    f"memory://app:{SECRET}@host?x=1",  # the memory backend takes no options
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_no_error_of_opening_shows_the_password(url: str, echoing: object, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    for attempt in (lambda: open_store(url), lambda: SessionManager(url=url)):
        with pytest.raises(SessionStoreError) as caught:
            attempt()
        seen += [str(caught.value), repr(caught.value), str(caught.value.__cause__), repr(caught.value.__context__)]

    async def asynchronously() -> None:
        with pytest.raises(SessionStoreError) as caught:
            await AsyncSessionManager.open(url=url)
        seen.append(str(caught.value))

    asyncio.run(asynchronously())
    assert seen and not any(SECRET in text for text in seen), seen
    assert SECRET not in caplog.text
    assert any("***" in text for text in seen) or url.startswith("nosuch")


def test_a_bare_value_error_of_a_plugin_becomes_invalid_input(echoing: object) -> None:
    with pytest.raises(InvalidInputError, match=r"not a usable store URL: cannot split echoing://app:\*\*\*@host/bare"):
        open_store(f"echoing://app:{SECRET}@host/bare")


def test_a_store_opened_with_a_password_does_not_show_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manager = SessionManager(url=f"memory://app:{SECRET}@host")
        texts = [repr(manager), repr(manager.store), str(manager.store)]
        manager.close()
    assert not any(SECRET in text for text in texts)
    assert not any(SECRET in str(warning.message) for warning in caught)
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    ("message", "scrubbed"),
    [
        (
            f"Got unexpected extra argument (postgresql://app:{SECRET}@h/db).",
            "Got unexpected extra argument (postgresql://app:***@h/db).",
        ),
        (f"see 'mystore:/app:{SECRET}@h/db', then app:{SECRET}@h", "see 'mystore:/app:***@h/db', then app:***@h"),
        (
            "error: line 2: bad value at sqlite:///chats.db?key_env=K",
            "error: line 2: bad value at sqlite:///chats.db?key_env=K",
        ),
    ],
)
def test_scrub_masks_urls_nobody_named_too(message: str, scrubbed: str) -> None:
    assert scrub(message, []) == scrubbed
