"""opendojo.service — Dojo as a service: tenants submit training jobs over HTTP; the service queues,
schedules, runs, preempts and resumes them as ``dojo train`` processes, and meters them in Dojo terms.

    dojo serve --slots 2                          # API on 127.0.0.1:8700, docs at /docs
    dojo service tenant add team-a                # prints team-a's token once
    DOJO_TOKEN=... dojo jobs submit configs/tiny.toml --steps 50 --wait

Layers: ``api`` (FastAPI) → ``store`` (SQLAlchemy + Alembic) ← ``dispatcher`` → ``scheduler`` (a pure
function) and ``executor`` (local processes). docs/service.md has the state machine and security model.
The names below load on first use, so ``dojo`` starts without importing FastAPI or SQLAlchemy.
"""

import importlib

_EXPORTS = {
    "Client": "opendojo.service.client",
    "JobView": "opendojo.service.scheduler",
    "Plan": "opendojo.service.scheduler",
    "Store": "opendojo.service.store",
    "create_app": "opendojo.service.api",
    "open_store": "opendojo.service.store",
    "plan": "opendojo.service.scheduler",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'opendojo.service' has no attribute {name!r}")
