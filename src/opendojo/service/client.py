"""The client side of the API, on httpx: what ``dojo jobs ...`` calls."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx

from opendojo.errors import UsageError
from opendojo.service.jobview import check_artifact_name

DEFAULT_SERVER = "http://127.0.0.1:8700"


class ApiFailure(Exception):
    """The server answered an error: ``status`` and its one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """A tenant's (or the admin's) session with a server; ``server``/``token`` default to the
    ``DOJO_SERVER``/``DOJO_TOKEN`` environment variables."""

    def __init__(self, server: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        server = server or os.environ.get("DOJO_SERVER") or DEFAULT_SERVER
        token = token or os.environ.get("DOJO_TOKEN")
        if not token:
            raise UsageError("--token: missing; pass --token or set DOJO_TOKEN")
        self.http = httpx.Client(base_url=server, timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"})

    def _call(self, method: str, url: str, **kw) -> httpx.Response:
        try:
            r = self.http.request(method, url, **kw)
        except httpx.HTTPError as e:
            raise ApiFailure(0, f"cannot reach {self.http.base_url}: {e}") from None
        if r.status_code >= 400:
            try:
                message = r.json().get("error") or r.json().get("detail") or r.text
            except ValueError:
                message = r.text
            raise ApiFailure(r.status_code, f"{r.status_code}: {message}")
        return r

    def submit(self, config_toml: str, **fields) -> dict:
        body = {"config": config_toml} | {k: v for k, v in fields.items() if v is not None}
        return self._call("POST", "/v1/jobs", json=body).json()

    def jobs(self) -> list[dict]:
        return self._call("GET", "/v1/jobs").json()

    def show(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}").json()

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel").json()

    def quote(self, config_toml: str, systems: list[str], **fields) -> list[dict]:
        body = {"systems": systems} | {k: v for k, v in fields.items() if v is not None}
        body["config"] = config_toml
        return self._call("POST", "/v1/quotes", json=body).json()

    def usage(self) -> list[dict]:
        return self._call("GET", "/v1/usage").json()

    def logs(self, job_id: str, follow: bool = False) -> Iterator[bytes]:
        params = {"follow": "1"} if follow else {}
        try:
            with self.http.stream("GET", f"/v1/jobs/{job_id}/logs", params=params, timeout=None) as r:
                if r.status_code >= 400:
                    r.read()
                    raise ApiFailure(r.status_code, f"{r.status_code}: {r.json().get('error')}")
                yield from r.iter_bytes()
        except httpx.HTTPError as e:
            raise ApiFailure(0, f"cannot reach {self.http.base_url}: {e}") from None

    def download(self, job_id: str, out: Path) -> list[Path]:
        """Every artifact of the job into ``out`` (sub-folders as named); the paths written."""
        written = []
        for a in self._call("GET", f"/v1/jobs/{job_id}/artifacts").json():
            target = out / check_artifact_name(a["name"])  # a server cannot write outside ``out`` either
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(self._call("GET", f"/v1/jobs/{job_id}/artifacts/{a['name']}").content)
            tmp.replace(target)  # never a half-written file under its real name
            written.append(target)
        return written
