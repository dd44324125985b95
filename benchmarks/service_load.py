"""The training service under sustained load, on each database backend, beside Ray's own job API.

For each backend (SQLite; PostgreSQL started here with initdb + pg_ctl in a temp folder) a real
``dojo serve`` is driven by ``--clients`` concurrent clients (asyncio + httpx, one process, two tenants)
for ``--duration`` seconds; each client cycles submit → list → show → usage. Reported per backend:
p50 and p99 latency (per call and overall), errors (target 0), jobs lost (a 201 whose job is not in the
database afterwards) or duplicated (an id answered twice, or a row no 201 accounts for) (target 0), and
the server's RSS after warm-up and at the end (target: growth ≤ 10 %). The tenants have max-running 0,
so submitted jobs queue and never start: the cores go to the API, as for a server whose jobs run on Ray.

Anchor, measured in the same run where Ray is installed: the same clients against a local Ray head's
job API (``GET /api/jobs/``, the list call of Ray's Job Submission REST API, and ``GET /api/version``).

    .venv/bin/python benchmarks/service_load.py [--duration 300] [--clients 64] [--no-ray]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from tqdm import tqdm

from opendojo.service.store import default_url, open_store

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "[data]\nsynthetic_clips = 6\n[train]\nbatch_size = 4\n"
OPS = ("submit", "list", "show", "usage")


def _test_helper(name: str):
    """A launcher the service tests use (tests/service/NAME.py): one way to start PostgreSQL and Ray."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "service" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _drive(url: str, calls, until: float, clients: int, desc: str) -> tuple[dict, list]:
    """Run ``calls(client, n)`` (a coroutine returning (op, response)) from ``clients`` tasks until
    ``until``; latencies (s) per op and the errors."""
    lat: dict[str, list[float]] = {}
    errors: list[str] = []
    bar = tqdm(desc=desc, unit="req", mininterval=2)

    async def one(k: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            n = 0
            while time.perf_counter() < until:
                t0 = time.perf_counter()
                try:
                    op, r = await calls(c, k, n)
                    if r.status_code >= 300:
                        errors.append(f"{op}: HTTP {r.status_code} {r.text[:120]}")
                except httpx.HTTPError as e:
                    op = "error"
                    errors.append(f"{type(e).__name__}: {e}")
                lat.setdefault(op, []).append(time.perf_counter() - t0)
                n += 1
                bar.update(1)

    await asyncio.gather(*(one(k) for k in range(clients)))
    bar.close()
    return lat, errors


def _service_calls(tokens: list[str], accepted: list[str]):
    last: dict[int, str] = {}

    async def calls(c: httpx.AsyncClient, k: int, n: int):
        op = OPS[n % len(OPS)]
        headers = {"Authorization": f"Bearer {tokens[k % len(tokens)]}"}
        if op == "submit":
            body = {"config": CONFIG, "steps": 10, "name": f"c{k}"}
            r = await c.post("/v1/jobs", json=body, headers=headers)
            if r.status_code == 201:
                last[k] = r.json()["id"]
                accepted.append(last[k])
        elif op == "list":
            r = await c.get("/v1/jobs", headers=headers)
        elif op == "show":
            r = await c.get(f"/v1/jobs/{last.get(k, 'jnone')}", headers=headers)
            if k not in last:  # no job yet: a 404 is the right answer, not an error
                r.status_code = 200
        else:
            r = await c.get("/v1/usage", headers=headers)
        return op, r

    return calls


def load_service(db: str | None, duration: float, clients: int, label: str) -> dict:
    """One backend: start dojo serve, load it, account for every job, stop it."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        url_db = db or default_url(data)
        store = open_store(url_db)
        tokens = [store.add_tenant(f"t{i}", max_running=0, max_priority=10, quota=None) for i in range(2)]
        port = _free_port()
        argv = [sys.executable, "-m", "opendojo.cli", "serve", "--data-dir", str(data), "--port", str(port),
                *(["--db", db] if db else [])]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_http(f"{url}/v1/health", 120)
            auth = {"Authorization": f"Bearer {tokens[0]}"}
            with httpx.Client(base_url=url, headers=auth, timeout=300) as w:
                first = w.post("/v1/jobs", json={"config": CONFIG, "steps": 10}).json()["id"]  # warm-up
            rss0 = _rss_bytes(proc.pid)
            accepted: list[str] = [first]
            until = time.perf_counter() + duration
            lat, errors = asyncio.run(_drive(url, _service_calls(tokens, accepted), until, clients, label))
            rss1 = _rss_bytes(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        stored = Counter(j["id"] for t in store.list_tenants() for j in store.jobs_of(t["id"], limit=10**9))
        store.engine.dispose()
    answered = Counter(accepted)
    return {"lat": lat, "errors": errors, "accepted": len(accepted), "rss": (rss0, rss1),
            "lost": sum(1 for i in answered if i not in stored),
            "duplicated": sum(c - 1 for c in answered.values()) + sum(1 for i in stored if i not in answered)}


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def load_ray(duration: float, clients: int) -> dict:
    """The anchor: the same clients against Ray's job API on a local head (list jobs, version)."""
    head = _test_helper("ray_head").RayHead(num_cpus=2)
    try:
        async def calls(c: httpx.AsyncClient, k: int, n: int):
            op = ("ray list", "ray version")[n % 2]
            return op, await c.get("/api/jobs/" if op == "ray list" else "/api/version")

        until = time.perf_counter() + duration
        lat, errors = asyncio.run(_drive(head.address, calls, until, clients, "ray job API"))
    finally:
        head.stop()
    return {"lat": lat, "errors": errors}


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3 if values else float("nan")


def report(name: str, r: dict, anchor_p50: float | None) -> None:
    every = [x for v in r["lat"].values() for x in v]
    print(f"\n{name}: {len(every)} requests, {len(r['errors'])} errors (target 0)", end="")
    if "accepted" in r:
        rss0, rss1 = r["rss"]
        print(f", {r['accepted']} jobs accepted, lost {r['lost']}, duplicated {r['duplicated']} (target 0)\n"
              f"  server RSS {rss0 / 2**20:.1f} MiB after warm-up → {rss1 / 2**20:.1f} MiB at the end "
              f"({(rss1 / rss0 - 1) * 100:+.1f} %, target ≤ +10 %)")
    else:
        print()
    ratio_head = "  p50 / Ray list p50" if anchor_p50 else ""
    print(f"  {'call':<12} {'requests':>9} {'p50 ms':>9} {'p99 ms':>9}{ratio_head}")
    for op, v in sorted(r["lat"].items()) + [("all", every)]:
        ratio = f"  {_ms(v, 50) / anchor_p50:>18.2f}" if anchor_p50 else ""
        print(f"  {op:<12} {len(v):>9} {_ms(v, 50):>9.1f} {_ms(v, 99):>9.1f}{ratio}")
    for e in r["errors"][:3]:
        print(f"  error: {e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of load per backend (default 300)")
    ap.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray job API anchor")
    args = ap.parse_args()
    if not (args.duration > 0 and args.clients > 0):
        ap.error(f"--duration and --clients: got {args.duration}, {args.clients}; allowed: > 0")
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, "
          f"load before {os.getloadavg()[0]:.2f}; {args.clients} clients, {args.duration:.0f} s per backend")
    ray = None if args.no_ray else load_ray(args.duration, args.clients)
    anchor = _ms(ray["lat"]["ray list"], 50) if ray else None
    results = {"SQLite": load_service(None, args.duration, args.clients, "sqlite")}
    pg = _test_helper("postgres")
    server = pg.Postgres(_free_port())
    try:
        url = server.new_database("load")
        results["PostgreSQL"] = load_service(url, args.duration, args.clients, "postgres")
    finally:
        server.stop()
    if ray:
        report("anchor: Ray job API (local head)", ray, None)
    for name, r in results.items():
        report(f"dojo serve on {name}", r, anchor)
    print(f"# load after {os.getloadavg()[0]:.2f}")
    bad = [r for r in results.values() if r["errors"] or r["lost"] or r["duplicated"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
