"""A real PostgreSQL for the tests: initdb + pg_ctl in a temp folder on a free port (issue 15's
"the service test suite runs against SQLite and PostgreSQL"). As root, the server runs as the
``postgres`` user, since PostgreSQL refuses to run as root."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def _bin_dir() -> Path | None:
    """Where initdb and pg_ctl live: on PATH, or Debian's /usr/lib/postgresql/VERSION/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


BIN = _bin_dir()
AVAILABLE = BIN is not None and importlib.util.find_spec("psycopg") is not None


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class Postgres:
    def __init__(self, port: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dojo-pg-"))
        self.data = self.root / "data"
        self.port = port
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        init = [str(BIN / "initdb"), "-D", str(self.data), "-U", "dojo", "--auth=trust", "-E", "UTF8"]
        subprocess.run(_as_server_user(init), check=True, capture_output=True, timeout=120)
        opts = f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(_as_server_user([str(BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                                        str(self.root / "log"), "-w", "start"]),
                       check=True, capture_output=True, timeout=120)

    def url(self) -> str:
        return f"postgresql+psycopg://dojo@127.0.0.1:{self.port}/postgres"

    def new_database(self, name: str) -> str:
        """A fresh, empty database on this server; its URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=dojo dbname=postgres",
                             autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://dojo@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        stop = [str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
        subprocess.run(_as_server_user(stop), capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
