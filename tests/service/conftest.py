"""A real service for the tests: `dojo serve` on a free port in a temp folder, a real SQLite database,
real `dojo train` processes. Tenants are made with the real `dojo service tenant add`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from .postgres import AVAILABLE as POSTGRES
from .postgres import Postgres

# The trainer tests' tiny shape: a step takes a fraction of a second on one core.
TINY_TOML = """
[data]
synthetic_clips = 6
synthetic_frames = 16
cameras = 2
image_size = 32
frames_per_clip = 4
[train]
batch_size = 4
warmup_steps = 2
log_every = 1
eval_every = 0
eval_batches = 1
checkpoint_every = 0
"""
DOJO = [sys.executable, "-m", "opendojo.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dojo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*DOJO, *args], capture_output=True, text=True, check=check, timeout=120)


@dataclass
class Service:
    data_dir: Path
    slots: int
    grace: float = 120.0
    db: str | None = None  # None: the default SQLite file in data_dir
    extra: tuple[str, ...] = ()  # more `dojo serve` arguments (e.g. --executor ray --ray-address URL)
    port: int = 0
    proc: subprocess.Popen | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        log = open(self.data_dir.parent / "serve.log", "ab")  # noqa: SIM115
        argv = [*DOJO, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
                "--slots", str(self.slots), "--grace", str(self.grace), *self.db_args(), *self.extra]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("dojo serve did not answer within 60 s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def db_args(self) -> list[str]:
        return ["--db", self.db] if self.db else []

    def add_tenant(self, name: str, *args: str) -> str:
        out = dojo("service", "tenant", "add", name, "--data-dir", str(self.data_dir), *self.db_args(), *args)
        self.tokens[name] = out.stdout.strip()
        return self.tokens[name]

    def client(self, tenant: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[tenant]}"} if tenant else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def wait_for(self, tenant: str, job_id: str, predicate, timeout: float = 180) -> dict:
        with self.client(tenant) as c:
            deadline = time.time() + timeout
            while time.time() < deadline:
                job = c.get(f"/v1/jobs/{job_id}").json()
                if predicate(job):
                    return job
                time.sleep(0.3)
        raise AssertionError(f"job {job_id} never reached the expected state; last: {job}")

    def stop_jobs(self) -> None:
        """Kill every job process this service started (the tests leave nothing running)."""
        for pj in (self.data_dir / "jobs").glob("*/process.json"):
            ref = json.loads(pj.read_text())
            try:
                os.killpg(ref["pid"], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def make_service(tmp_path: Path, slots: int, grace: float = 120.0, db: str | None = None) -> Service:
    svc = Service(tmp_path / "data", slots, grace, db)
    svc.data_dir.mkdir()
    svc.add_tenant("team-a", "--max-running", "2", "--max-priority", "10")
    svc.add_tenant("team-b", "--max-running", "1", "--max-priority", "10")
    svc.add_tenant("broke", "--quota-tile-hours", "0")
    svc.add_tenant("gone")
    dojo("service", "tenant", "disable", "gone", "--data-dir", str(svc.data_dir), *svc.db_args())
    svc.start()
    return svc


@pytest.fixture(scope="session")
def postgres():
    if not POSTGRES:
        pytest.skip("PostgreSQL (initdb, pg_ctl) or psycopg is missing; `make test` installs psycopg")
    pg = Postgres(free_port())
    yield pg
    pg.stop()


def _database(request, name: str) -> str | None:
    """None for SQLite; a fresh PostgreSQL database's URL for the "postgresql" backend."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres").new_database(name)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request, tmp_path_factory):
    db = _database(request, f"svc_{abs(hash(request.node.nodeid)) % 10**8}")
    svc = make_service(tmp_path_factory.mktemp("svc"), slots=1, db=db)
    yield svc
    svc.kill(signal.SIGTERM)
    svc.stop_jobs()


@pytest.fixture
def fresh_service(tmp_path):
    made = []

    def make(slots: int = 1, grace: float = 120.0, db: str | None = None) -> Service:
        made.append(make_service(tmp_path, slots, grace, db))
        return made[-1]

    yield make
    for svc in made:
        svc.kill(signal.SIGTERM)
        svc.stop_jobs()
