"""Store URLs without their secrets, for output, errors and logs.

:func:`mask_url` is the one place that decides what of a URL is secret: the
password of its user-info part (``user:PASSWORD@host``) and the value of
secret-bearing parameters (``password=``, ``sslpassword=``, ``key=`` and the like,
as URL query parameters or libpq ``keyword=value`` pairs). It works on the text as
written, without parsing it as a URL, so a URL that does not parse (a bad
percent-escape, a missing slash, an unclosed ``[``) is masked all the same. When
unsure it masks more rather than less.

:func:`scrub` applies the same decision to a message that may quote a URL (or
parts of it), and :func:`scrub_exception` to an exception and its causes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

__all__ = ["MASK", "SECRET_PARAMETERS", "mask_url", "scrub", "scrub_exception", "secrets_of"]

MASK = "***"
#: Parameter names whose values are secrets (compared case-insensitively).
SECRET_PARAMETERS = ("password", "passwd", "pwd", "sslpassword", "key", "secret", "token", "passphrase")

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(/*)")
# A word that may be a URL; punctuation ending a sentence or a parenthesis is left out.
_URL_WORD = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*:[^\s'\"]*[^\s'\"),.;:]")
_PARAMETER = re.compile(
    r"(?<![A-Za-z0-9_])(" + "|".join(SECRET_PARAMETERS) + r")(\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&#;]*)",
    re.IGNORECASE,
)


def _userinfo_span(url: str) -> tuple[int, int] | None:
    """Where the password of ``url``'s user-info part lies, or None when it has none.

    The user info ends at the last ``@`` (a password with a raw ``/``, ``?`` or ``@``
    is still covered); the password starts after its first ``:``. Without a scheme,
    or when the "scheme" is followed by no slash (``user:PASSWORD@host``), the text
    before the first ``:`` may itself be the user name: then everything after it up
    to the ``@`` is the password.
    """
    at = url.rfind("@")
    if at < 0:
        return None
    scheme = _SCHEME.match(url)
    start = scheme.end() if scheme is not None and scheme.group(1) else 0
    colon = url.find(":", start, at)
    if colon < 0:
        if scheme is not None and not scheme.group(1):
            return (scheme.end(), at)  # "postgresql:user@host" or "user:secret@host"
        return None
    return (colon + 1, at)


def mask_url(url: str) -> str:
    """``url`` with its password and secret parameter values replaced by ``***``.

    ``postgresql://user:s3cret@host/db`` becomes ``postgresql://user:***@host/db`` and
    ``...?password=s3cret`` becomes ``...?password=***``. A URL without secrets is
    returned unchanged. Never raises for a string, whatever it holds.
    """
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    span = _userinfo_span(url)
    if span is not None and span[1] > span[0]:
        url = url[: span[0]] + MASK + url[span[1] :]
    return _PARAMETER.sub(lambda match: match.group(1) + match.group(2) + (MASK if match.group(3) else ""), url)


def secrets_of(url: str) -> list[str]:
    """The secret parts of ``url`` as written and percent-decoded (empty ones left out)."""
    if not isinstance(url, str):
        return []
    found: list[str] = []
    span = _userinfo_span(url)
    if span is not None:
        found.append(url[span[0] : span[1]])
    found.extend(match.group(3).strip("'") for match in _PARAMETER.finditer(url))
    variants = {variant for secret in found for variant in (secret, unquote(secret))}
    return sorted((variant for variant in variants if variant), key=len, reverse=True)


def scrub(text: str, urls: Iterable[str | None]) -> str:
    """``text`` with each of ``urls`` (as written or repr-quoted) shown masked, any of
    their secrets left elsewhere in it replaced by ``***``, and any other URL-like word
    in it (``scheme:...``, up to a space or quote) passed through :func:`mask_url`.

    For messages that may quote a URL or a driver's view of it, or a URL nobody
    opened (an extra argument). A secret of a few characters may also mask the same
    characters in unrelated words: leaking it would be worse.
    """
    for url in urls:
        if not isinstance(url, str) or not url:
            continue
        masked = mask_url(url)
        text = text.replace(repr(url)[1:-1], repr(masked)[1:-1]).replace(url, masked)
        for secret in secrets_of(url):
            text = text.replace(secret, MASK)
    return _URL_WORD.sub(lambda match: mask_url(match.group()), text)


def scrub_exception(error: BaseException, urls: Iterable[str | None]) -> BaseException:
    """Mask ``urls`` in the string arguments of ``error`` and of its causes and contexts.

    The exceptions are changed in place (their type and attributes stay) and
    ``error`` is returned, ready to be raised again.
    """
    wanted = [url for url in urls if isinstance(url, str) and url]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        try:
            current.args = tuple(scrub(arg, wanted) if isinstance(arg, str) else arg for arg in current.args)
        except (AttributeError, TypeError):  # an exception type with read-only args
            pass
        if isinstance(current, OSError):
            for name in ("strerror", "filename", "filename2"):
                value = getattr(current, name, None)
                if isinstance(value, str):
                    setattr(current, name, scrub(value, wanted))
        current = current.__cause__ or current.__context__
    return error
