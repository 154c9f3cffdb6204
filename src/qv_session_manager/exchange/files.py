"""Opening export targets and import sources given as paths or streams."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TextIO

from ..errors import StorageError
from ..private_files import private_temporary_file


@contextlib.contextmanager
def writing(destination: str | os.PathLike[str] | TextIO) -> Iterator[TextIO]:
    """A text stream to write an export to.

    A stream is used as it is (not closed). A path is written atomically: to a
    temporary file in the same directory, flushed to disk and renamed over the
    target only when the body finishes; on an error the target is untouched and the
    temporary file removed. A new file is owner-only (0600) whatever the umask; a
    file replaced keeps its mode. Files are UTF-8 without newline translation. OSError
    while creating or renaming becomes StorageError.
    """
    if not isinstance(destination, (str, os.PathLike)):
        yield destination
        return
    path = os.fspath(destination)
    try:
        handle, temporary = private_temporary_file(
            os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.", ".tmp", like=path
        )
    except OSError as exc:
        raise StorageError(f"cannot create a file next to {path}: {exc}") from exc
    try:
        with open(handle, "w", encoding="utf-8", newline="") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise StorageError(f"cannot write {path}: {exc}") from exc
        raise


@contextlib.contextmanager
def reading(source: str | os.PathLike[str] | TextIO) -> Iterator[TextIO]:
    """A text stream to import from: a stream as it is (not closed), or a path opened as UTF-8.

    Bytes of a file that are not UTF-8 are decoded as lone surrogates
    (``surrogateescape``), so they make only their own line invalid. A byte order mark
    is skipped. A file that cannot be opened (missing too) raises StorageError, an OSError.
    """
    if not isinstance(source, (str, os.PathLike)):
        yield source
        return
    try:
        stream = open(source, encoding="utf-8-sig", errors="surrogateescape")  # noqa: SIM115 - only open()'s errors are translated
    except OSError as exc:
        raise StorageError(f"cannot open {os.fspath(source)}: {exc}") from exc
    with stream:
        yield stream
