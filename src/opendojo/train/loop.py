"""The training loop: ``train(config, out_dir) -> RunResult``. Read it top to bottom.

One process or many (under torchrun), CPU or CUDA, FP32 / BF16 / CFloat recipes. Per step: fetch a
batch, forward, loss, backward, stop on a non-finite loss, clip, set the learning rate, AdamW step,
the recipe's post-step hook. Every ``log_every`` steps a JSONL record; every ``eval_every`` steps an
evaluation; every ``checkpoint_every`` steps (and at the end) an atomic checkpoint. The run folder layout
is documented in docs/training.md.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from opendojo.models import PRESETS, FSDConfig, fsd_net
from opendojo.train import distributed as D
from opendojo.train.batches import BatchStream, DataBundle, eval_batches, first_batch_labels, open_datasets
from opendojo.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from opendojo.train.config import Config, config_to_dict
from opendojo.train.objectives import MetricSums, task_loss
from opendojo.train.precision import Precision, apply_precision
from opendojo.train.schedule import learning_rate

__all__ = ["NonFiniteLossError", "RunResult", "build_model", "train"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; the run stopped before applying that step."""


@dataclass
class RunResult:
    """What a finished run returns (also written to ``<out>/result.json``)."""

    out_dir: Path
    steps: int
    final_metrics: dict[str, float]
    final_loss: float
    samples_per_s: float
    wall_s: float
    data_wait_fraction: float
    checkpoint: Path
    metrics_path: Path
    plots: list[Path] = field(default_factory=list)
    precision: str = "fp32"
    world_size: int = 1
    cpu_s: float = 0.0  # CPU time of this process (rank 0) over the steps: wall time lies on a shared machine


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
        raise ValueError(f"config [model] does not fit the data ({data.describe()}): {e}") from None


