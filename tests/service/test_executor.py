"""The local executor and the dispatcher's grace period, with real processes that ignore SIGTERM."""

from __future__ import annotations

import json
import sys
import time

from opendojo.service.dispatcher import Dispatcher
from opendojo.service.executor import LocalExecutor
from opendojo.service.procs import is_alive
from opendojo.service.schema import QUEUED, RUNNING
from opendojo.service.store import default_url, open_store

STUBBORN = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(120)"]


def _wait_up(job_dir, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if "up" in (job_dir / "log.txt").read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError("the process never started")


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_period_and_requeued(tmp_path):
    store = open_store(default_url(tmp_path))
    store.add_tenant("t", max_running=1, max_priority=1, quota=None)
    job = store.add_job(store.tenant_by_name("t")["id"], name="x", priority=0, steps=5, precision="fp32",
                        config_toml="", overrides="[]")
    executor = LocalExecutor()
    dispatcher = Dispatcher(store, executor, tmp_path, slots=1, grace_s=1.0)
    job_dir = dispatcher.job_dir(job["id"])
    job_dir.mkdir(parents=True)
    handle = executor.start(job_dir, STUBBORN)
    store.transition(job["id"], QUEUED, state=RUNNING, handle=handle, attempts=1, started_at=time.time())
    _wait_up(job_dir)
    assert executor.find_orphan(job_dir) is not None  # the supervisor holds the job's lock
    store.disable_tenant("t")  # so the dispatcher does not start the requeued job again here
    dispatcher.request_stop(store.job(job["id"]), "preempt")
    dispatcher.tick()
    time.sleep(0.5)
    ref = json.loads(handle)
    assert is_alive(ref["pid"], ref["start"])  # SIGTERM ignored, still inside the grace period
    time.sleep(1.0)
    deadline = time.time() + 30
    while store.job(job["id"])["state"] == RUNNING and time.time() < deadline:
        dispatcher.tick()  # past the grace period: SIGKILL, then collected as preempted and requeued
        time.sleep(0.2)
    assert not is_alive(ref["pid"], ref["start"])
    after = store.job(job["id"])
    assert after["state"] in ("preempted", QUEUED) and "preempted" in after["message"], after


def test_an_attempt_refuses_to_start_while_another_holds_the_job(tmp_path):
    executor = LocalExecutor()
    first = executor.start(tmp_path, STUBBORN)
    _wait_up(tmp_path)
    second = executor.start(tmp_path, [sys.executable, "-c", "print('second ran')"])
    deadline = time.time() + 30
    while executor.poll(tmp_path, second) is None and time.time() < deadline:
        time.sleep(0.1)
    assert "second ran" not in (tmp_path / "log.txt").read_text()
    assert executor.poll(tmp_path, first) is None  # the first is untouched
    executor.stop(first, force=True)
