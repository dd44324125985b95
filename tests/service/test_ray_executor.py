"""`dojo serve --executor ray`: jobs run as Ray jobs through Ray's Job Submission API, on a real local
Ray head that the tests start (and always stop). Slow: a Ray head takes tens of seconds to start here."""

from __future__ import annotations

import json

import pytest

from opendojo.service.ray_executor import _resources, entrypoint_of

from .conftest import TINY_TOML, Service, dojo
from .ray_head import AVAILABLE as RAY_INSTALLED
from .ray_head import RayHead

FINAL = ("succeeded", "failed", "cancelled")


def test_entrypoint_is_dojo_train_with_the_jobs_resources():
    argv = ["/venv/bin/python", "-m", "opendojo.cli", "train", "--config", "/d/config.toml", "--out",
            "/d/my run", "--resume", "--set=train.threads=3", "--set=data.cache_dir=\"/d/c\""]
    assert entrypoint_of(argv).startswith("dojo train --config /d/config.toml --out '/d/my run' --resume")
    assert _resources(argv) == (3, 0)
    assert _resources([*argv, "--nproc", "2", "--set=train.device=cuda"]) == (6, 2)


@pytest.fixture(scope="module")
def ray_service(tmp_path_factory):
    if not RAY_INSTALLED:
        pytest.skip("ray is not installed: pip install -e '.[cluster]' (make test installs it)")
    head = RayHead(num_cpus=2)
    data = tmp_path_factory.mktemp("ray") / "data"
    data.mkdir()
    svc = Service(data, slots=1, grace=60, extra=("--executor", "ray", "--ray-address", head.address))
    try:
        for name in ("team-a", "team-b"):
            svc.tokens[name] = dojo("service", "tenant", "add", name, "--data-dir", str(data),
                                    "--max-priority", "10").stdout.strip()
        svc.start()
        yield svc, head
    finally:
        svc.kill()
        head.stop()


def _ray_job(head, job_id: str):
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.address)
    mine = [j for j in client.list_jobs() if (j.metadata or {}).get("dojo_job") == job_id]
    assert mine, f"no Ray job for {job_id}"
    return client.get_job_info(mine[-1].submission_id)


def _submit(svc, tenant: str, **fields) -> str:
    with svc.client(tenant) as c:
        r = c.post("/v1/jobs", json={"config": TINY_TOML} | fields)
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.mark.slow
def test_job_runs_as_a_ray_job_to_success_with_logs_and_metrics(ray_service):
    svc, head = ray_service
    with svc.client(None) as c:
        assert c.get("/v1/health").json()["executor"] == "ray"
    job_id = _submit(svc, "team-a", steps=2)
    job = svc.wait_for("team-a", job_id, lambda j: j["state"] in FINAL, timeout=300)
    assert job["state"] == "succeeded", job
    ray_job = _ray_job(head, job_id)
    assert str(ray_job.status.value) == "SUCCEEDED"
    assert ray_job.entrypoint.startswith("dojo train --config ")
    result = json.loads((svc.data_dir / "jobs" / job_id / "run" / "result.json").read_text())
    assert result["steps"] == 2
    with svc.client("team-a") as c:
        assert "starting from scratch" in c.get(f"/v1/jobs/{job_id}/logs").text  # copied from Ray's logs
        records = c.get(f"/v1/jobs/{job_id}/metrics").json()
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2]


@pytest.mark.slow
def test_cancel_stops_the_ray_job(ray_service):
    svc, head = ray_service
    job_id = _submit(svc, "team-a", steps=500)
    svc.wait_for("team-a", job_id, lambda j: j["state"] == "running", timeout=120)
    with svc.client("team-a") as c:
        assert c.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    job = svc.wait_for("team-a", job_id, lambda j: j["state"] in FINAL, timeout=180)
    assert job["state"] == "cancelled", job
    assert str(_ray_job(head, job_id).status.value) == "STOPPED"


@pytest.mark.slow
def test_preemption_stops_the_ray_job_and_resumes_it_from_its_checkpoint(ray_service):
    svc, head = ray_service
    low = _submit(svc, "team-b", steps=400, priority=0, overrides=["train.checkpoint_every=1"])
    svc.wait_for("team-b", low, lambda j: j["state"] == "running" and j["progress"]["step"] >= 2, timeout=180)
    high = _submit(svc, "team-a", steps=2, priority=9)
    svc.wait_for("team-b", low, lambda j: j["attempts"] >= 2 or j["state"] in ("queued", "preempted"),
                 timeout=180)
    assert svc.wait_for("team-a", high, lambda j: j["state"] in FINAL, timeout=300)["state"] == "succeeded"
    again = svc.wait_for("team-b", low, lambda j: j["state"] == "running" and j["attempts"] == 2, timeout=180)
    assert again["steps_done"] >= 1  # resumed from the checkpoint the SIGTERM wrote, not from scratch
    with svc.client("team-b") as c:
        c.post(f"/v1/jobs/{low}/cancel")
    svc.wait_for("team-b", low, lambda j: j["state"] in FINAL, timeout=180)
