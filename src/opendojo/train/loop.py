"""The training loop: ``train(config, out_dir) -> RunResult``. Read it top to bottom.

One process or many (under torchrun), CPU or CUDA, FP32 / BF16 / CFloat recipes. The loop only schedules:
each step is :func:`opendojo.train.step.train_step` (forward, loss, backward, clip, AdamW, the recipe's
hook, stopping on anything non-finite); every ``log_every`` steps a JSONL record; every ``eval_every``
steps an evaluation; every ``checkpoint_every`` steps (and at the end) an atomic checkpoint. The run
folder layout is documented in docs/training.md.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from opendojo.train import distributed as D
from opendojo.train.batches import BatchStream
from opendojo.train.config import Config, config_to_dict
from opendojo.train.durable import naming_path, write_durable
from opendojo.train.metrics import MetricsLog
from opendojo.train.setup import RunParts, build_model, model_config_for, prepare_run
from opendojo.train.snapshot import save_run_state
from opendojo.train.step import NonFiniteLossError, StepOutcome, evaluate, train_step

__all__ = ["NonFiniteLossError", "RunResult", "build_model", "model_config_for", "train"]

log = logging.getLogger(__name__)


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


class _Clock:
    """Wall time, CPU time and time spent waiting for data, for the run and for the current log window
    (evaluation and checkpoint time are not counted as training throughput)."""

    def __init__(self) -> None:
        self.run_t0 = self.window_t0 = time.perf_counter()
        self.cpu_t0 = time.process_time()
        self.total_wait = self.window_wait = 0.0
        self.window_steps = 0

    def next_batch(self, stream: BatchStream):
        t0 = time.perf_counter()
        batch = stream.next()
        wait = time.perf_counter() - t0
        self.total_wait, self.window_wait, self.window_steps = (
            self.total_wait + wait,
            self.window_wait + wait,
            self.window_steps + 1,
        )
        return batch

    def close_window(self, batch_size: int) -> dict[str, float]:
        """samples/s and data-wait fraction since the last window, and the run's elapsed seconds."""
        elapsed = time.perf_counter() - self.window_t0
        record = {
            "samples_per_s": self.window_steps * batch_size / elapsed,
            "data_wait_fraction": self.window_wait / elapsed,
            "time_s": time.perf_counter() - self.run_t0,
        }
        self.skip_pause()
        self.window_wait, self.window_steps = 0.0, 0
        return record

    def skip_pause(self) -> None:
        self.window_t0 = time.perf_counter()


@dataclass
class _Progress:
    """What the loop carries from step to step."""

    last_checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    loss: float = math.nan


def _due(done: int, every: int, last: int) -> bool:
    return (every > 0 and done % every == 0) or done == last


def _stopped(error: NonFiniteLossError, last: Path | None, metrics_log: MetricsLog) -> NonFiniteLossError:
    """``error`` recorded in the metrics log and told where the last good checkpoint is."""
    metrics_log.write({"kind": "error", "step": error.step, "what": error.what, "value": error.value})
    where = f"the last good checkpoint is {str(last)!r}" if last else "no checkpoint was written"
    return NonFiniteLossError(f"{error}; {where}", what=error.what, value=error.value, step=error.step)


def _log_step(
    done: int, outcome: StepOutcome, clock: _Clock, config: Config, metrics_log: MetricsLog, bar
) -> None:
    window = clock.close_window(config.train.batch_size)
    record = {
        "kind": "train",
        "step": done,
        "loss": outcome.loss,
        "lr": outcome.lr,
        "grad_norm": outcome.grad_norm,
    }
    metrics_log.write(record | window | {f"loss_{k}": v for k, v in outcome.parts.items()})
    bar.set_postfix(loss=f"{outcome.loss:.4f}", samples_s=f"{window['samples_per_s']:.1f}")


def _evaluate_and_log(run: RunParts, config: Config, done: int, metrics_log: MetricsLog) -> dict[str, float]:
    metrics = evaluate(run.model, run.data, config, run.ctx, run.precision)
    metrics_log.write({"kind": "eval", "step": done, **metrics})
    if report := run.precision.report(run.model):
        metrics_log.write({"kind": "numerics", "step": done, "layers": report})
    return metrics


