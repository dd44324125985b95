"""Executors: where a job's ``dojo train`` process runs. The local one is the embedded default.

The contract (a Ray Jobs executor implements the same three calls): ``start`` launches one attempt and
returns a JSON handle the store keeps; ``poll`` answers None while it runs, else an :class:`Outcome`;
``stop`` asks it to stop gracefully (SIGTERM) or, with ``force``, kills it. Handles survive a server
restart: a new executor polls and stops processes an earlier server started.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from opendojo.errors import check_choice
from opendojo.service.procs import is_alive, process_start_ticks

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: ``code`` is the exit code, None when the process vanished without one
    (killed outright, machine rebooted); ``cpu_s`` the CPU seconds it used."""

    code: int | None
    cpu_s: float = 0.0


class Executor(Protocol):
    def start(self, job_dir: Path, argv: list[str]) -> str: ...
    def poll(self, job_dir: Path, handle: str) -> Outcome | None: ...
    def stop(self, handle: str, *, force: bool = False) -> None: ...


class LocalExecutor:
    """Each attempt is a supervisor process (``opendojo.service.supervise``) in its own session, so it
    outlives the server; the handle is its pid and start time."""

    name = "local"

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen] = {}  # reaped on poll so none stays a zombie

    def start(self, job_dir: Path, argv: list[str]) -> str:
        (job_dir / "exit.json").unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "opendojo.service.supervise", str(job_dir), "--", *argv]
        with open(job_dir / "log.txt", "ab") as out:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self._children[p.pid] = p
        return json.dumps({"pid": p.pid, "start": process_start_ticks(p.pid)})

    def poll(self, job_dir: Path, handle: str) -> Outcome | None:
        for pid, p in list(self._children.items()):
            if p.poll() is not None:
                del self._children[pid]
        ref = json.loads(handle)
        if ref["start"] is not None and is_alive(ref["pid"], ref["start"]):
            return None
        try:
            done = json.loads((job_dir / "exit.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return Outcome(None)
        return Outcome(int(done["code"]), float(done.get("cpu_s", 0.0)))

    def stop(self, handle: str, *, force: bool = False) -> None:
        ref = json.loads(handle)
        if ref["start"] is None or not is_alive(ref["pid"], ref["start"]):
            return
        try:
            if force:
                os.killpg(ref["pid"], signal.SIGKILL)  # the supervisor leads its session's group
            else:
                os.kill(ref["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass

    @staticmethod
    def find_orphan(job_dir: Path) -> str | None:
        """The handle of a live attempt of this job that the store does not know (a server died between
        starting it and recording it), found by its lock; None when nothing runs the job."""
        try:
            with open(job_dir / "running.lock", "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
                return None
        except FileNotFoundError:
            return None
        except BlockingIOError:
            ref = json.loads((job_dir / "process.json").read_text())
            return json.dumps(ref)


def make_executor(name: str, *, ray_address: str | None = None, grace_s: float = 120.0) -> Executor:
    check_choice("--executor", name, EXECUTORS)
    if name == "local":
        return LocalExecutor()
    from opendojo.service.ray_executor import RayExecutor  # Ray is the `cluster` extra

    return RayExecutor(ray_address or os.environ.get("RAY_ADDRESS", ""), grace_s)
