"""The web dashboard at ``/``: server-rendered pages (Jinja2, autoescaped) over the same store as ``/v1``.

Sign-in takes a tenant's (or the admin's) token and keeps it in an HttpOnly, SameSite=Strict cookie:
scripts cannot read it and other sites cannot send it, and, since the store checks it on every request
exactly as a bearer token, any replica behind a proxy accepts it and a rotated or disabled token stops
working at once. Pages refresh their live parts by fetching server-rendered fragments (escaped here, not
in the browser) and the metrics JSON that ``static/dashboard.js`` draws as SVG curves. Every asset is
served from ``static/``; the Content-Security-Policy allows nothing else.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from opendojo.service import jobview
from opendojo.service.api import ApiError, Caller, ServiceState, caller_of, cancel_job, own_job, submit_job
from opendojo.service.capacity import admin_overview, job_quotes, usage_vs_quota
from opendojo.service.schema import FINAL_STATES
from opendojo.service.submission import MAX_BODY_BYTES, FieldError

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "dojo_session"
LOG_TAIL_BYTES = 4096
#: Only this server's own files: no CDN, no inline script, no framing by other sites.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
_env.filters["duration"] = lambda s: "-" if s is None else (
    f"{s:.2g} s" if s < 10 else f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200
    else f"{s / 3600:.1f} h")


def shipped_configs() -> dict[str, Path]:
    """The repository's ``configs/*.toml`` by stem (empty when the package runs without its checkout)."""
    root = HERE.parents[2] / "configs"
    return {p.stem: p for p in sorted(root.glob("*.toml"))} if root.is_dir() else {}


def _page(name: str, status: int = 200, **values) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**values), status_code=status,
                        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})


def _signed_in(request: Request) -> Caller | None:
    token = request.cookies.get(COOKIE, "")
    return caller_of(request.app.state.service, token) if token else None