def _run_steps(
    run: RunParts, config: Config, out_dir: Path, metrics_log: MetricsLog, clock: _Clock, bar
) -> _Progress:
    """Steps ``run.start`` .. ``train.steps``; logging, evaluation and checkpoints on their schedules."""
    t, progress = config.train, _Progress(last_checkpoint=run.previous)
    if run.start == 0:
        # The untrained network (heads at the data's base rates) is the first baseline on every curve.
        metrics_log.write(
            {"kind": "eval", "step": 0, **evaluate(run.model, run.data, config, run.ctx, run.precision)}
        )
    run.model.train()
    for step in range(run.start, t.steps):
        batch = clock.next_batch(run.stream)
        try:
            outcome = train_step(
                run.model, run.optimizer, run.precision, batch, step=step, config=config, ctx=run.ctx
            )
        except NonFiniteLossError as e:
            raise _stopped(e, progress.last_checkpoint, metrics_log) from None
        done, progress.loss = step + 1, outcome.loss
        bar.update(1)
        if _due(done, t.log_every, t.steps):
            _log_step(done, outcome, clock, config, metrics_log, bar)
        if _due(done, t.eval_every, t.steps):
            progress.metrics = _evaluate_and_log(run, config, done, metrics_log)
            clock.skip_pause()
        if _due(done, t.checkpoint_every, t.steps):
            parts = (run.model, run.optimizer, run.stream)
            try:
                progress.last_checkpoint = save_run_state(
                    out_dir / "checkpoints",
                    done,
                    parts,
                    run.ctx,
                    config,
                    run.signature,
                    {"loss": outcome.loss},
                )
            except NonFiniteLossError as e:
                raise _stopped(e, progress.last_checkpoint, metrics_log) from None
            metrics_log.sync()
            clock.skip_pause()
        # A requested stop (SIGTERM, the training service's preemption) belongs here: after the step and
        # its scheduled checkpoint, before the next batch.
    return progress


def train(
    config: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> RunResult:
    """Train the FSD network as ``config`` says, writing everything into ``out_dir``.

    ``resume=True`` continues from the newest valid checkpoint in ``out_dir`` (bit-identical on CPU to a
    run that never stopped; a damaged newer checkpoint is skipped with a warning naming it); with no
    checkpoint there yet it starts from scratch (so ``torchrun --max-restarts`` can always pass
    ``--resume``). ``checkpoint`` continues from that checkpoint folder instead. Without either, an
    ``out_dir`` that already holds checkpoints is refused rather than overwritten.

    Raises ``UsageError``/``ValueError`` (bad config or data), ``CheckpointError`` (no usable checkpoint;
    nothing is written), :class:`NonFiniteLossError` (NaN/Inf loss, gradient norm or weights; the last
    good checkpoint is kept) and ``OSError`` naming the path (a full disk, a folder that is not writable).
    """
    out_dir = Path(out_dir)
    run = prepare_run(config, out_dir, resume=resume, checkpoint=checkpoint)
    finished = _finished_result(out_dir, run.start, config.train.steps)
    if finished is not None:  # resumed a run that had already ended: nothing to do, nothing rewritten
        return finished
    metrics_log = _open_run_folder(run, config, out_dir)
    clock = _Clock()
    desc = f"train {config.model.preset} {config.train.precision}"
    with tqdm(
        total=config.train.steps,
        initial=run.start,
        disable=not (progress and run.ctx.is_main),
        unit="step",
        dynamic_ncols=True,
        desc=desc,
    ) as bar:
        done = _run_steps(run, config, out_dir, metrics_log, clock, bar)
    if not done.metrics:  # resumed a finished run: nothing was trained, report where it stands
        done.metrics = evaluate(run.model, run.data, config, run.ctx, run.precision)
    result = _result(run, config, out_dir, done, clock)
    if run.ctx.is_main:
        _write_summary(result)
    return result


def _open_run_folder(run: RunParts, config: Config, out_dir: Path) -> MetricsLog:
    """Create the run folder, its config.json and its metrics log (rank 0; the others get a log that
    writes nothing). A failure here (a path under a file, a full disk) stops every rank."""

    def prepare() -> MetricsLog:
        with naming_path(out_dir):
            out_dir.mkdir(parents=True, exist_ok=True)
        write_durable(out_dir / "config.json", json.dumps(config_to_dict(config), indent=1))
        return MetricsLog(out_dir / "metrics.jsonl", True, run.start if run.previous else None)

    return D.on_main(prepare, run.ctx) or MetricsLog(out_dir / "metrics.jsonl", False, None)


def _result(run: RunParts, config: Config, out_dir: Path, done: _Progress, clock: _Clock) -> RunResult:
    wall = time.perf_counter() - clock.run_t0
    steps_run = config.train.steps - run.start
    return RunResult(
        out_dir=out_dir,
        steps=config.train.steps,
        final_metrics=done.metrics,
        final_loss=done.loss,
        samples_per_s=steps_run * config.train.batch_size / wall if wall > 0 else 0.0,
        wall_s=wall,
        data_wait_fraction=clock.total_wait / wall if wall > 0 else 0.0,
        checkpoint=Path(done.last_checkpoint),
        metrics_path=out_dir / "metrics.jsonl",
        precision=config.train.precision,
        world_size=run.ctx.world_size,
        cpu_s=time.process_time() - clock.cpu_t0,
    )


def _finished_result(out_dir: Path, step: int, steps: int) -> RunResult | None:
    """The recorded result of a run whose newest checkpoint is its final step, if it wrote one."""
    path = out_dir / "result.json"
    if step != steps or not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        log.warning("%s is unreadable (%s): evaluating the final checkpoint again", path, e)
        return None
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
    write_durable(result.out_dir / "result.json", json.dumps(summary, indent=1))
