"""The dashboard over plain HTTP against a real `dojo serve`: the session cookie's flags, sign-in and
sign-out, escaping, isolation between tenants, local assets only. The browser tests are in
test_dashboard_browser.py."""

from __future__ import annotations

import re
from contextlib import contextmanager

import httpx
import pytest

from .conftest import TINY_TOML


def _browser(service) -> httpx.Client:
    return httpx.Client(base_url=service.url, follow_redirects=False, timeout=30)


@contextmanager
def _signed_in(service, token: str):
    with _browser(service) as c:
        r = c.post("/signin", data={"token": token})
        assert r.status_code == 303 and r.headers["location"] == "/", r.text
        yield c


@pytest.fixture(scope="module")
def hostile_job(service):
    with service.client("team-a") as c:
        r = c.post("/v1/jobs", json={"config": TINY_TOML, "steps": 2, "name": "<script>alert(1)</script>"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_pages_redirect_to_signin_without_a_session(service, hostile_job):
    with _browser(service) as c:
        for path in ("/", "/submit", f"/jobs/{hostile_job}", "/admin"):
            r = c.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/signin", path
        assert c.get("/signin").status_code == 200
        assert c.get(f"/jobs/{hostile_job}/metrics.json").status_code == 401


def test_signin_cookie_is_httponly_samesite_strict_and_bad_tokens_are_refused(service):
    with _browser(service) as c:
        r = c.post("/signin", data={"token": "dojo_ffff_nope"})
        assert r.status_code == 401 and "unknown, rotated or disabled" in r.text
        assert "set-cookie" not in r.headers
        r = c.post("/signin", data={"token": service.tokens["gone"]})  # a disabled tenant
        assert r.status_code == 401
        r = c.post("/signin", data={"token": service.tokens["team-a"]})
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie


def test_job_name_is_escaped_and_assets_are_local(service, hostile_job):
    with _signed_in(service, service.tokens["team-a"]) as c:
        for path in ("/", f"/jobs/{hostile_job}"):
            r = c.get(path)
            assert r.status_code == 200
            assert "<script>alert(1)</script>" not in r.text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
            assert "default-src 'self'" in r.headers["content-security-policy"]
            sources = re.findall(r'(?:src|href)="([^"]+)"', r.text)
            assert sources and all(s.startswith("/") or s.startswith("#") for s in sources), sources
        assert c.get("/static/dashboard.js").status_code == 200
        assert c.get("/static/dashboard.css").status_code == 200
        page = c.get(f"/jobs/{hostile_job}").text
        assert "<h2 id=\"quote-h\">Quote</h2>" in page and "tile-hours" in page


def test_another_tenants_job_is_not_listed_and_not_found(service, hostile_job):
    with _signed_in(service, service.tokens["team-b"]) as c:
        assert hostile_job not in c.get("/").text
        assert hostile_job not in c.get("/fragments/jobs").text
        assert c.get(f"/jobs/{hostile_job}").status_code == 404
        assert c.get(f"/jobs/{hostile_job}/metrics.json").status_code == 404
        assert c.get(f"/jobs/{hostile_job}/files/log.txt").status_code == 404


def test_bad_form_submission_says_which_field_and_stores_nothing(service):
    with _signed_in(service, service.tokens["team-b"]) as c:
        before = c.get("/fragments/jobs").text
        r = c.post("/submit", data={"config_text": TINY_TOML, "steps": "-3"})
        assert r.status_code == 400 and "steps" in r.text
        r = c.post("/submit", data={"config_text": "[train]\nbogus = 1\n"})
        assert r.status_code == 400 and "train.bogus" in r.text
        r = c.post("/submit", data={"shipped": "../../etc/passwd"})
        assert r.status_code == 400 and "pick one of" in r.text
        assert c.get("/fragments/jobs").text == before


def test_signout_ends_the_session(service, hostile_job):
    with _signed_in(service, service.tokens["team-a"]) as c:
        assert c.get(f"/jobs/{hostile_job}").status_code == 200
        r = c.post("/signout")
        assert r.status_code == 303 and r.headers["location"] == "/signin"
        assert c.get(f"/jobs/{hostile_job}").headers["location"] == "/signin"


def test_admin_view_lists_tenants_slots_queue_and_capacity(service):
    token = (service.data_dir / "admin.token").read_text().strip()
    with _signed_in(service, token) as c:
        assert c.get("/").headers["location"] == "/admin"
        page = c.get("/admin").text
    for heading in ("Capacity", "Tenants", "Slots (running)", "Queue"):
        assert f">{heading}</h2>" in page
    assert "team-a" in page and "team-b" in page
    assert "H100-equivalents" in page and "Dojo training tiles" in page
    with _signed_in(service, service.tokens["team-a"]) as c:
        assert c.get("/admin").status_code == 403
