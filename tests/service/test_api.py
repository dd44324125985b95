"""The API against a real `dojo serve`: authentication, isolation and every bad input (4xx naming the
field, nothing written, the server still serving)."""

from __future__ import annotations

import json
import os
import stat

import httpx
import pytest

from .conftest import TINY_TOML


def _error(r: httpx.Response, status: int, field: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == field, body
    return body["error"]


@pytest.fixture(scope="module")
def a_job(service):
    with service.client("team-a") as c:
        r = c.post("/v1/jobs", json={"config": TINY_TOML, "steps": 2, "name": "<script>x</script>"})
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "queued"
    return r.json()["id"]


def test_health_needs_no_token_and_docs_are_served(service):
    with service.client(None) as c:
        assert c.get("/v1/health").json()["status"] == "ok"
        assert c.get("/docs").status_code == 200
        assert "/v1/jobs" in c.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc", "Bearer dojo_ffff_x"])
def test_missing_or_invalid_token_is_401(service, header):
    headers = {"Authorization": header} if header else {}
    with httpx.Client(base_url=service.url, headers=headers) as c:
        _error(c.get("/v1/jobs"), 401, "authorization")


def test_disabled_tenant_is_401(service):
    with service.client("gone") as c:
        _error(c.get("/v1/jobs"), 401, "authorization")


def test_another_tenants_job_is_404_everywhere(service, a_job):
    with service.client("team-b") as c:
        assert a_job not in [j["id"] for j in c.get("/v1/jobs").json()]
        for path in ("", "/logs", "/metrics", "/artifacts", "/artifacts/result.json"):
            _error(c.get(f"/v1/jobs/{a_job}{path}"), 404, "id")
        _error(c.post(f"/v1/jobs/{a_job}/cancel"), 404, "id")
        _error(c.get("/v1/jobs/jdoesnotexist"), 404, "id")
    with service.client("team-a") as c:
        assert c.get(f"/v1/jobs/{a_job}").json()["name"] == "<script>x</script>"  # stored as text


def test_admin_token_file_is_private_and_sees_all_usage(service, a_job):
    path = service.data_dir / "admin.token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    headers = {"Authorization": f"Bearer {path.read_text().strip()}"}
    with httpx.Client(base_url=service.url, headers=headers) as c:
        names = {u["name"] for u in c.get("/v1/usage").json()}
    assert {"team-a", "team-b"} <= names
    with service.client("team-b") as c:
        assert [u["name"] for u in c.get("/v1/usage").json()] == ["team-b"]


BAD_SUBMISSIONS = [
    (b"{not json", "body", "not valid JSON"),
    (b"[1, 2]", "body", "JSON object"),
    (json.dumps({"config": TINY_TOML, "colour": "red"}), "colour", "unknown field"),
    (json.dumps({"steps": 3}), "config", "required"),
    (json.dumps({"config": "[train\nsteps = ="}), "config", "not valid TOML"),
    (json.dumps({"config": "[train]\nbogus_key = 1\n"}), "config", "train.bogus_key"),
    (json.dumps({"config": TINY_TOML, "steps": 0}), "steps", "steps"),
    (json.dumps({"config": TINY_TOML, "steps": -5}), "steps", "steps"),
    (json.dumps({"config": TINY_TOML, "steps": "ten"}), "steps", "steps"),
    (json.dumps({"config": TINY_TOML, "precision": "fp4"}), "precision", "fp32"),
    (json.dumps({"config": TINY_TOML, "priority": 11}), "priority", "0..10"),
    (json.dumps({"config": TINY_TOML, "overrides": ["train.lr=-1"]}), "config", "train.lr"),
    (json.dumps({"config": TINY_TOML, "overrides": "train.lr=1"}), "overrides", "list"),
    (json.dumps({"config": TINY_TOML + '\n[model]\npreset = "huge"\n'}), "config", "model.preset"),
    (json.dumps({"config": TINY_TOML.replace("[data]", '[data]\nsource = "/etc"')}), "config", "data.source"),
    (json.dumps({"config": TINY_TOML.replace("[data]", '[data]\ncache_dir = "/tmp/x"')}), "config",
     "cache_dir"),
]


@pytest.mark.parametrize(("body", "field", "words"), BAD_SUBMISSIONS)
def test_bad_submission_is_400_naming_the_field_and_stores_nothing(service, body, field, words):
    with service.client("team-b") as c:
        before = c.get("/v1/jobs").json()
        error = _error(c.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"}),
                       400, field)
        assert words in error
        assert c.get("/v1/jobs").json() == before
        assert c.get("/v1/health").status_code == 200


def test_body_over_1_mib_is_413(service):
    big = json.dumps({"config": "# " + "x" * (1 << 20)})
    with service.client("team-b") as c:
        _error(c.post("/v1/jobs", content=big, headers={"Content-Type": "application/json"}), 413, "body")

        def chunks():  # no Content-Length: the limit holds for streamed bodies too
            for _ in range(20):
                yield b"x" * (1 << 17)

        _error(c.post("/v1/jobs", content=chunks()), 413, "body")
        assert c.get("/v1/health").status_code == 200


@pytest.mark.parametrize("name", ["..%2F..%2Fservice.db", "%2e%2e/%2e%2e/admin.token", "%252e%252e%252fx",
                                  "%2Fetc%2Fpasswd", "plots/..%2F..%2Fconfig.toml"])
def test_artifact_traversal_is_refused(service, a_job, name):
    with service.client("team-a") as c:
        r = c.get(httpx.URL(f"{service.url}/v1/jobs/{a_job}/artifacts/{name}"))
    assert r.status_code in (400, 404), r.text
    secret = (service.data_dir / "admin.token").read_text().strip()
    assert secret not in r.text and "SQLite format" not in r.text
    if r.status_code == 400:
        assert r.json()["field"] == "name"


def test_unknown_artifact_is_404(service, a_job):
    with service.client("team-a") as c:
        _error(c.get(f"/v1/jobs/{a_job}/artifacts/secret.txt"), 404, "name")


def test_tenant_over_quota_gets_429(service):
    with service.client("broke") as c:
        error = _error(c.post("/v1/jobs", json={"config": TINY_TOML, "steps": 2}), 429, "quota")
    assert "tile-hours" in error


def test_quote_names_device_hours_h100_equivalents_and_price_source(service):
    with service.client("team-a") as c:
        r = c.post("/v1/quotes", json={"config": TINY_TOML, "steps": 300,
                                       "systems": ["dojo-exapod", "h100-cluster-1k"]})
        assert r.status_code == 200, r.text
        dojo, h100 = r.json()
        _error(c.post("/v1/quotes", json={"config": TINY_TOML, "systems": ["nope"]}), 400, "systems")
    assert dojo["device_hours_unit"] == "tile-hours" and h100["device_hours_unit"] == "h100-hours"
    for q in (dojo, h100):
        assert q["total_s"] == pytest.approx(300 * q["step_time_s"])
        assert q["device_hours"] == pytest.approx(q["devices"] * q["total_s"] / 3600)
        assert q["h100_equivalent_definition"] and q["price_source"]
        assert q["price_usd"] > 0
