"""A live run to and from a checkpoint: the full model and optimizer state, every rank's RNG state and
data position (:func:`save_run_state`), and back (:func:`resume_point`, :func:`restore_run_state`).

Under FSDP gathering the full state is a collective, so every rank calls these; rank 0 writes. A failure
on rank 0 (a full disk, a NaN in the state) is shared with every rank, so all stop together instead of
waiting for a rank that will never arrive.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from opendojo.train import distributed as D
from opendojo.train.batches import BatchStream
from opendojo.train.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    load_checkpoint,
    load_resumable,
    non_finite_tensors,
    save_checkpoint,
)
from opendojo.train.config import Config, config_to_dict
from opendojo.train.step import NonFiniteLossError

__all__ = ["restore_run_state", "resume_point", "save_run_state"]

log = logging.getLogger(__name__)


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_run_state(
    root: Path,
    step: int,
    parts: tuple[nn.Module, torch.optim.Optimizer, BatchStream],
    ctx: D.DistContext,
    config: Config,
    signature: dict[str, Any],
    extra: dict[str, Any],
) -> Path:
    """Checkpoint (model, optimizer, stream) after ``step`` steps into ``root/step_<step>``; every rank
    calls it. ``extra`` (JSON-able) is stored in the trainer state. Raises :class:`NonFiniteLossError`
    (writing nothing) if the state holds NaN/Inf."""
    model, optimizer, stream = parts
    model_state, optim_state = _full_state(model, optimizer)  # collective under FSDP: all ranks call it
    rng = D.gather_objects(_rng_state(ctx.device), ctx)
    data_states = D.gather_objects(stream.state_dict(), ctx)

    def write() -> None:
        bad = non_finite_tensors(model_state) + non_finite_tensors(optim_state["state"])
        if bad:
            raise NonFiniteLossError(
                f"the state after step {step} holds NaN/Inf ({', '.join(bad[:3])}); not checkpointed",
                what="state",
                step=step,
            )
        trainer_state = {"data": data_states, "world_size": ctx.world_size, "config": config_to_dict(config)}
        save_checkpoint(
            root,
            step,
            model_state=model_state,
            optimizer_state=optim_state,
            rng_states=rng,
            signature=signature,
            keep=config.train.keep_checkpoints,
            trainer_state=trainer_state | extra,
        )

    D.on_main(write, ctx)  # also the barrier: no rank goes on before the checkpoint is in place
    return root / f"step_{step:08d}"


def resume_point(
    out_dir: Path, checkpoint: str | Path | None, signature: dict[str, Any], world_size: int
) -> LoadedCheckpoint | None:
    """The checkpoint to resume from: ``checkpoint`` if given, else the newest loadable one in
    ``out_dir/checkpoints`` (a damaged newer one is skipped with a warning), else None. Raises
    :class:`CheckpointError` for one of another model or written by another number of processes."""
    if checkpoint is not None:
        loaded = load_checkpoint(checkpoint, signature)
    else:
        loaded = load_resumable(out_dir / "checkpoints", signature)
    if loaded is None:
        log.info("no checkpoint in %r: starting from scratch", str(out_dir))
    elif loaded.trainer_state.get("world_size") != world_size:
        raise CheckpointError(
            f"checkpoint {str(loaded.path)!r} was written by {loaded.trainer_state.get('world_size')}"
            f" process(es); resume it with the same number (here {world_size})"
        )
    return loaded


def restore_run_state(
    parts: tuple[nn.Module, torch.optim.Optimizer, BatchStream], ckpt: LoadedCheckpoint, ctx: D.DistContext
) -> None:
    """Load the optimizer state, this rank's RNG state and data position (the weights are loaded before
    the model is wrapped, see ``opendojo.train.setup``)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    model, optimizer, stream = parts
    set_optimizer_state_dict(
        model,
        optimizer,
        optim_state_dict=ckpt.optimizer_state,
        options=StateDictOptions(full_state_dict=True),
    )
    _set_rng_state(ckpt.rng_states[ctx.rank], ctx.device)
    stream.load_state_dict(ckpt.trainer_state["data"][ctx.rank])
