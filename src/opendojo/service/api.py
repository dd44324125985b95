"""The HTTP API (FastAPI): ``/v1`` for tenants and the admin, OpenAPI docs at ``/docs``.

Every ``/v1`` call but ``health`` carries ``Authorization: Bearer TOKEN``: a tenant's token, or the
admin token from ``DIR/admin.token``. A missing, unknown or disabled token answers 401. A tenant sees
only its own jobs: another tenant's job id answers 404, exactly as an id that does not exist.
Errors are JSON ``{"error": "...", "field": "..."}`` naming the field.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from opendojo import __version__
from opendojo.errors import UsageError
from opendojo.service import jobview, quotes
from opendojo.service.dispatcher import Dispatcher
from opendojo.service.schema import CANCELLED, FINAL_STATES, PREEMPTED, QUEUED, RUNNING
from opendojo.service.store import Store
from opendojo.service.submission import MAX_BODY_BYTES, FieldError, check_submission, parse_body


class ApiError(Exception):
    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


@dataclass
class Caller:
    tenant: dict | None  # None for the admin
    admin: bool = False


@dataclass
class ServiceState:
    store: Store
    dispatcher: Dispatcher
    admin_token: str
    executor_name: str = "local"


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, "id", f"id: no job {job_id!r} for this tenant")


async def _read_limited(request: Request) -> bytes:
    """The body, refused with 413 past 1 MiB whether or not a Content-Length was sent."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "body", f"body: {declared} bytes; allowed: at most {MAX_BODY_BYTES} (1 MiB)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "body", f"body: over {MAX_BODY_BYTES} bytes (1 MiB); allowed: at most that")
        chunks.append(chunk)
    return b"".join(chunks)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return JSONResponse({"error": e.message, "field": e.field}, status_code=e.status)

    @app.exception_handler(UsageError)
    async def _usage_error(request: Request, e: UsageError):
        field = getattr(e, "field", str(e).split(":")[0])
        return JSONResponse({"error": str(e), "field": field}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        field = ".".join(str(x) for x in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": f"{field}: {first.get('msg', 'invalid')}", "field": field},
                            status_code=400)


def create_app(state: ServiceState, *, run_dispatcher: bool = True) -> FastAPI:
    """The ASGI app; with ``run_dispatcher`` its lifespan runs the dispatcher in a background thread."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stop = threading.Event()
        thread = threading.Thread(target=state.dispatcher.run_forever, args=(stop,), daemon=True)
        if run_dispatcher:
            thread.start()
        # The simulator captures a workload once per process (seconds): do it now, not in a first submit.
        threading.Thread(target=_warm_simulator, daemon=True).start()
        yield
        stop.set()
        if run_dispatcher:
            thread.join(timeout=10)

    app = FastAPI(title="OpenDojo training service", version=__version__, lifespan=lifespan)
    app.state.service = state
    _install_errors(app)
    _add_routes(app, state)
    from opendojo.service.dashboard import mount_dashboard  # the web dashboard at /

    mount_dashboard(app, state)
    return app


def _warm_simulator() -> None:
    try:
        quotes.tile_step_seconds("tiny", 4, "fp32")
    except Exception:  # only a warm-up: a failure here shows again, with its message, on a real submit
        logging.getLogger(__name__).debug("simulator warm-up failed", exc_info=True)


def _caller(request: Request) -> Caller:
    state: ServiceState = request.app.state.service
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "authorization", "authorization: missing; send 'Authorization: Bearer TOKEN'")
    caller = caller_of(state, token)
    if caller is None:
        raise ApiError(401, "authorization", "authorization: unknown, rotated or disabled token")
    return caller


def caller_of(state: ServiceState, token: str) -> Caller | None:
    """Who ``token`` is (the admin or an enabled tenant), or None; the API and the dashboard's cookie
    both come here."""
    if hmac.compare_digest(token.encode(), state.admin_token.encode()):
        return Caller(None, admin=True)
    tenant = state.store.tenant_for_token(token)
    return None if tenant is None else Caller(tenant)


CallerDep = Annotated[Caller, Depends(_caller)]


def _tenant(caller: CallerDep) -> dict:
    if caller.tenant is None:
        raise ApiError(403, "authorization", "authorization: the admin token has no jobs; use a tenant's")
    return caller.tenant


TenantDep = Annotated[dict, Depends(_tenant)]


def _add_routes(app: FastAPI, state: ServiceState) -> None:
    store, dispatcher = state.store, state.dispatcher

    @app.get("/v1/health")
    def health() -> dict:
        return {"status": "ok", "version": __version__, "slots": dispatcher.slots,
                "executor": state.executor_name}

    @app.post("/v1/jobs", status_code=201)
    async def submit(request: Request, tenant: TenantDep) -> dict:
        raw = parse_body(await _read_limited(request))
        return await run_in_threadpool(submit_job, store, tenant, raw)

    @app.get("/v1/jobs")
    def list_jobs(tenant: TenantDep, limit: int = 100) -> list[dict]:
        """The tenant's newest ``limit`` jobs (1..1000), newest first."""
        if not 1 <= limit <= 1000:
            raise ApiError(400, "limit", f"limit: got {limit}; allowed: an integer in 1..1000")
        return [jobview.summary(j) for j in store.jobs_of(tenant["id"], limit)]

    @app.get("/v1/jobs/{job_id}")
    def show(job_id: str, tenant: TenantDep) -> dict:
        job = own_job(store, job_id, tenant)
        run_dir = dispatcher.job_dir(job_id) / "run"
        return jobview.summary(job) | {"progress": jobview.progress(job, run_dir)}

    @app.get("/v1/jobs/{job_id}/metrics")
    def metrics(job_id: str, tenant: TenantDep) -> list[dict]:
        own_job(store, job_id, tenant)
        return jobview.read_metrics(dispatcher.job_dir(job_id) / "run")

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel(job_id: str, tenant: TenantDep) -> dict:
        return jobview.summary(cancel_job(store, dispatcher, own_job(store, job_id, tenant)))

    _add_file_routes(app, state)
    _add_account_routes(app, state)


def own_job(store: Store, job_id: str, tenant: dict) -> dict:
    job = store.job(job_id, tenant["id"])
    if job is None:
        raise _not_found(job_id)
    return job


def submit_job(store: Store, tenant: dict, raw: dict) -> dict:
    quota = tenant["quota_tile_hours"]
    if quota is not None:
        used = store.usage(tenant["id"])[0]["tile_hours"]
        if used >= quota:
            raise ApiError(429, "quota", f"quota: tenant {tenant['name']!r} has used {used:.6g} of its "
                                         f"{quota:.6g} tile-hours; ask the admin to raise it")
    values, config = check_submission(raw, tenant["max_priority"], store.dataset_paths())
    values["tile_step_s"] = _tile_step_s(config, values["precision"])
    return jobview.summary(store.add_job(tenant["id"], **values))


def _tile_step_s(config, precision: str) -> float | None:
    try:
        return quotes.tile_step_seconds(config.model.preset, config.train.batch_size, precision)
    except ValueError:  # the simulator cannot place it: the job runs, metered as 0 tile-hours
        return None


def cancel_job(store: Store, dispatcher: Dispatcher, job: dict) -> dict:
    import time

    if job["state"] in (QUEUED, PREEMPTED):
        store.transition(job["id"], (QUEUED, PREEMPTED), state=CANCELLED, finished_at=time.time(),
                         message="cancelled by the tenant")
    elif job["state"] == RUNNING:
        dispatcher.request_stop(job, "cancel")
    return store.job(job["id"])


def _add_file_routes(app: FastAPI, state: ServiceState) -> None:
    store, dispatcher = state.store, state.dispatcher

    @app.get("/v1/jobs/{job_id}/logs")
    def logs(job_id: str, tenant: TenantDep, follow: bool = False):
        own_job(store, job_id, tenant)
        path = dispatcher.job_dir(job_id) / "log.txt"
        if not follow:
            return StreamingResponse(iter([path.read_bytes() if path.exists() else b""]),
                                     media_type="text/plain")
        return StreamingResponse(_follow(store, job_id, path), media_type="text/plain")

    @app.get("/v1/jobs/{job_id}/artifacts")
    def list_artifacts(job_id: str, tenant: TenantDep) -> list[dict]:
        own_job(store, job_id, tenant)
        jdir = dispatcher.job_dir(job_id)
        found = jobview.artifacts(jdir / "run", jdir)
        return [{"name": k, "bytes": p.stat().st_size} for k, p in found.items()]

    @app.get("/v1/jobs/{job_id}/artifacts/{name:path}")
    def download(job_id: str, name: str, tenant: TenantDep):
        own_job(store, job_id, tenant)
        jobview.check_artifact_name(name)
        jdir = dispatcher.job_dir(job_id)
        path = jobview.artifacts(jdir / "run", jdir).get(name)
        if path is None:
            raise ApiError(404, "name", f"name: no artifact {name!r} (see GET /v1/jobs/{job_id}/artifacts)")
        return FileResponse(path, filename=Path(name).name)


async def _follow(store: Store, job_id: str, path: Path):
    """The log from the start, then new bytes as they come, until the job reaches a final state."""
    offset = 0
    while True:
        job = await run_in_threadpool(store.job, job_id)
        if path.exists():
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            offset += len(data)
            if data:
                yield data
        if job is None or job["state"] in FINAL_STATES:
            return
        await asyncio.sleep(0.5)


def _add_account_routes(app: FastAPI, state: ServiceState) -> None:
    store = state.store

    @app.get("/v1/usage")
    def usage(caller: CallerDep) -> list[dict]:
        return store.usage(None if caller.admin else caller.tenant["id"])

    @app.post("/v1/quotes")
    async def quote(request: Request, caller: CallerDep) -> list[dict]:
        raw = parse_body(await _read_limited(request))
        return await run_in_threadpool(_quote, store, raw)


def _quote(store: Store, raw: dict) -> list[dict]:
    systems = raw.pop("systems", list(quotes.DEFAULT_SYSTEMS))
    if not isinstance(systems, list) or not systems or not all(isinstance(s, str) for s in systems):
        raise FieldError("systems", "systems: expected a non-empty list of system names")
    values, config = check_submission(raw, 1 << 30, store.dataset_paths())
    out = []
    for system in systems:
        try:
            q = quotes.quote_one(config.model.preset, config.train.batch_size, values["precision"],
                                 values["steps"], system)
        except UsageError as e:
            raise FieldError("systems", str(e)) from None
        except ValueError as e:
            q = {"system": system, "error": str(e)}
        out.append(q)
    return out
