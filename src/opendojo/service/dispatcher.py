"""The dispatcher: applies the scheduler's plan to the world, one pass at a time, from the store alone.

Each pass reads the active jobs, collects the attempts that ended (or adopts ones a previous server
started), signals pending stops (SIGTERM; SIGKILL after the grace period), requeues preempted jobs,
then asks :func:`scheduler.plan` what to start and preempt. Because a pass needs nothing but the store,
the first pass after a crash is the recovery: running jobs are re-adopted or requeued from their pid,
start time and lock.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from opendojo.errors import EXIT_PREEMPTED
from opendojo.service import scheduler
from opendojo.service.executor import Executor, Outcome
from opendojo.service.schema import CANCELLED, FAILED, PREEMPTED, QUEUED, RUNNING, SUCCEEDED
from opendojo.service.store import Store, overrides_of

log = logging.getLogger(__name__)

MAX_LOST_ATTEMPTS = 3  # attempts that vanish without an exit code before the job is failed
DEFAULT_GRACE_S = 120.0
# Claim → process recorded takes milliseconds; a claim this old without a process means its server died.
CLAIM_TIMEOUT_S = 30.0  # SIGTERM → SIGKILL, as SageMaker's StopTrainingJob allows


def steps_done(run_dir: Path) -> int:
    """The newest checkpointed step of a run folder (0 without one)."""
    from opendojo.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir / "checkpoints")
    return int(ckpt.name.split("_")[-1]) if ckpt else 0


def has_result(run_dir: Path, steps: int) -> bool:
    """Whether the run wrote its result.json for all ``steps`` (the only proof of success)."""
    try:
        return json.loads((run_dir / "result.json").read_text()).get("steps") == steps
    except (FileNotFoundError, json.JSONDecodeError):
        return False


class Dispatcher:
    """Runs jobs of ``store`` on ``executor`` in ``slots`` slots; job folders under ``data_dir/jobs``."""

    def __init__(self, store: Store, executor: Executor, data_dir: Path, *, slots: int,
                 grace_s: float = DEFAULT_GRACE_S, cores: int | None = None) -> None:
        self.store, self.executor, self.data_dir = store, executor, data_dir
        self.slots, self.grace_s = slots, grace_s
        self.threads = max(1, (cores or os.cpu_count() or 1) // slots)  # each job's share of the cores
        self._lock = threading.Lock()

    def job_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    def run_forever(self, stop: threading.Event, interval_s: float = 0.5) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # a bad pass must not stop the service; the next one retries
                log.exception("dispatcher pass failed")
            stop.wait(interval_s)

    def tick(self) -> scheduler.Plan:
        """One pass; returns the plan it applied."""
        with self._lock:
            for job in self.store.jobs_in(RUNNING):
                self._watch(job)
            for job in self.store.jobs_in(PREEMPTED):
                self.store.transition(job["id"], PREEMPTED, state=QUEUED)
            limits = {t["id"]: t["max_running"] for t in self.store.list_tenants() if not t["disabled"]}
            views = [scheduler.JobView(i, t, p, seq, state, stop is not None)
                     for i, t, p, seq, state, stop in self.store.queue_rows()]
            plan = scheduler.plan(views, limits, self.slots)
            for job_id in plan.preempt:
                self.request_stop(self.store.job(job_id), "preempt")
            for job_id in plan.start:
                self._launch(self.store.job(job_id))
            return plan

    def request_stop(self, job: dict, reason: str) -> None:
        """Ask a running job to stop (graceful); the next passes signal it and collect it."""
        if self.store.transition(job["id"], RUNNING, stop_reason=reason, stop_requested_at=time.time()):
            if job["handle"]:
                self.executor.stop(job["handle"])

    def _watch(self, job: dict) -> None:
        jdir = self.job_dir(job["id"])
        if job["handle"] is None:  # claimed, and the process not yet recorded
            if time.time() - (job["started_at"] or 0) < CLAIM_TIMEOUT_S:
                return  # another server (sharing a PostgreSQL queue) is starting it right now
            orphan = self.executor.find_orphan(jdir) if hasattr(self.executor, "find_orphan") else None
            if orphan:
                self.store.transition(job["id"], RUNNING, handle=orphan)
            else:
                self.store.transition(job["id"], RUNNING, state=QUEUED, stop_reason=None)
            return
        outcome = self.executor.poll(jdir, job["handle"])
        if outcome is None:
            if job["stop_reason"]:
                late = time.time() - job["stop_requested_at"] > self.grace_s
                self.executor.stop(job["handle"], force=late)
            return
        if outcome.code is None and hasattr(self.executor, "find_orphan"):
            orphan = self.executor.find_orphan(jdir)
            if orphan and orphan != job["handle"]:
                self.store.transition(job["id"], RUNNING, handle=orphan)
                return
        self._finish(job, outcome)

    def _outcome_state(self, job: dict, outcome: Outcome, run_dir: Path) -> tuple[str, str]:
        if outcome.code == 0 and has_result(run_dir, job["steps"]):
            return SUCCEEDED, "finished"
        if job["stop_reason"] == "cancel":
            return CANCELLED, "cancelled by the tenant"
        if outcome.code == 0:
            return FAILED, "dojo train exited 0 without result.json"
        if outcome.code == EXIT_PREEMPTED or job["stop_reason"] == "preempt":
            return PREEMPTED, "preempted; resumes from its last checkpoint"
        if outcome.code is None:
            if job["attempts"] >= MAX_LOST_ATTEMPTS:
                return FAILED, f"the process vanished {job['attempts']} times"
            return PREEMPTED, "the process vanished; resumes from its last checkpoint"
        return FAILED, f"dojo train exited {outcome.code}: {last_line(self.job_dir(job['id']) / 'log.txt')}"

    def _finish(self, job: dict, outcome: Outcome) -> None:
        run_dir = self.job_dir(job["id"]) / "run"
        state, message = self._outcome_state(job, outcome, run_dir)
        done = steps_done(run_dir)
        now = time.time()
        final = state in (SUCCEEDED, FAILED, CANCELLED)
        self.store.transition(
            job["id"], RUNNING, state=state, handle=None, stop_reason=None, stop_requested_at=None,
            exit_code=outcome.code, message=message, finished_at=now if final else None,
            wall_s=job["wall_s"] + now - (job["started_at"] or now), cpu_s=job["cpu_s"] + outcome.cpu_s,
            steps_done=done, tile_hours=done * (job["tile_step_s"] or 0.0) / 3600)
        log.info("job %s: %s (%s)", job["id"], state, message)

    def _launch(self, job: dict) -> None:
        jdir = self.job_dir(job["id"])
        jdir.mkdir(parents=True, exist_ok=True)
        (jdir / "config.toml").write_text(job["config_toml"])
        claimed = self.store.claim(job["id"], (QUEUED, PREEMPTED), state=RUNNING, handle=None,
                                   attempts=job["attempts"] + 1, started_at=time.time())
        if not claimed:
            return
        argv = self._argv(job, jdir)
        (jdir / "command.json").write_text(json.dumps(argv))  # what ran, to rerun it by hand
        handle = self.executor.start(jdir, argv)
        self.store.transition(job["id"], RUNNING, handle=handle)

    def _argv(self, job: dict, jdir: Path) -> list[str]:
        import sys

        served = [f"train.threads={self.threads}",
                  f"data.cache_dir={json.dumps(str(self.data_dir / 'cache'))}"]
        from opendojo.service.submission import SYNTHETIC, load_job_config

        source = load_job_config(job["config_toml"], overrides_of(job)).data.source
        if source != SYNTHETIC:
            served.append(f"data.source={json.dumps(self.store.dataset_paths()[source])}")
        sets = [f"--set={o}" for o in overrides_of(job) + served]
        return [sys.executable, "-m", "opendojo.cli", "train", "--config", str(jdir / "config.toml"),
                "--out", str(jdir / "run"), "--resume", "--no-progress", *sets]


def last_line(path: Path, limit: int = 300) -> str:
    """The last non-empty line of a log, for a failed job's message."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [x for x in f.read().decode(errors="replace").splitlines() if x.strip()]
    except FileNotFoundError:
        return "(no log)"
    return lines[-1][:limit] if lines else "(empty log)"
