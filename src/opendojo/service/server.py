"""``dojo serve``: one data folder, one database, the dispatcher and the API in one process."""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

from opendojo.errors import UsageError
from opendojo.service.api import ServiceState, create_app
from opendojo.service.dispatcher import DEFAULT_GRACE_S, Dispatcher
from opendojo.service.executor import make_executor
from opendojo.service.store import default_url, open_store
from opendojo.service.tokens import admin_token

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("~/.opendojo/service")
DEFAULT_PORT = 8700


def data_dir_of(path: str | None) -> Path:
    """The service's data folder (created private to this user)."""
    d = (Path(path) if path else DEFAULT_DATA_DIR).expanduser().resolve()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def _hold_lock(data_dir: Path):
    # One server per data folder: two dispatchers over one SQLite queue could both start a job.
    lock = open(data_dir / "serve.lock", "w")  # noqa: SIM115 (held until the process exits)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UsageError(f"--data-dir: {str(data_dir)!r} is already served by another `dojo serve`") from None
    return lock


def build_state(data_dir: Path, db: str | None, slots: int, executor: str,
                grace_s: float = DEFAULT_GRACE_S, ray_address: str | None = None) -> ServiceState:
    store = open_store(db or default_url(data_dir))
    runner = make_executor(executor, ray_address=ray_address, grace_s=grace_s)
    dispatcher = Dispatcher(store, runner, data_dir, slots=slots, grace_s=grace_s)
    return ServiceState(store, dispatcher, admin_token(data_dir), executor)


def _check_bindable(host: str, port: int) -> None:
    """Fail with one OSError naming the address before anything starts, if it is taken or not ours
    (uvicorn itself would log the error, then exit with its own status 3)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from None


def serve(data_dir: Path, *, db: str | None, host: str, port: int, slots: int, executor: str,
          grace_s: float = DEFAULT_GRACE_S, ray_address: str | None = None) -> None:
    """Run the service until interrupted (SIGINT/SIGTERM stop the server; jobs keep running)."""
    import uvicorn

    # SQLite: one server per folder. PostgreSQL: replicas may share the folder and the queue (row locks).
    lock = _hold_lock(data_dir) if not (db or "").startswith("postgresql") else None
    _check_bindable(host, port)
    state = build_state(data_dir, db, slots, executor, grace_s, ray_address)
    log.info("dojo serve: http://%s:%d (data %s, %d slot(s), executor %s; admin token in %s)",
                host, port, data_dir, slots, executor, data_dir / "admin.token")
    uvicorn.run(create_app(state), host=host, port=port, log_level="warning", access_log=False)
    if lock is not None:
        lock.close()
