"""Creating files and folders that only their owner can read, whatever the umask.

Conversations are private, so every file or folder this package creates for them (a
new SQLite database, the JSON Lines backend's folders and files, exports) is made
``0600`` (files) or ``0700`` (folders) on POSIX systems. The mode is set with
``fchmod``/``chmod`` after creation, so a permissive umask (the usual 022) cannot
widen it and a restrictive one cannot make the file unusable to its owner.

What already exists keeps its mode: an existing folder is not changed, and a file
replaced atomically takes the mode of the file it replaces (an owner who chose
``0640`` for a store keeps it). On Windows, where POSIX modes mean little, the
functions create the files and leave permissions to the system.
"""

from __future__ import annotations

import os
import stat
import tempfile

#: The mode of every file this package creates.
PRIVATE_FILE_MODE = 0o600
#: The mode of every folder this package creates.
PRIVATE_FOLDER_MODE = 0o700

_POSIX = os.name == "posix"
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def create_private_file(path: str, *, like: str | None = None) -> int:
    """Create ``path``, which must not exist; return a descriptor open for writing.

    Its mode is 0600, or the permission bits of ``like`` when ``like`` names an
    existing file (the file this one is about to replace, which so keeps its mode).
    Raises FileExistsError when ``path`` exists (nothing is changed then) and the
    other OSErrors of ``os.open``. The caller closes the descriptor.
    """
    descriptor = os.open(path, _NEW_FILE_FLAGS, PRIVATE_FILE_MODE)
    try:
        _restrict(descriptor, _mode_of(like))
    except BaseException:
        os.close(descriptor)
        os.unlink(path)
        raise
    return descriptor


def touch_private_file(path: str) -> None:
    """Create ``path`` empty with mode 0600; FileExistsError (changing nothing) when it exists."""
    os.close(create_private_file(path))


def private_temporary_file(directory: str, prefix: str, suffix: str, *, like: str | None = None) -> tuple[int, str]:
    """A new temporary file in ``directory``: ``(descriptor open for writing, path)``.

    Its mode is 0600, or the permission bits of ``like`` when ``like`` names an
    existing file (the file the temporary one is about to replace, which so keeps
    its mode). OSErrors of creating it propagate; on one while setting the mode the
    file is removed first.
    """
    descriptor, path = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)
    try:
        _restrict(descriptor, _mode_of(like))
    except BaseException:
        os.close(descriptor)
        os.unlink(path)
        raise
    return descriptor, path


def make_private_folders(path: str) -> None:
    """Create folder ``path`` and its missing parents with mode 0700; existing ones keep theirs.

    Like ``os.makedirs(path, exist_ok=True)``: no error when ``path`` is already a
    folder; FileExistsError when it is something else, and the other OSErrors.
    """
    path = os.path.abspath(path)
    missing: list[str] = []
    current = path
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_FOLDER_MODE)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise
            continue  # made by someone else meanwhile: theirs, mode included
        if _POSIX:
            os.chmod(folder, PRIVATE_FOLDER_MODE)


def _mode_of(path: str | None) -> int:
    if path is None:
        return PRIVATE_FILE_MODE
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return PRIVATE_FILE_MODE


def _restrict(descriptor: int, mode: int = PRIVATE_FILE_MODE) -> None:
    if _POSIX:
        os.fchmod(descriptor, mode)
