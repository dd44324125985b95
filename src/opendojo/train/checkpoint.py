"""Checkpoints: atomic, verifiable, and loadable without unpickling anything.

A checkpoint is a folder ``<run>/checkpoints/step_NNNNNNNN/`` holding

- ``model.safetensors``: the full (unsharded) model state dict, weights and buffers (the CFloat
  bias-policy state of ``opendojo.nn`` lives in buffers, so it travels here);
- ``trainer.safetensors``: every other tensor: optimizer moments and step counts
  (``optim/<param>/<key>``) and the per-rank RNG states (``rng/<rank>/<name>``);
- ``trainer.json``: the non-tensor state: step, optimizer param groups, data-loader position per rank,
  the config, anything else JSON-able;
- ``manifest.json``, written last: the format tag, the model signature and the SHA-256 of each file.

The folder is written under a temporary name and renamed into place, so a crash mid-write leaves the
last good checkpoint untouched. Loading checks the manifest, every hash and the model signature before
handing anything back; a corrupt or foreign checkpoint raises ``CheckpointError`` and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = [
    "CheckpointError",
    "LoadedCheckpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
]

FORMAT = "opendojo-checkpoint/1"
_STEP_DIR = re.compile(r"^step_(\d{8})$")
_FILES = ("model.safetensors", "trainer.safetensors", "trainer.json")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, incomplete, or from another model."""


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns. Tensors are on the CPU."""

    path: Path
    step: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    rng_states: list[dict[str, torch.Tensor]]
    trainer_state: dict[str, Any]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cpu(t: torch.Tensor) -> torch.Tensor:
    # safetensors wants contiguous tensors that share no storage; clone to guarantee both.
    return t.detach().to("cpu").contiguous().clone()


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``{"state": {param: {key: value}}, "param_groups": [...]}`` → (tensors, JSON-able rest)."""
    tensors, scalars = {}, {}
    for param, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{param}/{key}"] = _cpu(value)
            else:
                scalars[f"{param}/{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim/"):
            param, key = name[len("optim/") :].rsplit("/", 1)
            state.setdefault(param, {})[key] = value
    for name, value in meta["scalars"].items():
        param, key = name.rsplit("/", 1)
        state.setdefault(param, {})[key] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders under ``root`` (``step_NNNNNNNN``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest checkpoint folder under ``root``, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(
    root: str | Path,
    step: int,
    *,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    rng_states: list[dict[str, torch.Tensor]],
    trainer_state: dict[str, Any],
    signature: dict[str, Any],
    keep: int,
) -> Path:
    """Write ``root/step_<step>`` atomically, then delete all but the newest ``keep`` checkpoints.

    ``optimizer_state`` is a full optimizer state dict keyed by parameter name (as
    ``torch.distributed.checkpoint.state_dict.get_state_dict`` returns it); ``rng_states`` holds one
    dict of RNG-state tensors per rank; ``signature`` identifies the model (checked on load).
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    for pattern in (".tmp-step_*", ".del-step_*", ".old-step_*"):  # left by a killed writer
        for stale in root.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    tmp.mkdir()
    tensors, optim_meta = _flatten_optimizer(optimizer_state)
    for rank, states in enumerate(rng_states):
        tensors.update({f"rng/{rank}/{name}": _cpu(t) for name, t in states.items()})
    save_file(
        {k: _cpu(v) for k, v in model_state.items()},
        tmp / "model.safetensors",
        metadata={"format": FORMAT, "signature": json.dumps(signature, sort_keys=True)},
    )
    save_file(tensors, tmp / "trainer.safetensors", metadata={"format": FORMAT})
    (tmp / "trainer.json").write_text(
        json.dumps({"step": step, "optimizer": optim_meta, **trainer_state}, indent=1, sort_keys=True)
    )
    manifest = {
        "format": FORMAT,
        "step": step,
        "signature": signature,
        "sha256": {name: _sha256(tmp / name) for name in _FILES},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    for name in (*_FILES, "manifest.json"):
        _fsync(tmp / name)
    if final.exists():  # a re-run of a step after resume: swap the old folder out, never leave none
        old = root / f".old-{final.name}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)
    _fsync(root)
    for stale in list_checkpoints(root)[:-keep]:
        # Rename first: a writer killed while deleting leaves a hidden folder, never half a checkpoint.
        doomed = root / f".del-{stale.name}-{os.getpid()}"
        os.rename(stale, doomed)
        shutil.rmtree(doomed)
    return final


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {str(path.parent)!r} is incomplete: {what} {path.name} is missing"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"checkpoint {str(path.parent)!r} is corrupt: {path.name} is not JSON ({e})"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {str(path.parent)!r} is corrupt: {path.name} is not a JSON object")
    return data


def _describe(signature: dict[str, Any], other: dict[str, Any]) -> str:
    keys = sorted(set(signature) | set(other))
    diffs = [
        f"{k}: checkpoint {other.get(k)!r} vs this run {signature.get(k)!r}"
        for k in keys
        if signature.get(k) != other.get(k)
    ]
    return "; ".join(diffs)


def load_checkpoint(path: str | Path, signature: dict[str, Any] | None = None) -> LoadedCheckpoint:
    """Load and verify a checkpoint folder. With ``signature``, refuse one written for another model.

    Raises :class:`CheckpointError` naming the folder and the problem (missing file, hash mismatch,
    unreadable safetensors, signature mismatch). Uses only JSON and safetensors: nothing is unpickled.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a folder")
    manifest = _read_json(path / "manifest.json", "manifest")
    if manifest.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format {manifest.get('format')!r}; this version reads {FORMAT!r}"
        )
    for name in _FILES:
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {str(path)!r} is incomplete: {name} is missing")
        if _sha256(file) != manifest.get("sha256", {}).get(name):
            raise CheckpointError(
                f"checkpoint {str(path)!r} is corrupt: {name} does not match its SHA-256 in manifest.json"
            )
    if signature is not None and manifest.get("signature") != signature:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written for another model or recipe "
            f"({_describe(signature, manifest.get('signature') or {})})"
        )
    try:
        model_state = load_file(path / "model.safetensors")
        tensors = load_file(path / "trainer.safetensors")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: {e}") from None
    meta = _read_json(path / "trainer.json", "trainer state")
    ranks = sorted({int(k.split("/")[1]) for k in tensors if k.startswith("rng/")})
    rng_states = [
        {k.split("/", 2)[2]: v for k, v in tensors.items() if k.startswith(f"rng/{r}/")} for r in ranks
    ]
    optimizer_state = _unflatten_optimizer(tensors, meta.pop("optimizer"))
    return LoadedCheckpoint(
        path=path,
        step=int(meta["step"]),
        model_state=model_state,
        optimizer_state=optimizer_state,
        rng_states=rng_states,
        trainer_state=meta,
    )
