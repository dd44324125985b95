"""Everything a run needs before its first step, built and checked before anything is written: the process
group, the data, the network with its recipe, the checkpoint to resume from, the optimizer and the batch
stream (:func:`prepare_run`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from opendojo.data.render import ground_grid
from opendojo.errors import UsageError
from opendojo.models import PRESETS, FSDConfig, fsd_net
from opendojo.train import distributed as D
from opendojo.train.batches import BatchStream, DataBundle, first_batch_labels, open_datasets
from opendojo.train.checkpoint import CheckpointError, LoadedCheckpoint, latest_checkpoint
from opendojo.train.config import Config
from opendojo.train.precision import Precision, apply_precision
from opendojo.train.snapshot import restore_run_state, resume_point

__all__ = ["RunParts", "build_model", "model_config_for", "prepare_run"]


@dataclass
class RunParts:
    """A run ready for its first step."""

    ctx: D.DistContext
    data: DataBundle
    model: nn.Module
    precision: Precision
    optimizer: torch.optim.Optimizer
    stream: BatchStream
    signature: dict[str, Any]
    start: int  # steps already done (0, or the step of the checkpoint resumed from)
    previous: Path | None  # the checkpoint resumed from


def model_config_for(config: Config, data: DataBundle) -> FSDConfig:
    """The network shape: the preset, with cameras/frames/sizes taken from the data."""
    overrides: dict[str, Any] = {
        "cameras": data.cameras,
        "frames": data.frames,
        "image_size": data.image_size,
        "occupancy_grid": data.grid,
        "horizon": data.horizon,
        "trajectory_dt_s": data.dt_s,
    }
    if config.model.dim:
        overrides["dim"] = config.model.dim
    try:
        return replace(PRESETS[config.model.preset], **overrides)
    except ValueError as e:
        raise UsageError(f"config [model] does not fit the data ({data.describe()}): {e}") from None


def build_model(model_config: FSDConfig, precision: str, device: torch.device) -> tuple[nn.Module, Precision]:
    """The network on ``device`` with the recipe applied (not yet wrapped in DDP/FSDP)."""
    model = fsd_net(model_config)
    if model_config.ground_lift:  # the synthetic rig's geometry (front, left, right, ... cameras)
        model.set_ground_grid(torch.from_numpy(ground_grid(model_config.cameras, model_config.image_size)))
    return apply_precision(model.to(device), precision, device)


def _signature(model_config: FSDConfig, precision: str) -> dict[str, Any]:
    return {
        "model": "FSDNet",
        "config": asdict(model_config) | {"backbone_channels": list(model_config.backbone_channels)},
        "precision": precision,
    }


def _make_optimizer(model: nn.Module, config: Config) -> torch.optim.AdamW:
    t = config.train
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # biases and norm gains are not decayed
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2))


def _set_output_priors(model: nn.Module, data: DataBundle, batch_size: int, ctx: D.DistContext) -> None:
    """Start the heads at the base rates of the first global training batches (the same on every rank and
    for any number of ranks: the sums are all-reduced)."""
    target = first_batch_labels(data, batch_size)
    occ = target["occupancy"].double().flatten(0, -3)  # [frames, G, G]
    g = occ.shape[-1]
    counts = [occ.shape[0], target["speed"].double().sum(), target["speed"].numel()]
    sums = D.all_reduce_sum(torch.cat([occ.sum(0).flatten(), torch.tensor(counts, dtype=torch.float64)]), ctx)
    frames, speed, n = sums[g * g :].tolist()
    model.set_output_priors(occupancy_rate=(sums[: g * g] / frames).view(g, g), speed_mps=speed / n)


def _check_start(config: Config, ctx: D.DistContext, out_dir: Path, resume: bool) -> int:
    """The per-rank batch; refuses a batch that does not split over the ranks and a run folder that would
    be overwritten."""
    t = config.train
    if t.batch_size % ctx.world_size:
        raise UsageError(
            f"config key train.batch_size: got {t.batch_size}; allowed: a multiple of the number of "
            f"processes ({ctx.world_size})"
        )
    previous = latest_checkpoint(out_dir / "checkpoints")
    if previous is not None and not resume:
        raise UsageError(
            f"--out: run folder {str(out_dir)!r} already holds checkpoints ({previous.name}); pass "
            f"--resume to continue it, or choose another --out"
        )
    return t.batch_size // ctx.world_size


def _load_weights(model: nn.Module, ckpt: LoadedCheckpoint, steps: int) -> None:
    if ckpt.step > steps:
        raise UsageError(
            f"--steps: checkpoint {str(ckpt.path)!r} is at step {ckpt.step}, past train.steps={steps}; "
            f"pass --steps {ckpt.step} or more to continue it"
        )
    try:
        model.load_state_dict(ckpt.model_state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {str(ckpt.path)!r} does not fit this model: {e}") from None


def prepare_run(
    config: Config, out_dir: Path, *, resume: bool, checkpoint: str | Path | None = None
) -> RunParts:
    """Join the process group, open the data, build the model and optimizer, and load the checkpoint to
    resume from (``checkpoint``, or with ``resume`` the newest valid one in ``out_dir``). Writes nothing."""
    ctx = D.init_distributed(config.train.device)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    per_rank = _check_start(config, ctx, out_dir, resume or checkpoint is not None)
    data = open_datasets(config.data, ctx.rank, ctx.world_size, per_rank)
    model_config = model_config_for(config, data)
    signature = _signature(model_config, config.train.precision)
    torch.manual_seed(config.train.seed)  # identical initial weights on every rank
    model, precision = build_model(model_config, config.train.precision, ctx.device)
    ckpt = resume_point(out_dir, checkpoint, signature, ctx.world_size) if resume or checkpoint else None
    if ckpt is not None:
        _load_weights(model, ckpt, config.train.steps)
    else:
        _set_output_priors(model, data, per_rank, ctx)
    model = D.wrap_model(model, ctx, config.train.fsdp)
    optimizer = _make_optimizer(model, config)
    stream = BatchStream(data, per_rank, config.data.num_workers, ctx.device)
    if ckpt is not None:
        restore_run_state((model, optimizer, stream), ckpt, ctx)
    start, previous = (ckpt.step, ckpt.path) if ckpt else (0, None)
    return RunParts(ctx, data, model, precision, optimizer, stream, signature, start, previous)
