"""Several `dojo serve` replicas on one real PostgreSQL (started by the tests): job claims take a row
lock ``FOR UPDATE SKIP LOCKED``, so exactly one replica runs each job, once."""

from __future__ import annotations

import json
import threading
import time

import pytest

from opendojo.service.store import open_store

from .conftest import TINY_TOML, Service, make_service

FINAL = ("succeeded", "failed", "cancelled")


def _queued_job(store) -> str:
    store.add_tenant("t", max_running=9, max_priority=10, quota=None)
    tenant = store.tenant_by_name("t")
    job = store.add_job(tenant["id"], name="x", priority=0, steps=2, precision="fp32", config_toml="",
                        overrides="[]", tile_step_s=None)
    return job["id"]


def test_claim_passes_over_a_row_another_server_holds(postgres):
    import psycopg

    url = postgres.new_database("claim_skip")
    store = open_store(url)
    job_id = _queued_job(store)
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as other:
        other.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (job_id,))  # another replica's claim
        t0 = time.perf_counter()
        assert store.claim(job_id, ("queued",), state="running") is False
        assert time.perf_counter() - t0 < 2.0  # skipped at once, not queued behind the lock
        other.rollback()
    assert store.claim(job_id, ("queued",), state="running") is True
    assert store.claim(job_id, ("queued",), state="running") is False
    assert store.job(job_id)["state"] == "running"


def test_concurrent_claims_have_exactly_one_winner(postgres):
    store = open_store(postgres.new_database("claim_race"))
    job_id = _queued_job(store)
    start, wins = threading.Barrier(8), []

    def claim() -> None:
        start.wait()
        wins.append(store.claim(job_id, ("queued", "preempted"), state="running"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(wins) == [False] * 7 + [True]


@pytest.mark.slow
def test_two_servers_on_one_postgres_run_each_job_exactly_once(tmp_path, postgres):
    url = postgres.new_database("replicas")
    first = make_service(tmp_path, slots=2, db=url)
    second = Service(first.data_dir, slots=2, db=url, tokens=dict(first.tokens))
    try:
        second.start()  # a second replica: same database, same (shared) data folder
        ids = []
        for i in range(4):
            with (first if i % 2 else second).client("team-a") as c:
                r = c.post("/v1/jobs", json={"config": TINY_TOML, "steps": 2, "name": f"r{i}"})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        for job_id in ids:
            job = first.wait_for("team-a", job_id, lambda j: j["state"] in FINAL, timeout=300)
            assert job["state"] == "succeeded" and job["attempts"] == 1, job
            run = first.data_dir / "jobs" / job_id / "run"
            steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                     if r.get("kind") == "train"]
            assert steps == [1, 2]  # one run, never two writers of the same run folder
            log = (first.data_dir / "jobs" / job_id / "log.txt").read_text()
            assert log.count("starting from scratch") == 1, log
    finally:
        for svc in (second, first):
            svc.kill()
            svc.stop_jobs()
