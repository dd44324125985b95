"""The Ray executor: each attempt of a job is one Ray job, through Ray's Job Submission API.

Same contract as :class:`~opendojo.service.executor.LocalExecutor` (``start``/``poll``/``stop`` plus
``find_orphan``), so the dispatcher, scheduler and store do not change. The entrypoint is
``dojo train ...``, reserving ``entrypoint_num_cpus`` = the job's threads × processes (``--nproc``
ranks run under torchrun inside that one Ray job) and ``entrypoint_num_gpus`` = its ranks when it trains
on CUDA. Ray places it on a node with those resources free.

Mapping onto the API: status PENDING/RUNNING → still running; SUCCEEDED → exit 0; FAILED → the driver's
exit code (75, the trainer's "checkpointed and stopped", means preempted; none at all means a node or
the job's supervisor died: lost, requeued); STOPPED → preempted, unless the service itself asked to
cancel; a submission the cluster no longer knows (the head restarted) → lost, requeued.
A graceful stop is ``stop_job``: Ray sends SIGTERM (the trainer checkpoints and exits 75) and SIGKILLs
after ``RAY_JOB_STOP_WAIT_TIME_S``, set to the service's grace period. Logs come from ``get_job_logs``
into the job's ``log.txt``. The run folder (``--out``) must be on storage that every Ray node and the
service share, as checkpoints and metrics are read from it.
"""

from __future__ import annotations

import json
import logging
import secrets
import shlex
from pathlib import Path

from opendojo.errors import EXIT_PREEMPTED, UsageError
from opendojo.service.executor import Outcome

log = logging.getLogger(__name__)

#: Ray job states that mean the attempt is still on the cluster.
RAY_ACTIVE = ("PENDING", "RUNNING")


def _resources(argv: list[str]) -> tuple[int, int]:
    """(CPUs, GPUs) one attempt needs, read from its ``dojo train`` arguments."""
    threads, nproc, cuda = 1, 1, False
    for i, arg in enumerate(argv):
        if arg.startswith("--set=train.threads="):
            threads = int(arg.rsplit("=", 1)[1])
        elif arg.startswith("--set=train.device="):
            cuda = "cuda" in arg
        elif arg == "--nproc" and i + 1 < len(argv):
            nproc = int(argv[i + 1])
    return threads * nproc, nproc if cuda else 0


def entrypoint_of(argv: list[str], dojo: str = "dojo") -> str:
    """The shell entrypoint for a ``[python, -m, opendojo.cli, train, ...]`` argv: ``dojo train ...``
    (the ``dojo`` on the Ray node's PATH, not this server's interpreter)."""
    i = argv.index("opendojo.cli") + 1 if "opendojo.cli" in argv else 0
    return shlex.join([dojo, *argv[i:]])


class RayExecutor:
    """Runs attempts on the Ray cluster at ``address`` (the head's dashboard URL, e.g.
    ``http://127.0.0.1:8265``); ``grace_s`` is how long a stopped job may take to checkpoint."""

    name = "ray"

    def __init__(self, address: str, grace_s: float = 120.0, dojo: str = "dojo") -> None:
        if not address:
            raise UsageError("--ray-address: required with --executor ray (e.g. http://HEAD:8265)")
        self.address, self.grace_s, self.dojo = address, grace_s, dojo
        self._client = None

    @property
    def client(self):
        if self._client is None:  # connect on first use, so a restarted server reconnects lazily
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.address)
        return self._client

    def start(self, job_dir: Path, argv: list[str]) -> str:
        cpus, gpus = _resources(argv)
        log_path = job_dir / "log.txt"
        base = log_path.stat().st_size if log_path.exists() else 0
        submission_id = f"dojo-{job_dir.name}-{secrets.token_hex(4)}"
        self.client.submit_job(
            entrypoint=entrypoint_of(argv, self.dojo), submission_id=submission_id,
            entrypoint_num_cpus=cpus, entrypoint_num_gpus=gpus or None,
            metadata={"dojo_job": job_dir.name},
            runtime_env={"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": str(int(self.grace_s))}})
        log.info("job %s: Ray job %s (%d CPUs, %d GPUs)", job_dir.name, submission_id, cpus, gpus)
        return json.dumps({"ray": submission_id, "log_base": base})

    def _copy_logs(self, job_dir: Path, ref: dict) -> None:
        """The attempt's logs from Ray, after the earlier attempts' part of ``log.txt``."""
        try:
            text = self.client.get_job_logs(ref["ray"])
        except Exception as e:  # logs are best effort: status decides the outcome
            log.debug("logs of %s unavailable: %s", ref["ray"], e)
            return
        with open(job_dir / "log.txt", "ab") as f:
            f.truncate(ref["log_base"])
            f.write(text.encode())

    def poll(self, job_dir: Path, handle: str) -> Outcome | None:
        ref = json.loads(handle)
        try:
            info = self.client.get_job_info(ref["ray"])
        except RuntimeError as e:  # the SDK's "does not exist": the cluster restarted and forgot it
            if "does not exist" in str(e):
                return Outcome(None)
            raise
        status = str(getattr(info.status, "value", info.status))
        self._copy_logs(job_dir, ref)
        if status in RAY_ACTIVE:
            return None
        if status == "SUCCEEDED":
            return Outcome(0)
        if status == "STOPPED":
            return Outcome(info.driver_exit_code if info.driver_exit_code is not None else EXIT_PREEMPTED)
        # FAILED without a driver exit code: the node or the job's supervisor died, not the trainer, so
        # the job is lost rather than failed (the dispatcher requeues it to resume from its checkpoint).
        return Outcome(info.driver_exit_code)

    def stop(self, handle: str, *, force: bool = False) -> None:
        # Ray itself escalates SIGTERM to SIGKILL after the grace period set at submission.
        submission_id = json.loads(handle)["ray"]
        try:
            self.client.stop_job(submission_id)
        except RuntimeError as e:  # already finished: nothing to stop
            log.debug("stop %s: %s", submission_id, e)

    def find_orphan(self, job_dir: Path) -> str | None:
        """The handle of an active Ray job of this service job that the store does not know (a server
        died between submitting it and recording it), so it is adopted instead of run twice."""
        for job in self.client.list_jobs():
            status = str(getattr(job.status, "value", job.status))
            if (job.metadata or {}).get("dojo_job") == job_dir.name and status in RAY_ACTIVE:
                return json.dumps({"ray": job.submission_id, "log_base": 0})
        return None
