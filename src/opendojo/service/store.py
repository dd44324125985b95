"""The store: the service's single source of truth, a SQL database through SQLAlchemy 2.

``sqlite:///DIR/service.db`` (WAL mode) by default; a ``postgresql+psycopg://`` URL runs the same code.
The schema is created and upgraded by the Alembic migrations shipped in ``migrations/``. Every state
change is a compare-and-set (``UPDATE ... WHERE state = expected``), so two writers never both win, and a
job is claimed under a row lock, so several servers can share one PostgreSQL queue.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, func, select, text, update

from opendojo.errors import UsageError
from opendojo.service import tokens
from opendojo.service.schema import FINAL_STATES, QUEUED, datasets, jobs, tenants

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x646F6A6F  # "dojo": the advisory lock that serialises migrations on PostgreSQL


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'service.db'}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a killed process
    cur.execute("PRAGMA busy_timeout=10000")  # ms: a second writer (the CLI) waits instead of failing
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def open_engine(url: str) -> Engine:
    """An engine for ``url``, migrated to the newest schema."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    migrate(engine)
    return engine


def migrate(engine: Engine) -> None:
    """Run every Alembic migration not yet applied (``alembic upgrade head``)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # replicas starting together migrate one at a time
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Store:
    """Typed reads and writes over the three tables; rows come back as plain dicts."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- tenants ---------------------------------------------------------------------------------------
    def add_tenant(self, name: str, *, max_running: int, max_priority: int, quota: float | None) -> str:
        """Create tenant ``name``; returns its token (shown once)."""
        if self.tenant_by_name(name) is not None:
            raise UsageError(f"NAME: tenant {name!r} already exists; use `rotate` for a new token")
        key_id, token = tokens.new_token()
        salt, digest = tokens.hash_token(token)
        with self.engine.begin() as c:
            c.execute(tenants.insert().values(
                name=name, key_id=key_id, token_salt=salt, token_hash=digest, disabled=False,
                max_running=max_running, max_priority=max_priority, quota_tile_hours=quota,
                created_at=time.time()))
        return token

    def rotate_tenant(self, name: str) -> str:
        """A new token for ``name``; the old one stops working at once."""
        key_id, token = tokens.new_token()
        salt, digest = tokens.hash_token(token)
        self._update_tenant(name, key_id=key_id, token_salt=salt, token_hash=digest)
        return token

    def disable_tenant(self, name: str) -> None:
        self._update_tenant(name, disabled=True)

    def _update_tenant(self, name: str, **values: Any) -> None:
        with self.engine.begin() as c:
            if c.execute(update(tenants).where(tenants.c.name == name).values(**values)).rowcount != 1:
                raise UsageError(f"NAME: no tenant {name!r}; see `dojo service tenant list`")

    def tenant_by_name(self, name: str) -> dict | None:
        return self._one(select(tenants).where(tenants.c.name == name))

    def tenant_for_token(self, token: str) -> dict | None:
        """The enabled tenant ``token`` belongs to, or None."""
        key_id = tokens.key_id_of(token)
        row = self._one(select(tenants).where(tenants.c.key_id == key_id)) if key_id else None
        if row is None or row["disabled"] or not tokens.token_matches(token, row["token_salt"],
                                                                       row["token_hash"]):
            return None
        return row

    def list_tenants(self) -> list[dict]:
        return self._all(select(tenants).order_by(tenants.c.id))

    # --- datasets --------------------------------------------------------------------------------------
    def add_dataset(self, name: str, path: str) -> None:
        with self.engine.begin() as c:
            c.execute(datasets.delete().where(datasets.c.name == name))
            c.execute(datasets.insert().values(name=name, path=path, created_at=time.time()))

    def dataset_paths(self) -> dict[str, str]:
        return {r["name"]: r["path"] for r in self._all(select(datasets))}

    # --- jobs ------------------------------------------------------------------------------------------
    def add_job(self, tenant_id: int, **values: Any) -> dict:
        """Insert a queued job (committed before this returns) and return its row."""
        job_id = "j" + secrets.token_hex(8)
        with self.engine.begin() as c:
            c.execute(jobs.insert().values(
                id=job_id, tenant_id=tenant_id, state=QUEUED, submitted_at=time.time(), attempts=0,
                message="", wall_s=0.0, cpu_s=0.0, steps_done=0, tile_hours=0.0, **values))
        return self.job(job_id)

    def job(self, job_id: str, tenant_id: int | None = None) -> dict | None:
        """Job ``job_id``; with ``tenant_id``, only if that tenant owns it (else None: ids do not leak)."""
        q = select(jobs).where(jobs.c.id == job_id)
        if tenant_id is not None:
            q = q.where(jobs.c.tenant_id == tenant_id)
        return self._one(q)

    def jobs_of(self, tenant_id: int, limit: int = 1000) -> list[dict]:
        q = select(jobs).where(jobs.c.tenant_id == tenant_id).order_by(jobs.c.seq.desc()).limit(limit)
        return self._all(q)

    def jobs_in(self, state: str) -> list[dict]:
        """Every job in ``state``, whole rows (the dispatcher watches the running ones)."""
        return self._all(select(jobs).where(jobs.c.state == state).order_by(jobs.c.seq))

    def queue_rows(self) -> list[tuple]:
        """(id, tenant_id, priority, seq, state, stop_reason) of every active job: only what the scheduler
        reads, so a pass over 10,000 queued jobs moves little data."""
        c_ = jobs.c
        q = select(c_.id, c_.tenant_id, c_.priority, c_.seq, c_.state, c_.stop_reason).where(
            c_.state.not_in(FINAL_STATES))
        with self.engine.connect() as c:
            return [tuple(r) for r in c.execute(q)]

    def transition(self, job_id: str, expected: str | Iterable[str], **values: Any) -> bool:
        """Set ``values`` on the job if its state is still ``expected``; whether it was."""
        allowed = [expected] if isinstance(expected, str) else list(expected)
        with self.engine.begin() as c:
            q = update(jobs).where(jobs.c.id == job_id, jobs.c.state.in_(allowed)).values(**values)
            return c.execute(q).rowcount == 1

    def claim(self, job_id: str, expected: Iterable[str], **values: Any) -> bool:
        """Like :meth:`transition`, with a row lock first (``SELECT ... FOR UPDATE SKIP LOCKED``): when
        several servers share one PostgreSQL queue, one claims the job and the others skip it at once
        instead of waiting. SQLite has one writer at a time and ignores the clause."""
        with self.engine.begin() as c:
            q = (select(jobs.c.seq).where(jobs.c.id == job_id, jobs.c.state.in_(list(expected)))
                 .with_for_update(skip_locked=True))
            row = c.execute(q).first()
            if row is None:
                return False
            return c.execute(update(jobs).where(jobs.c.seq == row.seq).values(**values)).rowcount == 1

    def usage(self, tenant_id: int | None = None) -> list[dict]:
        """Per tenant: jobs, steps, wall and CPU seconds, metered tile-hours."""
        q = (select(tenants.c.name, tenants.c.quota_tile_hours, func.count(jobs.c.seq).label("jobs"),
                    func.coalesce(func.sum(jobs.c.steps_done), 0).label("steps"),
                    func.coalesce(func.sum(jobs.c.wall_s), 0.0).label("wall_s"),
                    func.coalesce(func.sum(jobs.c.cpu_s), 0.0).label("cpu_s"),
                    func.coalesce(func.sum(jobs.c.tile_hours), 0.0).label("tile_hours"))
             .select_from(tenants.outerjoin(jobs, jobs.c.tenant_id == tenants.c.id))
             .group_by(tenants.c.id, tenants.c.name, tenants.c.quota_tile_hours).order_by(tenants.c.id))
        if tenant_id is not None:
            q = q.where(tenants.c.id == tenant_id)
        return self._all(q)

    def _one(self, q) -> dict | None:
        with self.engine.connect() as c:
            row = c.execute(q).mappings().first()
        return dict(row) if row is not None else None

    def _all(self, q) -> list[dict]:
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]


def open_store(url: str) -> Store:
    return Store(open_engine(url))


def overrides_of(job: dict) -> list[str]:
    return json.loads(job["overrides"])
