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
A state holding NaN/Inf is never written, and one read back is damaged: :func:`load_resumable` then
falls back to the newest older checkpoint that loads, with a warning naming the damaged one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from opendojo.train.durable import fsync_path, naming_path

__all__ = [
    "CheckpointError",
    "DamagedCheckpointError",
    "LoadedCheckpoint",
    "NonFiniteStateError",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_resumable",
    "non_finite_tensors",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

FORMAT = "opendojo-checkpoint/1"
_STEP_DIR = re.compile(r"^step_(\d{8})$")
_FILES = ("model.safetensors", "trainer.safetensors", "trainer.json")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, incomplete, or from another model."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint whose files are missing, corrupt or hold NaN/Inf: an older one may still be good."""


class NonFiniteStateError(RuntimeError):
    """Refused to checkpoint a model or optimizer state holding NaN or Inf."""


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


def _cpu(t: torch.Tensor) -> torch.Tensor:
    # safetensors wants contiguous tensors that share no storage; clone to guarantee both.
    return t.detach().to("cpu").contiguous().clone()


def non_finite_tensors(tensors: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``tensors`` (nested dicts allowed) holding NaN or Inf."""
    bad = []
    for name, value in tensors.items():
        if isinstance(value, dict):
            bad += [f"{name}/{inner}" for inner in non_finite_tensors(value)]
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and not value.isfinite().all():
            bad.append(str(name))
    return bad


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


def _step_of(path: Path) -> int:
    return int(_STEP_DIR.match(path.name).group(1))


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders under ``root`` (``step_NNNNNNNN``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)), key=_step_of)


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
    """Write ``root/step_<step>`` atomically, then delete the checkpoints of later steps (a timeline this
    run abandoned by resuming from an earlier one) and all but the newest ``keep``.

    ``optimizer_state`` is a full optimizer state dict keyed by parameter name (as
    ``torch.distributed.checkpoint.state_dict.get_state_dict`` returns it); ``rng_states`` holds one
    dict of RNG-state tensors per rank; ``signature`` identifies the model (checked on load). Raises
    :class:`NonFiniteStateError` (writing nothing) if a weight or optimizer tensor holds NaN or Inf, and
    ``OSError`` naming the folder if the disk fails; a failed write leaves no temporary folder.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    bad = non_finite_tensors(model_state) + non_finite_tensors(optimizer_state["state"])
    if bad:
        raise NonFiniteStateError(f"refusing to checkpoint step {step}: NaN/Inf in {', '.join(bad[:5])}")
    root = Path(root)
    final = root / f"step_{step:08d}"
    with naming_path(final):
        root.mkdir(parents=True, exist_ok=True)
        for pattern in (".tmp-step_*", ".del-step_*", ".old-step_*"):  # left by a killed writer
            for stale in root.glob(pattern):
                shutil.rmtree(stale, ignore_errors=True)
        tensors, optim_meta = _flatten_optimizer(optimizer_state)
        for rank, states in enumerate(rng_states):
            tensors.update({f"rng/{rank}/{name}": _cpu(t) for name, t in states.items()})
        trainer_json = {"step": step, "optimizer": optim_meta, **trainer_state}
        tmp = root / f".tmp-{final.name}-{os.getpid()}"
        tmp.mkdir()
        try:
            _write_files(tmp, step, signature, model_state, tensors, trainer_json)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _move_into_place(root, tmp, final)
        _prune(root, step, keep)
    return final


def _write_files(
    tmp: Path, step: int, signature: dict, model_state: dict, tensors: dict, trainer_json: dict
) -> None:
    """The four files of a checkpoint in ``tmp``, each fsynced; the manifest (with the hashes) last."""
    _save_tensors(
        {k: _cpu(v) for k, v in model_state.items()},
        tmp / "model.safetensors",
        {"format": FORMAT, "signature": json.dumps(signature, sort_keys=True)},
    )
    _save_tensors(tensors, tmp / "trainer.safetensors", {"format": FORMAT})
    (tmp / "trainer.json").write_text(json.dumps(trainer_json, indent=1, sort_keys=True))
    manifest = {
        "format": FORMAT,
        "step": step,
        "signature": signature,
        "sha256": {name: _sha256(tmp / name) for name in _FILES},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    for name in (*_FILES, "manifest.json"):
        fsync_path(tmp / name)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    try:
        save_file(tensors, path, metadata=metadata)
    except SafetensorError as e:
        # safetensors reports a failed write (a full disk) as text: give it back its errno, as an OSError.
        if found := re.search(r"os error (\d+)", str(e)):
            code = int(found.group(1))
            raise OSError(code, os.strerror(code)) from e
        raise


def _move_into_place(root: Path, tmp: Path, final: Path) -> None:
    if final.exists():  # a re-run of a step after resume: swap the old folder out, never leave none
        old = root / f".old-{final.name}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)
    fsync_path(root)


def _prune(root: Path, step: int, keep: int) -> None:
    found = list_checkpoints(root)
    later = [p for p in found if _step_of(p) > step]
    older = [p for p in found if _step_of(p) <= step]
    for stale in later + older[:-keep]:
        # Rename first: a writer killed while deleting leaves a hidden folder, never half a checkpoint.
        doomed = root / f".del-{stale.name}-{os.getpid()}"
        os.rename(stale, doomed)
        shutil.rmtree(doomed)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DamagedCheckpointError(
            f"checkpoint {str(path.parent)!r} is incomplete: {what} {path.name} is missing"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DamagedCheckpointError(
            f"checkpoint {str(path.parent)!r} is corrupt: {path.name} is not JSON ({e})"
        ) from None
    if not isinstance(data, dict):
        raise DamagedCheckpointError(
            f"checkpoint {str(path.parent)!r} is corrupt: {path.name} is not a JSON object"
        )
    return data


def _describe(signature: dict[str, Any], other: dict[str, Any]) -> str:
    keys = sorted(set(signature) | set(other))
    diffs = [
        f"{k}: checkpoint {other.get(k)!r} vs this run {signature.get(k)!r}"
        for k in keys
        if signature.get(k) != other.get(k)
    ]
    return "; ".join(diffs)


def _verify(path: Path, signature: dict[str, Any] | None) -> None:
    """Check the manifest, every file's hash and the signature, reading no tensor."""
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
            raise DamagedCheckpointError(f"checkpoint {str(path)!r} is incomplete: {name} is missing")
        if _sha256(file) != manifest.get("sha256", {}).get(name):
            raise DamagedCheckpointError(
                f"checkpoint {str(path)!r} is corrupt: {name} does not match its SHA-256 in manifest.json"
            )
    if signature is not None and manifest.get("signature") != signature:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written for another model or recipe "
            f"({_describe(signature, manifest.get('signature') or {})})"
        )


def load_checkpoint(path: str | Path, signature: dict[str, Any] | None = None) -> LoadedCheckpoint:
    """Load and verify a checkpoint folder. With ``signature``, refuse one written for another model.

    Raises :class:`CheckpointError` naming the folder and the problem: :class:`DamagedCheckpointError` for
    a missing file, a hash mismatch, unreadable safetensors or NaN/Inf values; the base class for a
    signature mismatch or no such folder. Uses only JSON and safetensors: nothing is unpickled.
    """
    path = Path(path)
    _verify(path, signature)
    try:
        model_state = load_file(path / "model.safetensors")
        tensors = load_file(path / "trainer.safetensors")
    except (SafetensorError, ValueError) as e:
        raise DamagedCheckpointError(f"checkpoint {str(path)!r} is corrupt: {e}") from None
    bad = non_finite_tensors(model_state) + non_finite_tensors(tensors)
    if bad:
        raise DamagedCheckpointError(f"checkpoint {str(path)!r} holds NaN/Inf in {', '.join(bad[:5])}")
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


def load_resumable(root: str | Path, signature: dict[str, Any]) -> LoadedCheckpoint | None:
    """The newest checkpoint under ``root`` that loads, or None when there is none at all.

    A damaged newer checkpoint is skipped with a warning naming it; a checkpoint of another model stops
    the search (every older one was written by the same run). Raises :class:`CheckpointError` when every
    checkpoint is damaged.
    """
    found = list_checkpoints(root)
    problems = []
    for path in reversed(found):
        try:
            return load_checkpoint(path, signature)
        except DamagedCheckpointError as e:
            problems.append(str(e))
            log.warning("%s; trying the checkpoint before it", e)
    if problems:
        raise DamagedCheckpointError(
            f"no usable checkpoint in {str(root)!r}: {'; '.join(problems)} "
            "(pick one with --checkpoint, or start another --out)"
        )
    return None
