"""A real Ray head for the tests: `ray start --head --block` in its own process group, on free ports, with
its own temp folder, usage stats off; stopped by its process group (and any worker that outlived it, found
by that temp folder), never by `ray stop`, which would stop every Ray on the machine."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

RAY = Path(sys.executable).parent / "ray"
AVAILABLE = RAY.exists()


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class RayHead:
    """``address`` is the job API (the dashboard) URL, ``gcs_address`` the cluster's; ``num_cpus`` the
    CPUs it offers."""

    def __init__(self, num_cpus: int = 2) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="dojo-ray-"))
        dash, gcs, client, agent = _free_ports(4)
        self.address = f"http://127.0.0.1:{dash}"  # the job API (dashboard)
        self.gcs_address = f"127.0.0.1:{gcs}"  # what ray.init(address=...) connects a driver to
        env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0",
                            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        argv = [str(RAY), "start", "--head", "--num-cpus", str(num_cpus), "--include-dashboard", "true",
                "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--port", str(gcs),
                "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
                "--temp-dir", str(self.temp), "--disable-usage-stats", "--block"]
        self.log = open(self.temp / "head.log", "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._wait_ready(120)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}: see {self.temp / 'head.log'}")
            try:
                if httpx.get(f"{self.address}/api/version", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Ray head did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        for pid in _pids_mentioning(str(self.temp)):  # workers that left the group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


def _pids_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found
