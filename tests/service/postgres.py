"""A real PostgreSQL for the tests: initdb + pg_ctl in a temp folder on a free port (issue 15's
"the service test suite runs against SQLite and PostgreSQL"). As root, the server runs as the
``postgres`` user, since PostgreSQL refuses to run as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

AVAILABLE = shutil.which("initdb") is not None and shutil.which("pg_ctl") is not None


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class Postgres:
    def __init__(self, port: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dojo-pg-"))
        self.data = self.root / "data"
        self.port = port
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        subprocess.run(_as_server_user(["initdb", "-D", str(self.data), "-U", "dojo", "--auth=trust",
                                        "-E", "UTF8"]), check=True, capture_output=True, timeout=120)
        opts = f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(_as_server_user(["pg_ctl", "-D", str(self.data), "-o", opts, "-l",
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
        subprocess.run(_as_server_user(["pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
