"""What a tenant sees of a job: its summary, its progress read from the run folder, its artifacts.

Artifact names are keys of an allow-list built from the run folder, never paths joined from a request,
so no name can reach outside the job's folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

from opendojo.service.submission import FieldError

_PUBLIC = ("id", "name", "state", "priority", "steps", "steps_done", "precision", "submitted_at",
           "started_at", "finished_at", "attempts", "exit_code", "message")


def summary(job: dict) -> dict:
    out = {k: job[k] for k in _PUBLIC}
    out["stopping"] = job["stop_reason"]
    out["usage"] = {"wall_s": job["wall_s"], "cpu_s": job["cpu_s"], "steps": job["steps_done"],
                    "tile_hours": job["tile_hours"], "tile_step_s": job["tile_step_s"]}
    return out


def read_metrics(run_dir: Path, tail_bytes: int | None = None) -> list[dict]:
    """The records of ``metrics.jsonl`` (the last ``tail_bytes`` of it when given)."""
    path = run_dir / "metrics.jsonl"
    try:
        with open(path, "rb") as f:
            if tail_bytes is not None:
                f.seek(max(0, path.stat().st_size - tail_bytes))
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a partial first line of a tail, or a line being written
            continue
    return out


def progress(job: dict, run_dir: Path) -> dict:
    """Current step, ETA (s, from this attempt's rate) and the last train and eval records."""
    records = read_metrics(run_dir, tail_bytes=65536)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    step = train[-1]["step"] if train else job["steps_done"]
    eta = None
    if job["state"] == "running" and len(train) >= 2:
        a, b = train[0], train[-1]
        if b["step"] > a["step"] and b["time_s"] > a["time_s"]:
            eta = (job["steps"] - step) * (b["time_s"] - a["time_s"]) / (b["step"] - a["step"])
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*")) if run_dir.exists() else []
    return {"step": step, "eta_s": eta, "last_train": train[-1] if train else None,
            "last_eval": evals[-1] if evals else None, "checkpoints": ckpts}


def artifacts(run_dir: Path, job_dir: Path) -> dict[str, Path]:
    """Downloadable files: name → path (result, config, metrics, log, plots, the newest checkpoint)."""
    found = {"log.txt": job_dir / "log.txt"}
    for name in ("result.json", "config.json", "metrics.jsonl"):
        found[name] = run_dir / name
    for p in sorted((run_dir / "plots").glob("*.png")):
        found[f"plots/{p.name}"] = p
    ckpts = sorted((run_dir / "checkpoints").glob("step_*"))
    if ckpts:
        for p in sorted(ckpts[-1].iterdir()):
            found[f"checkpoint/{p.name}"] = p
    return {k: v for k, v in found.items() if v.is_file()}


def check_artifact_name(name: str) -> str:
    """``name`` if it could be an artifact; a FieldError for traversal (``..``, absolute, encoded)."""
    decoded = unquote(unquote(name))
    parts = decoded.replace("\\", "/").split("/")
    if decoded.startswith("/") or ".." in parts or "\x00" in decoded or ":" in decoded:
        raise FieldError("name", f"name: {name!r} is not an artifact name; no '..', absolute or encoded "
                                 "paths (see GET /v1/jobs/ID/artifacts)")
    return name
