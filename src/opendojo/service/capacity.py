"""What the dashboard states in Dojo terms: a job's quotes, a tenant's use against its quota, and the
service's capacity as Dojo training tiles and H100-equivalents.

Capacity is measured, not nominal: each running job delivers ``steps/s`` (from its metrics) times the
simulated seconds one Dojo training tile needs per step (``tile_step_s``, stored at submission), i.e.
that many tiles' worth of work; the simulator's H100-equivalents of one tile on the same workload turn
tiles into H100-equivalents (the definition is the one quotes use, shown beside the figure).
"""

from __future__ import annotations

import functools
import logging

from opendojo.service import jobview, quotes
from opendojo.service.schema import PREEMPTED, QUEUED, RUNNING
from opendojo.service.store import overrides_of

log = logging.getLogger(__name__)

QUEUE_SHOWN = 200  # the admin page lists the head of the queue, not all of a 10,000-job backlog


def _job_shape(job: dict) -> tuple[str, int, str]:
    """(model preset, global batch, precision) of a stored job."""
    from opendojo.service.submission import load_job_config

    config = load_job_config(job["config_toml"], overrides_of(job))
    return config.model.preset, config.train.batch_size, config.train.precision


def job_quotes(job: dict) -> list[dict]:
    """The job's quote on each default system (an ``error`` entry where the simulator cannot place it)."""
    preset, batch, precision = _job_shape(job)
    out = []
    for system in quotes.DEFAULT_SYSTEMS:
        try:
            out.append(quotes.quote_one(preset, batch, precision, job["steps"], system))
        except ValueError as e:
            out.append({"system": system, "error": str(e)})
    return out


@functools.cache
def h100_equivalents_per_tile(preset: str, batch: int, precision: str) -> tuple[float | None, str]:
    """(H100-equivalents of one Dojo training tile on this workload, the definition used)."""
    try:
        q = quotes.quote_one(preset, batch, precision, 1, quotes.METERING_SYSTEM)
    except ValueError:
        return None, ""
    if q["h100_equivalent_hours"] is None:
        return None, q["h100_equivalent_definition"]
    return q["h100_equivalent_hours"] * 3600 / q["total_s"] / q["devices"], q["h100_equivalent_definition"]


def usage_vs_quota(store, tenant: dict) -> dict:
    """The tenant's metered use, its quota (None: unlimited) and the fraction used (0..1, capped)."""
    used = store.usage(tenant["id"])[0]
    quota = tenant["quota_tile_hours"]
    fraction = None if quota is None else (1.0 if quota <= 0 else min(1.0, used["tile_hours"] / quota))
    return used | {"quota": quota, "fraction": fraction}


def _delivered(job: dict, run_dir) -> tuple[float, float | None, str]:
    """(tile-equivalents, H100-equivalents, definition) a running job delivers now (0 before 2 records)."""
    records = [r for r in jobview.read_metrics(run_dir, tail_bytes=65536) if r.get("kind") == "train"]
    if len(records) < 2 or not job["tile_step_s"]:
        return 0.0, 0.0, ""
    a, b = records[0], records[-1]
    if b["time_s"] <= a["time_s"]:
        return 0.0, 0.0, ""
    tiles = (b["step"] - a["step"]) / (b["time_s"] - a["time_s"]) * job["tile_step_s"]
    per_tile, definition = h100_equivalents_per_tile(*_job_shape(job))
    return tiles, None if per_tile is None else tiles * per_tile, definition


def admin_overview(state) -> dict:
    """Every tenant with its use, the slots, the queue in scheduling order and the delivered capacity."""
    store, dispatcher = state.store, state.dispatcher
    usage = {u["name"]: u for u in store.usage()}
    tenants = [t | {"usage": usage.get(t["name"], {})} for t in store.list_tenants()]
    names = {t["id"]: t["name"] for t in tenants}
    running = store.jobs_in(RUNNING)
    waiting = store.jobs_in(QUEUED) + store.jobs_in(PREEMPTED)
    queue = sorted(waiting, key=lambda j: (-j["priority"], j["seq"]))[:QUEUE_SHOWN]
    tiles, h100, definition = 0.0, 0.0, ""
    for job in running:
        t, h, d = _delivered(job, dispatcher.job_dir(job["id"]) / "run")
        tiles += t
        h100 = None if h100 is None or h is None else h100 + h
        definition = definition or d
    return {"tenants": tenants, "slots": dispatcher.slots, "executor": state.executor_name,
            "running": [jobview.summary(j) | {"tenant": names.get(j["tenant_id"], "?")} for j in running],
            "queue": [jobview.summary(j) | {"tenant": names.get(j["tenant_id"], "?")} for j in queue],
            "capacity": {"tiles": tiles, "h100_equivalents": h100, "definition": definition,
                         "metered_tile_hours": sum(u["tile_hours"] for u in usage.values())}}
