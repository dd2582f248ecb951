"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries, ``initdb`` into a fresh
folder, ``pg_ctl`` on a free loopback port, stopped and removed afterwards.

PostgreSQL refuses to run as root; where the tests run as root (CI containers), the server runs as the
``postgres`` account that Debian's package creates, in a folder it owns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (the newest Debian cluster version), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """``start()`` makes and starts a cluster; ``url`` is its SQLAlchemy URL (psycopg 3, trust auth);
    ``stop()`` stops it (``start()`` again restarts the same data); ``remove()`` stops and deletes it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="movierec-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        self.url = f"postgresql+psycopg://movierec@127.0.0.1:{self.port}/postgres"
        self._initialised = False
        self._databases = 0

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresServer:
        if not self._initialised:
            if self.as_postgres:
                shutil.chown(self.root, "postgres")
            self._run("initdb", "-D", str(self.data), "-U", "movierec", "--auth=trust", "-E", "UTF8",
                      "--no-instructions")
            self._initialised = True
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "start")
        return self

    def new_database(self) -> str:
        """A fresh, empty database on this server; its SQLAlchemy URL."""
        import sqlalchemy as sa

        self._databases += 1
        name = f"test_{os.getpid()}_{self._databases}"
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return f"{self.url.rsplit('/', 1)[0]}/{name}"

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
