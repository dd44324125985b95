"""What the training loop runs: one optimizer step (:func:`train_step`) and one evaluation pass
(:func:`evaluate`), each a function of the model, a batch and the config that can be read and tested alone.

A step stops the run, before anything non-finite can be saved or hidden, when the loss or the gradient
norm is NaN/Inf (the update is not applied) or when the update itself overflowed the weights (checked
before the recipe's post-step hook: ``dojo_lean`` rounds the weights to CFloat16, whose encoder maps NaN
to its largest value and would hide the divergence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from opendojo.train import distributed as D
from opendojo.train.batches import DataBundle, eval_batches
from opendojo.train.config import Config
from opendojo.train.objectives import TARGETS, MetricSums, task_loss
from opendojo.train.precision import Precision
from opendojo.train.schedule import learning_rate

__all__ = ["NonFiniteLossError", "StepOutcome", "evaluate", "train_step", "weights_finite"]


class NonFiniteLossError(RuntimeError):
    """The loss, the gradient norm or the updated weights became NaN or Inf; the run stopped there.

    ``what`` names the quantity and ``value`` is its value (NaN for weights); the step is 1-based.
    """

    def __init__(self, message: str, *, what: str = "loss", value: float = math.nan, step: int = 0) -> None:
        super().__init__(message)
        self.what, self.value, self.step = what, value, step


@dataclass
class StepOutcome:
    """What one step reports: the total loss and its parts (averaged over ranks), the global gradient
    norm before clipping, and the learning rate used."""

    loss: float
    parts: dict[str, float]
    grad_norm: float
    lr: float


def _stop_if_non_finite(what: str, value: float, step: int) -> None:
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"{what} became {value} at step {step}; training stopped before applying it",
            what=what,
            value=value,
            step=step,
        )


def weights_finite(model: nn.Module, ctx: D.DistContext) -> bool:
    """True when every parameter on every rank is finite (FSDP shards are checked where they live)."""
    local = [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]
    bad = sum(int(not t.detach().isfinite().all()) for t in local)
    return D.all_reduce_sum(torch.tensor([float(bad)]), ctx).item() == 0


def _grad_norm(model: nn.Module, clip: float) -> float:
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip or math.inf)
    if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor summed over the shards
        norm = norm.full_tensor()
    return float(norm)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    batch: tuple[torch.Tensor, dict[str, torch.Tensor]],
    *,
    step: int,
    config: Config,
    ctx: D.DistContext,
) -> StepOutcome:
    """Forward, loss, backward, clip, AdamW update at the scheduled learning rate, the recipe's hook.

    ``batch`` is (frames ``[B, cams, T, 3, H, W]``, targets) of this rank; ``step`` is 0-based. Raises
    :class:`NonFiniteLossError` on every rank together (the values checked are all-reduced).
    """
    frames, target = batch
    t, weights = config.train, {k: getattr(config.loss, k) for k in TARGETS}
    with precision.autocast():
        out = model(frames)
    loss, parts = task_loss(
        out, target, weights, config.loss.occupancy_pos_weight, config.loss.occupancy_soft_iou
    )
    loss.backward()
    # One all-reduce for the logged losses; every rank sees the same values, so all stop together.
    logged = D.all_reduce_sum(torch.stack([loss.detach().float(), *parts.values()]).cpu(), ctx)
    logged /= ctx.world_size
    _stop_if_non_finite("loss", logged[0].item(), step + 1)
    grad_norm = _grad_norm(model, t.grad_clip)
    _stop_if_non_finite("gradient norm", grad_norm, step + 1)
    lr = learning_rate(step, lr=t.lr, min_lr=t.min_lr, warmup_steps=t.warmup_steps, total_steps=t.steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if not weights_finite(model, ctx):
        raise NonFiniteLossError(
            f"weights became NaN/Inf in the update of step {step + 1} (learning rate {lr:g}); training "
            "stopped before saving them",
            what="weights",
            step=step + 1,
        )
    precision.after_step(model)
    return StepOutcome(logged[0].item(), dict(zip(parts, logged[1:].tolist(), strict=True)), grad_norm, lr)


def evaluate(
    model: nn.Module, data: DataBundle, config: Config, ctx: D.DistContext, precision: Precision
) -> dict[str, float]:
    """The eval metrics (and baselines) over ``config.train.eval_batches`` batches per rank, summed over
    ranks; the model is left in the mode it was in."""
    net = getattr(model, "module", model)  # DDP wraps the network; the training mean speed is its buffer
    sums = MetricSums(grid=data.grid, dt_s=data.dt_s, train_speed_mps=float(net.speed_prior_mps))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for frames, target in eval_batches(
            data, config.train.batch_size // ctx.world_size, config.train.eval_batches, ctx.device
        ):
            with precision.autocast():
                out = model(frames)
            sums.add(out, target)
    model.train(was_training)
    sums.load_tensor(D.all_reduce_sum(sums.as_tensor(), ctx))
    return sums.metrics()