def _to_signin() -> RedirectResponse:
    return RedirectResponse("/signin", status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as its first value per field (1 MiB at most)."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise FieldError("body", f"body: {len(body)} bytes; allowed: at most {MAX_BODY_BYTES} (1 MiB)")
    fields = parse_qs(body.decode(errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def mount_dashboard(app: FastAPI, state: ServiceState) -> None:
    """Add the dashboard's pages, fragments and static files to ``app``."""
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _add_session_routes(app)
    _add_tenant_routes(app, state)
    _add_job_routes(app, state)
    _add_admin_routes(app, state)


def _add_session_routes(app: FastAPI) -> None:
    @app.get("/signin", include_in_schema=False)
    def signin_page(request: Request):
        return _page("signin.html", caller=None)

    @app.post("/signin", include_in_schema=False)
    async def signin(request: Request):
        token = (await _form(request)).get("token", "").strip()
        if caller_of(request.app.state.service, token) is None:
            return _page("signin.html", 401, caller=None,
                         error="token: unknown, rotated or disabled; ask the admin for yours")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                            secure=request.headers.get("x-forwarded-proto") == "https")
        return response

    @app.post("/signout", include_in_schema=False)
    def signout():
        response = _to_signin()
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response


def _add_tenant_routes(app: FastAPI, state: ServiceState) -> None:
    store = state.store

    @app.get("/", include_in_schema=False)
    def home(request: Request):
        caller = _signed_in(request)
        if caller is None:
            return _to_signin()
        if caller.admin:
            return RedirectResponse("/admin", status_code=303)
        return _page("home.html", caller=caller, usage=usage_vs_quota(store, caller.tenant),
                     jobs=_job_rows(state, caller.tenant))

    @app.get("/fragments/jobs", include_in_schema=False)
    def jobs_fragment(request: Request):
        caller = _signed_in(request)
        if caller is None or caller.admin:
            return Response(status_code=401)
        return _page("_jobs.html", jobs=_job_rows(state, caller.tenant))

    @app.get("/submit", include_in_schema=False)
    def submit_page(request: Request):
        caller = _signed_in(request)
        if caller is None or caller.admin:
            return _to_signin()
        return _page("submit.html", caller=caller, configs=list(shipped_configs()), form={})

    @app.post("/submit", include_in_schema=False)
    async def submit(request: Request):
        caller = _signed_in(request)
        if caller is None or caller.admin:
            return _to_signin()
        form = await _form(request)
        try:
            job = submit_job(store, caller.tenant, _submission(form))
        except (FieldError, ApiError) as e:
            return _page("submit.html", 400 if isinstance(e, FieldError) else e.status, caller=caller,
                         configs=list(shipped_configs()), form=form, error=str(e.args[0]))
        return RedirectResponse(f"/jobs/{job['id']}", status_code=303)


def _submission(form: dict[str, str]) -> dict:
    """The ``POST /v1/jobs`` body a submit form stands for (the same checks then apply)."""
    text = form.get("config_text", "").strip()
    if not text:
        shipped = shipped_configs()
        choice = form.get("shipped", "")
        if choice not in shipped:
            raise FieldError("config", f"config: pick one of {', '.join(shipped) or '(none shipped)'} or "
                                       "paste or load a TOML config")
        text = shipped[choice].read_text()
    raw: dict = {"config": text, "overrides": [x.strip() for x in form.get("overrides", "").splitlines()
                                               if x.strip()]}
    for key in ("steps", "priority"):
        if form.get(key, "").strip():
            value = form[key].strip()
            raw[key] = int(value) if value.lstrip("-").isdigit() else value
    for key in ("precision", "name"):
        if form.get(key, "").strip():
            raw[key] = form[key].strip()
    return raw


def _job_rows(state: ServiceState, tenant: dict) -> list[dict]:
    """The tenant's jobs, newest first, each with its progress (active ones read their metrics)."""
    rows = []
    for job in state.store.jobs_of(tenant["id"], limit=200):
        view = jobview.summary(job)
        if job["state"] not in FINAL_STATES:
            view["progress"] = jobview.progress(job, state.dispatcher.job_dir(job["id"]) / "run")
        rows.append(view)
    return rows


def _job_context(state: ServiceState, job: dict) -> dict:
    jdir = state.dispatcher.job_dir(job["id"])
    view = jobview.summary(job) | {"progress": jobview.progress(job, jdir / "run")}
    log_path = jdir / "log.txt"
    tail = ""
    if log_path.exists():
        with open(log_path, "rb") as f:
            f.seek(max(0, log_path.stat().st_size - LOG_TAIL_BYTES))
            tail = f.read().decode(errors="replace")
    files = jobview.artifacts(jdir / "run", jdir)
    return {"job": view, "log_tail": tail, "final": job["state"] in FINAL_STATES,
            "artifacts": [{"name": k, "bytes": p.stat().st_size} for k, p in files.items()]}


def _add_job_routes(app: FastAPI, state: ServiceState) -> None:
    store = state.store

    def owned(request: Request, job_id: str) -> tuple[Caller | None, dict | None]:
        caller = _signed_in(request)
        if caller is None or caller.admin:
            return caller, None
        try:
            return caller, own_job(store, job_id, caller.tenant)
        except ApiError:
            return caller, None

    @app.get("/jobs/{job_id}", include_in_schema=False)
    def job_page(request: Request, job_id: str):
        caller, job = owned(request, job_id)
        if caller is None:
            return _to_signin()
        if job is None:
            return _page("missing.html", 404, caller=caller, job_id=job_id)
        return _page("job.html", caller=caller, quotes=job_quotes(job), **_job_context(state, job))

    @app.get("/jobs/{job_id}/panel", include_in_schema=False)
    def job_panel(request: Request, job_id: str):
        caller, job = owned(request, job_id)
        if job is None:
            return Response(status_code=401 if caller is None else 404)
        return _page("_job_panel.html", **_job_context(state, job))

    @app.get("/jobs/{job_id}/metrics.json", include_in_schema=False)
    def job_metrics(request: Request, job_id: str):
        caller, job = owned(request, job_id)
        if job is None:
            return Response(status_code=401 if caller is None else 404)
        records = jobview.read_metrics(state.dispatcher.job_dir(job_id) / "run")
        keep = [{k: r.get(k) for k in ("kind", "step", "loss", "occupancy_iou")} for r in records
                if r.get("kind") in ("train", "eval")]
        return JSONResponse({"state": job["state"], "steps": job["steps"], "records": keep},
                            headers={"Cache-Control": "no-store"})

    @app.get("/jobs/{job_id}/files/{name:path}", include_in_schema=False)
    def job_file(request: Request, job_id: str, name: str):
        caller, job = owned(request, job_id)
        if job is None:
            return Response(status_code=401 if caller is None else 404)
        jobview.check_artifact_name(name)
        jdir = state.dispatcher.job_dir(job_id)
        path = jobview.artifacts(jdir / "run", jdir).get(name)
        return Response(status_code=404) if path is None else FileResponse(path, filename=Path(name).name)

    @app.post("/jobs/{job_id}/cancel", include_in_schema=False)
    def job_cancel(request: Request, job_id: str):
        caller, job = owned(request, job_id)
        if job is None:
            return _to_signin() if caller is None else Response(status_code=404)
        cancel_job(store, state.dispatcher, job)
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)


def _add_admin_routes(app: FastAPI, state: ServiceState) -> None:
    @app.get("/admin", include_in_schema=False)
    def admin(request: Request):
        caller = _signed_in(request)
        if caller is None:
            return _to_signin()
        if not caller.admin:
            return _page("missing.html", 403, caller=caller, job_id=None,
                         message="This page is for the service's admin token.")
        return _page("admin.html", caller=caller, **admin_overview(state))
