"""The service's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create and evolve them;
this module is what the code reads and writes. Times are Unix seconds (float), durations seconds."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, ForeignKey, Integer, MetaData, String, Table, Text

metadata = MetaData()

#: Job states. ``queued → running → succeeded | failed | cancelled`` and ``running → preempted → queued``.
QUEUED, RUNNING, PREEMPTED = "queued", "running", "preempted"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
STATES = (QUEUED, RUNNING, PREEMPTED, SUCCEEDED, FAILED, CANCELLED)
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)

tenants = Table(
    "tenants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("key_id", String(32), nullable=False, unique=True),  # the token's public prefix
    Column("token_salt", String(64), nullable=False),
    Column("token_hash", String(128), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("max_running", Integer, nullable=False),
    Column("max_priority", Integer, nullable=False),
    Column("quota_tile_hours", Float, nullable=True),  # None: no quota
    Column("created_at", Float, nullable=False),
)

datasets = Table(
    "datasets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("path", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # submission order, never reused
    Column("id", String(32), nullable=False, unique=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("priority", Integer, nullable=False),
    Column("steps", Integer, nullable=False),
    Column("precision", String(16), nullable=False),
    Column("config_toml", Text, nullable=False),
    Column("overrides", Text, nullable=False),  # JSON list of "table.key=value", as the trainer takes them
    Column("submitted_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),  # start of the current attempt
    Column("finished_at", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("handle", Text, nullable=True),  # the executor's JSON reference to the running process
    Column("stop_reason", String(16), nullable=True),  # "preempt" or "cancel" while a stop is pending
    Column("stop_requested_at", Float, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("message", Text, nullable=False, default=""),
    Column("wall_s", Float, nullable=False, default=0.0),  # summed over attempts
    Column("cpu_s", Float, nullable=False, default=0.0),
    Column("steps_done", Integer, nullable=False, default=0),
    Column("tile_step_s", Float, nullable=True),  # simulated seconds per step on one Dojo training tile
    Column("tile_hours", Float, nullable=False, default=0.0),  # metered: steps_done * tile_step_s / 3600
)
