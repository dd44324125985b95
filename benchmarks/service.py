"""API latency of the training service under concurrent clients, and one scheduling pass at 10,000 jobs.

Starts a real ``dojo serve`` (SQLite, local executor) in a temp folder and drives it with N concurrent
httpx clients (asyncio, one process) for ``--duration`` seconds; every client cycles submit → list →
show → health. ``health`` is the anchor: a bare FastAPI endpoint on the same server, no token and no
database, i.e. the framework's floor under the same load. The benchmark tenant has max-running 0, so
the submitted jobs queue but never start: the machine's cores go to the API, as they would for a
server whose jobs run elsewhere. Targets (issue 14): p99 ≤ 50 ms for show and list at 32 clients.

The scheduling pass is :func:`opendojo.service.scheduler.plan` over 10,000 queued jobs of 50 tenants
with 16 slots (target ≤ 100 ms), beside two anchors measured in the same run: reading the 10,000 rows
from SQLite through the store (what a dispatcher pass does first) and a bare ``sorted()`` of 10,000
tuples (the floor of any ordering).

    .venv/bin/python benchmarks/service.py [--duration 60] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from tqdm import tqdm

from opendojo.service.scheduler import JobView, plan
from opendojo.service.store import default_url, open_store

CONFIG = '[data]\nsynthetic_clips = 6\n[train]\nbatch_size = 4\n'
OPS = ("submit", "list", "show", "health")


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def _client(url: str, token: str, until: float, lat: dict, errors: list, bar) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as c:
        job_id = None
        while time.perf_counter() < until:
            for op in OPS:
                t0 = time.perf_counter()
                try:
                    if op == "submit":
                        r = await c.post("/v1/jobs", json={"config": CONFIG, "steps": 10})
                        job_id = r.json().get("id", job_id)
                    elif op == "list":
                        r = await c.get("/v1/jobs")
                    elif op == "show":
                        r = await c.get(f"/v1/jobs/{job_id}")
                    else:
                        r = await c.get("/v1/health")
                    ok = r.status_code < 300
                except httpx.HTTPError as e:
                    ok, r = False, e
                lat[op].append(time.perf_counter() - t0)
                if not ok:
                    errors.append(f"{op}: {r}")
                bar.update(1)


def _start_server(data_dir: Path, port: int) -> subprocess.Popen:
    argv = [sys.executable, "-m", "opendojo.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("dojo serve did not start")


def api_latency(duration: float, clients: int) -> tuple[dict, list, int]:
    """Latencies (s) per op, the errors, and the number of jobs submitted."""
    import socket

    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        store = open_store(default_url(data_dir))
        token = store.add_tenant("bench", max_running=0, max_priority=10, quota=None)  # jobs never start
        proc = _start_server(data_dir, port)
        try:
            lat: dict[str, list[float]] = {op: [] for op in OPS}
            errors: list[str] = []
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                              timeout=300) as warm:
                warm.post("/v1/jobs", json={"config": CONFIG, "steps": 10})  # the simulator's first capture
            with tqdm(desc=f"{clients} clients, {duration:.0f} s", unit="req") as bar:
                until = time.perf_counter() + duration
                asyncio.run(_gather(url, token, until, lat, errors, bar, clients))
            submitted = len(store.jobs_of(store.tenant_by_name("bench")["id"], limit=10**9))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return lat, errors, submitted


async def _gather(url, token, until, lat, errors, bar, clients) -> None:
    await asyncio.gather(*(_client(url, token, until, lat, errors, bar) for _ in range(clients)))


def scheduling_pass(n: int = 10_000, tenants: int = 50, slots: int = 16, repeats: int = 7) -> dict:
    """Median seconds of plan() over ``n`` queued jobs, of reading them from SQLite, and of sorted()."""
    rng = random.Random(0)
    views = [JobView(f"j{i}", rng.randrange(tenants), rng.randrange(4), i, "queued") for i in range(n)]
    views += [JobView(f"r{i}", i % tenants, 0, n + i, "running") for i in range(slots)]
    limits = {t: 2 for t in range(tenants)}
    times = {"plan": [], "sorted": [], "store_read": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(default_url(Path(tmp)))
        store.add_tenant("t", max_running=1, max_priority=3, quota=None)
        tid = store.tenant_by_name("t")["id"]
        with store.engine.begin() as c:
            from opendojo.service.schema import jobs

            c.execute(jobs.insert(), [dict(id=f"j{i}", tenant_id=tid, name="x", state="queued", priority=0,
                                           steps=1, precision="fp32", config_toml="", overrides="[]",
                                           submitted_at=0.0, attempts=0, message="", wall_s=0.0, cpu_s=0.0,
                                           steps_done=0, tile_hours=0.0) for i in range(n)])
        for _ in range(repeats):
            t0 = time.perf_counter()
            plan(views, limits, slots)
            times["plan"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            sorted((-v.priority, v.seq, v.id) for v in views)
            times["sorted"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert len(store.queue_rows()) == n
            times["store_read"].append(time.perf_counter() - t0)
        store.engine.dispose()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    args = ap.parse_args()
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, "
          f"load before {os.getloadavg()[0]:.2f}")
    lat, errors, submitted = api_latency(args.duration, args.clients)
    print(f"\nAPI, {args.clients} concurrent clients, {args.duration:.0f} s, {submitted} jobs submitted, "
          f"{len(errors)} errors (target 0)")
    print(f"{'endpoint':<26} {'requests':>9} {'p50 ms':>9} {'p99 ms':>9} {'p99 / health p99':>17}")
    floor = _percentile(lat["health"], 0.99)
    names = {"submit": "POST /v1/jobs", "list": "GET /v1/jobs", "show": "GET /v1/jobs/ID",
             "health": "GET /v1/health (anchor)"}
    for op in OPS:
        p50, p99 = _percentile(lat[op], 0.5), _percentile(lat[op], 0.99)
        print(f"{names[op]:<26} {len(lat[op]):>9} {p50 * 1e3:>9.1f} {p99 * 1e3:>9.1f} {p99 / floor:>17.2f}")
    for e in errors[:5]:
        print(f"  error: {e}")
    s = scheduling_pass()
    print("\nscheduling pass, 10,000 queued jobs, 50 tenants, 16 slots (median of 7; target plan ≤ 100 ms)")
    print(f"  plan():                        {s['plan'] * 1e3:8.1f} ms")
    print(f"  anchor: read the 10,000 queue rows (SQLite, store.queue_rows): {s['store_read'] * 1e3:8.1f} ms")
    print(f"  anchor: sorted() of 10,000 tuples: {s['sorted'] * 1e3:8.1f} ms   "
          f"(plan / sorted = {s['plan'] / s['sorted']:.1f})")
    print(f"# load after {os.getloadavg()[0]:.2f}")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