def build_model(model_config: FSDConfig, precision: str, device: torch.device) -> tuple[nn.Module, Precision]:
    """The network on ``device`` with the recipe applied (not yet wrapped in DDP/FSDP)."""
    model = fsd_net(model_config).to(device)
    return apply_precision(model, precision, device)


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


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class _MetricsLog:
    """Append-only JSONL (rank 0 only). On resume, records after the resumed step are dropped first."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None) -> None:
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if resume_step is not None and path.exists():
            keep = [
                line
                for line in path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in keep))
            os.replace(tmp, path)
        elif resume_step is None and path.exists():
            path.unlink()

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def _evaluate(
    model: nn.Module, data: DataBundle, config: Config, ctx: D.DistContext, precision: Precision
) -> dict[str, float]:
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


def _full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _save(
    ckpt_root: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    stream: BatchStream,
    ctx: D.DistContext,
    config: Config,
    signature: dict,
    extra: dict,
) -> Path:
    model_state, optim_state = _full_state(model, optimizer)  # collective under FSDP: all ranks call it
    rng = D.gather_objects(_rng_state(ctx.device), ctx)
    data_states = D.gather_objects(stream.state_dict(), ctx)
    path = ckpt_root / f"step_{step:08d}"
    if ctx.is_main:
        path = save_checkpoint(
            ckpt_root,
            step,
            model_state=model_state,
            optimizer_state=optim_state,
            rng_states=rng,
            signature=signature,
            keep=config.train.keep_checkpoints,
            trainer_state={
                "data": data_states,
                "world_size": ctx.world_size,
                "config": config_to_dict(config),
                **extra,
            },
        )
    D.barrier(ctx)
    return path


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, ckpt: Any) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(
        model,
        optimizer,
        optim_state_dict=ckpt.optimizer_state,
        options=StateDictOptions(full_state_dict=True),
    )


@dataclass
class _Setup:
    """Everything a run needs before its first step, built and verified before anything is written."""

    ctx: D.DistContext
    data: DataBundle
    model: nn.Module
    precision: Precision
    optimizer: torch.optim.Optimizer
    stream: BatchStream
    signature: dict[str, Any]
    start: int
    previous: Path | None  # the checkpoint resumed from


def _setup(config: Config, out_dir: Path, resume: bool) -> _Setup:
    ctx = D.init_distributed(config.train.device)
    t = config.train
    if t.threads:
        torch.set_num_threads(t.threads)
    if t.batch_size % ctx.world_size:
        raise ValueError(
            f"config key train.batch_size={t.batch_size} must be divisible by the number of "
            f"processes ({ctx.world_size})"
        )
    previous = latest_checkpoint(out_dir / "checkpoints")
    if previous is not None and not resume:
        raise ValueError(
            f"run folder {str(out_dir)!r} already holds checkpoints ({previous.name}); pass "
            f"--resume to continue it, or choose another --out"
        )
    per_rank = t.batch_size // ctx.world_size
    data = open_datasets(config.data, ctx.rank, ctx.world_size, per_rank)
    model_config = model_config_for(config, data)
    signature = _signature(model_config, t.precision)
    torch.manual_seed(t.seed)  # identical initial weights on every rank
    model, precision = build_model(model_config, t.precision, ctx.device)
    ckpt = None
    if previous is not None:
        ckpt = load_checkpoint(previous, signature)  # verifies hashes and signature; writes nothing
        if ckpt.step > t.steps:
            raise ValueError(
                f"run folder {str(out_dir)!r} is at step {ckpt.step}, past train.steps={t.steps}; "
                f"pass --steps {ckpt.step} or more to continue it"
            )
        if ckpt.trainer_state.get("world_size") != ctx.world_size:
            raise CheckpointError(
                f"checkpoint {str(previous)!r} was written by {ckpt.trainer_state.get('world_size')}"
                f" process(es); resume it with the same number (here {ctx.world_size})"
            )
        try:
            model.load_state_dict(ckpt.model_state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint {str(previous)!r} does not fit this model: {e}") from None
    else:
        _set_output_priors(model, data, per_rank, ctx)
    model = D.wrap_model(model, ctx, t.fsdp)
    optimizer = _make_optimizer(model, config)
    stream = BatchStream(data, per_rank, config.data.num_workers, ctx.device)
    if ckpt is not None:
        _restore(model, optimizer, ckpt)
        _set_rng_state(ckpt.rng_states[ctx.rank], ctx.device)
        stream.load_state_dict(ckpt.trainer_state["data"][ctx.rank])
    return _Setup(
        ctx,
        data,
        model,
        precision,
        optimizer,
        stream,
        signature,
        start=ckpt.step if ckpt else 0,
        previous=previous,
    )


def _stop_on_non_finite(loss_value: float, step: int, last_ckpt: Path | None, log: _MetricsLog) -> None:
    if math.isfinite(loss_value):
        return
    log.write({"kind": "error", "step": step, "loss": loss_value})
    where = f"the last good checkpoint is {str(last_ckpt)!r}" if last_ckpt else "no checkpoint was written"
    raise NonFiniteLossError(
        f"loss became {loss_value} at step {step}; training stopped before applying it, {where}"
    )


def train(config: Config, out_dir: str | Path, *, resume: bool = False, progress: bool = True) -> RunResult:
    """Train the FSD network as ``config`` says, writing everything into ``out_dir``.

    ``resume=True`` continues from the newest checkpoint in ``out_dir`` (bit-identical on CPU to a run that
    never stopped); with no checkpoint there yet it starts from scratch (so ``torchrun --max-restarts``
    can always pass ``--resume``). Without ``resume``, an ``out_dir`` that already holds checkpoints is
    refused rather than overwritten.

    Raises ``ValueError`` (bad config or data), ``CheckpointError`` (unusable checkpoint; nothing is
    written) and :class:`NonFiniteLossError` (NaN/Inf loss; the last good checkpoint is kept).
    """
    out_dir = Path(out_dir)
    if resume and latest_checkpoint(out_dir / "checkpoints") is None:
        print(f"no checkpoint in {str(out_dir)!r}: starting from scratch", file=sys.stderr)
    s = _setup(config, out_dir, resume)
    finished = _finished_result(out_dir, s.start, config.train.steps)
    if finished is not None:  # resumed a run that had already ended: nothing to do, nothing rewritten
        return finished
    ctx, model, optimizer, stream, precision, t = (
        s.ctx,
        s.model,
        s.optimizer,
        s.stream,
        s.precision,
        config.train,
    )
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(config_to_dict(config), indent=1))
    log = _MetricsLog(out_dir / "metrics.jsonl", ctx.is_main, s.start if s.previous else None)
    weights = {k: getattr(config.loss, k) for k in ("occupancy", "trajectory", "speed", "steering")}
    last_ckpt, metrics, loss_value = s.previous, {}, math.nan
    bar = tqdm(
        total=t.steps,
        initial=s.start,
        disable=not (progress and ctx.is_main),
        unit="step",
        dynamic_ncols=True,
        desc=f"train {config.model.preset} {t.precision}",
    )
    if s.start == 0:
        # The untrained network (heads at the data's base rates) is the first baseline on every curve.
        log.write({"kind": "eval", "step": 0, **_evaluate(model, s.data, config, ctx, precision)})
    run_t0 = window_t0 = time.perf_counter()
    cpu_t0 = time.process_time()
    window_wait, window_steps, total_wait = 0.0, 0, 0.0
    model.train()
    for step in range(s.start, t.steps):
        t0 = time.perf_counter()
        frames, target = stream.next()
        wait = time.perf_counter() - t0
        window_wait, total_wait = window_wait + wait, total_wait + wait
        with precision.autocast():
            out = model(frames)
        loss, parts = task_loss(out, target, weights, config.loss.occupancy_pos_weight)
        loss.backward()
        # One all-reduce for the logged losses; every rank sees the same values, so all stop together.
        logged = (
            D.all_reduce_sum(torch.stack([loss.detach().float(), *parts.values()]).cpu(), ctx)
            / ctx.world_size
        )
        loss_value = logged[0].item()
        if not math.isfinite(loss_value):
            bar.close()
        _stop_on_non_finite(loss_value, step + 1, last_ckpt, log)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip or math.inf)
        lr = learning_rate(step, lr=t.lr, min_lr=t.min_lr, warmup_steps=t.warmup_steps, total_steps=t.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        precision.after_step(model)
        done, window_steps = step + 1, window_steps + 1
        bar.update(1)
        if done % t.log_every == 0 or done == t.steps:
            elapsed = time.perf_counter() - window_t0
            rate = window_steps * t.batch_size / elapsed
            log.write(
                {
                    "kind": "train",
                    "step": done,
                    "loss": loss_value,
                    "lr": lr,
                    "grad_norm": float(grad_norm),
                    "samples_per_s": rate,
                    "data_wait_fraction": window_wait / elapsed,
                    "time_s": time.perf_counter() - run_t0,
                    **{f"loss_{k}": v for k, v in zip(parts, logged[1:].tolist(), strict=True)},
                }
            )
            bar.set_postfix(loss=f"{loss_value:.4f}", samples_s=f"{rate:.1f}")
            window_t0, window_wait, window_steps = time.perf_counter(), 0.0, 0
        if (t.eval_every and done % t.eval_every == 0) or done == t.steps:
            metrics = _evaluate(model, s.data, config, ctx, precision)
            log.write({"kind": "eval", "step": done, **metrics})
            if report := precision.report(model):
                log.write({"kind": "numerics", "step": done, "layers": report})
            window_t0 = time.perf_counter()  # evaluation time is not training throughput
        if (t.checkpoint_every and done % t.checkpoint_every == 0) or done == t.steps:
            last_ckpt = _save(
                out_dir / "checkpoints",
                done,
                model,
                optimizer,
                stream,
                ctx,
                config,
                s.signature,
                {"loss": loss_value},
            )
            window_t0 = time.perf_counter()
    bar.close()
    wall = time.perf_counter() - run_t0
    if not metrics:  # resumed a finished run: nothing was trained, report where it stands
        metrics = _evaluate(model, s.data, config, ctx, precision)
    steps_run = t.steps - s.start
    result = RunResult(
        out_dir=out_dir,
        steps=t.steps,
        final_metrics=metrics,
        final_loss=loss_value,
        samples_per_s=steps_run * t.batch_size / wall if wall > 0 else 0.0,
        wall_s=wall,
        data_wait_fraction=total_wait / wall if wall > 0 else 0.0,
        checkpoint=Path(last_ckpt),
        metrics_path=out_dir / "metrics.jsonl",
        precision=t.precision,
        world_size=ctx.world_size,
        cpu_s=time.process_time() - cpu_t0,
    )
    if ctx.is_main:
        _write_summary(result)
    return result


def _finished_result(out_dir: Path, step: int, steps: int) -> RunResult | None:
    """The recorded result of a run whose newest checkpoint is its final step, if it wrote one."""
    path = out_dir / "result.json"
    if step != steps or not path.exists():
        return None
    raw = json.loads(path.read_text())
    if raw.get("steps") != steps:
        return None
    known = {k: v for k, v in raw.items() if k in RunResult.__dataclass_fields__}
    for key in ("out_dir", "checkpoint", "metrics_path"):
        known[key] = Path(known[key])
    known["plots"] = [Path(p) for p in known.get("plots", [])]
    return RunResult(**known)


def _write_summary(result: RunResult) -> None:
    from opendojo.train.plots import plot_run

    result.plots = plot_run(result.metrics_path, result.out_dir / "plots")
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}
    summary["plots"] = [str(p) for p in result.plots]
    (result.out_dir / "result.json").write_text(json.dumps(summary, indent=1))
