"""``python -m opendojo.service.supervise JOB_DIR -- COMMAND...``: run one attempt of a job.

The service starts this small parent instead of ``dojo train`` itself, for three guarantees that must
outlive a crashed server: it holds an exclusive lock on ``JOB_DIR/running.lock`` while the job runs (a
second attempt of the same job refuses to start: no job ever runs twice at once); it writes
``process.json`` (its pid and start time) so a restarted server finds it again; and it writes
``exit.json`` (exit code, CPU seconds of the child) when the child ends, so the outcome is known even
when the server was not there to wait for it. SIGTERM is forwarded to the child (a graceful stop).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from opendojo.errors import EXIT_FAILURE
from opendojo.service.procs import process_start_ticks

#: Exit code when another attempt of the job already holds the lock (nothing was run).
EXIT_ALREADY_RUNNING = 73


def _die_with_parent() -> None:
    # Linux: if this supervisor is killed outright, the kernel kills the trainer too (never orphaned).
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def supervise(job_dir: Path, argv: list[str]) -> int:
    lock = open(job_dir / "running.lock", "w")  # noqa: SIM115 (held for the life of this process)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return EXIT_ALREADY_RUNNING
    (job_dir / "exit.json").unlink(missing_ok=True)
    _write_json(job_dir / "process.json", {"pid": os.getpid(), "start": process_start_ticks(os.getpid())})
    with open(job_dir / "log.txt", "ab") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    while True:
        try:
            _, status, usage = os.wait4(child.pid, 0)
            break
        except ChildProcessError:
            status, usage = EXIT_FAILURE << 8, None
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    cpu_s = usage.ru_utime + usage.ru_stime if usage else 0.0
    _write_json(job_dir / "exit.json", {"code": code, "cpu_s": cpu_s})
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: python -m opendojo.service.supervise JOB_DIR -- COMMAND...")
    sys.exit(supervise(Path(sys.argv[1]), sys.argv[3:]))
