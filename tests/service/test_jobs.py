"""Jobs end to end on a real service: real `dojo train` processes, real SQLite, a real server that the
tests SIGKILL and restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from safetensors.torch import load_file

from .conftest import DOJO, TINY_TOML, dojo

FINAL = ("succeeded", "failed", "cancelled")


def _submit(svc, tenant, **fields) -> str:
    with svc.client(tenant) as c:
        r = c.post("/v1/jobs", json={"config": TINY_TOML} | fields)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _final_weights(run_dir):
    ckpt = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    return load_file(ckpt / "model.safetensors")


def _reference_run(svc, job_id, out):
    """The same job, uninterrupted: the command the service ran, into another folder."""
    argv = json.loads((svc.data_dir / "jobs" / job_id / "command.json").read_text())
    argv[argv.index("--out") + 1] = str(out)
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    return _final_weights(out)


def _train_step_records(run_dir) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r["kind"] == "train"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_submit_run_succeed_download_with_the_cli(fresh_service, tmp_path, request, backend):
    db = request.getfixturevalue("postgres").new_database("cli") if backend == "postgresql" else None
    svc = fresh_service(slots=1, db=db)
    (tmp_path / "job.toml").write_text(TINY_TOML)
    env = {**os.environ, "DOJO_SERVER": svc.url, "DOJO_TOKEN": svc.tokens["team-a"]}
    out = subprocess.run([*DOJO, "jobs", "submit", str(tmp_path / "job.toml"), "--steps", "3", "--wait"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip().splitlines()[-1]
    listed = subprocess.run([*DOJO, "jobs", "list", "--json"], env=env, capture_output=True, text=True)
    job = [j for j in json.loads(listed.stdout) if j["id"] == job_id][0]
    assert job["state"] == "succeeded" and job["steps_done"] == 3 and job["attempts"] == 1
    assert job["usage"]["cpu_s"] > 0 and job["usage"]["tile_hours"] > 0
    got = subprocess.run([*DOJO, "jobs", "download", job_id, "--out", str(tmp_path / "dl")], env=env,
                         capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    assert json.loads((tmp_path / "dl" / "result.json").read_text())["steps"] == 3
    assert (tmp_path / "dl" / "checkpoint" / "model.safetensors").stat().st_size > 0
    assert not list((tmp_path / "dl").rglob("*.part"))
    for follow in ([], ["--follow"]):  # follow ends by itself once the job has ended
        logs = subprocess.run([*DOJO, "jobs", "logs", job_id, *follow], env=env, capture_output=True,
                              text=True, timeout=60)
        assert "done: 3 steps" in logs.stdout
    with svc.client("team-a") as c:
        records = c.get(f"/v1/jobs/{job_id}/metrics").json()
        assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
        usage = c.get("/v1/usage").json()[0]
    assert usage["jobs"] == 1 and usage["steps"] == 3 and usage["tile_hours"] == job["usage"]["tile_hours"]


@pytest.mark.slow
def test_cancel_queued_at_once_and_running_gracefully(fresh_service):
    svc = fresh_service(slots=1)
    long = _submit(svc, "team-a", steps=2000)
    waiting = _submit(svc, "team-b", steps=2)
    with svc.client("team-b") as c:
        assert c.post(f"/v1/jobs/{waiting}/cancel").json()["state"] == "cancelled"
    svc.wait_for("team-a", long, lambda j: j["state"] == "running" and j["progress"]["step"] >= 1)
    with svc.client("team-a") as c:
        assert c.post(f"/v1/jobs/{long}/cancel").json()["stopping"] == "cancel"
    job = svc.wait_for("team-a", long, lambda j: j["state"] in FINAL, timeout=120)
    assert job["state"] == "cancelled" and 1 <= job["steps_done"] < 2000  # a checkpoint at the stop


@pytest.mark.slow
def test_preempted_job_resumes_to_the_weights_of_an_uninterrupted_run(fresh_service, tmp_path):
    svc = fresh_service(slots=1)
    low = _submit(svc, "team-a", steps=14, priority=0)
    svc.wait_for("team-a", low, lambda j: j["state"] == "running" and j["progress"]["step"] >= 2)
    high = _submit(svc, "team-b", steps=2, priority=5)
    assert svc.wait_for("team-b", high, lambda j: j["state"] in FINAL)["state"] == "succeeded"
    job = svc.wait_for("team-a", low, lambda j: j["state"] in FINAL)
    assert job["state"] == "succeeded" and job["attempts"] == 2, job
    run_dir = svc.data_dir / "jobs" / low / "run"
    log = (svc.data_dir / "jobs" / low / "log.txt").read_text()
    assert "stopped on SIGTERM after step" in log
    reference = _reference_run(svc, low, tmp_path / "reference")
    resumed = _final_weights(run_dir)
    assert reference.keys() == resumed.keys()
    assert all(bool((reference[k] == resumed[k]).all()) for k in reference)


@pytest.mark.slow
def test_server_sigkill_mid_job_then_restart_completes_exactly_once(fresh_service):
    svc = fresh_service(slots=1)
    running = _submit(svc, "team-a", steps=16)
    queued = [_submit(svc, "team-b", steps=1), _submit(svc, "team-a", steps=1)]
    svc.wait_for("team-a", running, lambda j: j["state"] == "running" and j["progress"]["step"] >= 2)
    svc.kill(signal.SIGKILL)  # the job's process lives on in its own session
    svc.start()
    job = svc.wait_for("team-a", running, lambda j: j["state"] in FINAL)
    assert job["state"] == "succeeded" and job["attempts"] == 1  # re-adopted, never started twice
    run_dir = svc.data_dir / "jobs" / running / "run"
    assert _train_step_records(run_dir) == list(range(1, 17))
    for job_id, tenant in zip(queued, ("team-b", "team-a"), strict=True):
        assert svc.wait_for(tenant, job_id, lambda j: j["state"] in FINAL)["state"] == "succeeded"


@pytest.mark.slow
def test_server_and_job_killed_then_restart_requeues_from_the_checkpoint(fresh_service):
    svc = fresh_service(slots=1)
    job_id = _submit(svc, "team-a", steps=12, overrides=["train.checkpoint_every=2"])
    svc.wait_for("team-a", job_id, lambda j: j["progress"]["checkpoints"] and j["progress"]["step"] >= 3)
    svc.kill(signal.SIGKILL)
    ref = json.loads((svc.data_dir / "jobs" / job_id / "process.json").read_text())
    os.killpg(ref["pid"], signal.SIGKILL)  # the machine lost the job too
    time.sleep(0.5)
    svc.start()
    job = svc.wait_for("team-a", job_id, lambda j: j["state"] in FINAL)
    assert job["state"] == "succeeded" and job["attempts"] == 2
    assert "resumes" in job["message"] or job["message"] == "finished"
    assert json.loads((svc.data_dir / "jobs" / job_id / "run" / "result.json").read_text())["steps"] == 12


def test_second_server_on_the_same_data_dir_is_refused(service):
    if service.db:
        pytest.skip("PostgreSQL replicas may share a folder (row locks): see the two-server test")
    out = dojo("serve", "--data-dir", str(service.data_dir), "--port", "0", check=False)
    assert out.returncode == 2 and "already served" in out.stderr


@pytest.mark.slow
def test_two_servers_sharing_one_postgresql_queue_run_each_job_once(fresh_service, postgres):
    first = fresh_service(slots=1, db=postgres.new_database("shared"))
    second = type(first)(first.data_dir, first.slots, first.grace, first.db, tokens=first.tokens)
    second.start()
    try:
        ids = [_submit(first, "team-a", steps=1) for _ in range(2)] + [_submit(second, "team-b", steps=1)]
        for job_id, tenant in zip(ids, ("team-a", "team-a", "team-b"), strict=True):
            job = first.wait_for(tenant, job_id, lambda j: j["state"] in FINAL)
            assert job["state"] == "succeeded" and job["attempts"] == 1, job
            log = (first.data_dir / "jobs" / job_id / "log.txt").read_text()
            assert log.count("done: 1 steps") == 1
    finally:
        second.kill(signal.SIGTERM)
