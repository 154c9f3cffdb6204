"""A throwaway PostgreSQL cluster that a test may stop, crash and restart.

Restarting the shared server would break every other test talking to it, so the
restart test gets a cluster of its own: ``initdb`` in a temporary directory, a free
loopback port, started and restarted with ``pg_ctl``. PostgreSQL refuses to run as
root, so under root the server runs as the ``postgres`` user (else ``nobody``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from typing import Literal

StopMode = Literal["fast", "immediate"]


def server_binaries() -> str | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest installed version), or None."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            candidates.append(
                subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
            )
        except (OSError, subprocess.CalledProcessError):
            pass
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) for x in p.split("/")[-2].split(".") if x.isdigit()],
        reverse=True,
    )
    for directory in candidates:
        if all(os.access(os.path.join(directory, tool), os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _runs_as() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' account exists")


class PrivateCluster:
    """A PostgreSQL cluster of one test; :meth:`remove` stops it and deletes its files."""

    def __init__(self, binaries: str) -> None:
        self._binaries = binaries
        self._account = _runs_as()
        self.directory = tempfile.mkdtemp(prefix="qvrel-pg-")
        self.port = _free_port()
        self._data = os.path.join(self.directory, "data")
        self._log = os.path.join(self.directory, "server.log")
        if self._account is not None:
            os.chown(self.directory, self._account.pw_uid, self._account.pw_gid)
        os.chmod(self.directory, 0o700)
        self._run("initdb", "-D", self._data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *arguments: str) -> None:
        # subprocess's user/group switch happens in the forked child without running
        # Python there, so it is safe while the test's writer threads run.
        account = self._account
        subprocess.run(
            [os.path.join(self._binaries, tool), *arguments],
            user=None if account is None else account.pw_uid,
            group=None if account is None else account.pw_gid,
            extra_groups=None if account is None else [],
            cwd=self.directory,
            capture_output=True,
            check=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run("pg_ctl", "-D", self._data, "-l", self._log, "-w", "-t", "60", "-o", options, "start")

    def stop(self, mode: StopMode) -> None:
        """``fast``: a clean shutdown; ``immediate``: a crash, recovered from the WAL at the next start."""
        self._run("pg_ctl", "-D", self._data, "-w", "-t", "60", "-m", mode, "stop")

    def log(self) -> str:
        try:
            with open(self._log, encoding="utf-8", errors="replace") as file:
                return file.read()
        except OSError:
            return ""

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.directory, ignore_errors=True)
