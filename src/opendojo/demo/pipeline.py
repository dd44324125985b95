"""``dojo demo``: the whole system in one run, stage by stage.

numerics check → synthesise fleet-like video → ingest it into a dataset → plan the training budget →
train the ``tiny`` FSD network in FP32 and with ``Recipe.dojo()`` → simulate the ``base`` network on Dojo
and GPU systems → ``report.html`` + ``summary.json``. Every stage records its outputs in the run folder,
so a re-run with the same settings resumes (see :mod:`opendojo.demo.stages`).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from opendojo.demo.stages import DemoFolder, DemoSettings

#: The trained runs: a label for plots and the trainer's precision name.
RUNS = {"fp32": "fp32", "dojo": "dojo"}
#: Systems the base network is projected onto.
SYSTEMS = ("dojo-tile", "dojo-exapod", "h100-dgx")
#: Share of the time budget the two training runs get; the rest is data, simulation and the report.
_TRAIN_SHARE = 0.8
_FIXED_COST_S = 45.0
#: CPU threads per training run: the tiny network's ops are small, and on a shared machine one thread
#: ran 6x faster than two (docs/training.md); the plan times its steps with the same count.
TRAIN_THREADS = 1


def parallel_runs() -> bool:
    """Whether the training runs go side by side, one process each: when this process may use at least
    one core per run. With one thread per run that nearly doubles the steps the budget buys on 2 cores."""
    return len(os.sched_getaffinity(0)) >= len(RUNS) * TRAIN_THREADS


def _numerics_stage() -> dict[str, Any]:
    """The CFloat8 ranges at a few biases and one measured speed line beside torch's native FP8 cast."""
    from opendojo.numerics import CFLOAT8_1_4_3, CFLOAT8_1_5_2, encode

    table = []
    for fmt, biases in ((CFLOAT8_1_4_3, (0, 7, 15, 31)), (CFLOAT8_1_5_2, (0, 15, 31))):
        for bias in biases:
            table.append(
                {
                    "format": fmt.name,
                    "bias": bias,
                    "max": fmt.max(bias),
                    "smallest_normal": fmt.smallest_normal(bias),
                    "smallest_subnormal": fmt.smallest_subnormal(bias),
                }
            )
    x = torch.randn(1 << 22, generator=torch.Generator().manual_seed(0))

    def rate(fn) -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return x.numel() / statistics.median(times) / 1e6

    ours = rate(lambda: encode(x, CFLOAT8_1_4_3, 7))
    native = rate(lambda: x.to(torch.float8_e4m3fn))
    return {
        "value_table": table,
        "encode_melem_s": ours,
        "torch_fp8_cast_melem_s": native,
        "elements": x.numel(),
    }


def _data_stage(root: Path, s: DemoSettings, progress: bool) -> dict[str, Any]:
    from opendojo.data import ingest, stats, synth

    sources = synth(
        root / "sources",
        clips=s.clips,
        cameras=s.cameras,
        frames=s.clip_frames,
        size=(s.image_size, s.image_size),
        seed=s.seed,
        progress=progress,
    )
    report = ingest(sources, root / "dataset", clip_frames=s.clip_frames, progress=progress)
    if report.failures:
        raise RuntimeError(f"ingest of the synthetic drives failed: {report.failures}")
    from opendojo.demo.views import synth_held_out_drive

    return {"dataset": str(root / "dataset"), "stats": stats(root / "dataset"),
            "held_out_drive": synth_held_out_drive(root, s)}


def _train_config(s: DemoSettings, dataset: str, precision: str, steps: int):
    from opendojo.train import config_from_dict

    evals = max(1, steps // 8)
    return config_from_dict(
        {
            "model": {"preset": "tiny"},
            "data": {
                "source": dataset,
                "cameras": s.cameras,
                "frames_per_clip": s.frames_per_clip,
                "image_size": s.image_size,
                "seed": s.seed,
            },
            "train": {
                "steps": steps,
                "seed": s.seed,
                "precision": precision,
                "eval_every": evals,
                "checkpoint_every": 0,
                "log_every": max(1, min(10, steps // 20)),
                "warmup_steps": max(1, min(20, steps // 10)),
                "threads": TRAIN_THREADS,
            },
        }
    )


def _plan_stage(s: DemoSettings, dataset: str) -> dict[str, Any]:
    """Steps per training run: fixed by ``--steps``, else what the budget allows after timing a few steps."""
    if s.steps is not None:
        return {"steps": s.steps, "source": "--steps", "parallel": parallel_runs()}
    from opendojo.models import example_inputs, fsd_net
    from opendojo.nn import Recipe, convert

    per_step = {}
    torch.set_num_threads(TRAIN_THREADS)
    for name in RUNS:
        torch.manual_seed(s.seed)
        shape = {"cameras": s.cameras, "frames": s.frames_per_clip, "image_size": s.image_size}
        model = fsd_net("tiny", **shape)
        if name == "dojo":
            convert(model, Recipe.dojo())
        inputs = example_inputs("tiny", 8, **shape)
        times = []
        for _ in range(4):  # the first call pays one-off costs (allocator, thread pool): min() skips it
            t0 = time.perf_counter()
            out = model(inputs)
            sum(v.float().mean() for v in out.values()).backward()
            times.append(time.perf_counter() - t0)
        per_step[name] = min(times)
    budget = max(10.0, s.minutes * 60 * _TRAIN_SHARE - _FIXED_COST_S)
    # Side by side the runs take as long as the slower one; one after the other, as long as both.
    parallel = parallel_runs()
    per_pair = max(per_step.values()) if parallel else sum(per_step.values())
    # Evaluation, logging and the optimizer add about a quarter to the forward+backward time.
    steps = int(budget / (1.25 * per_pair))
    return {
        "steps": int(np.clip(steps, 20, 5000)),
        "source": "budget",
        "seconds_per_step": per_step,
        "budget_s": budget,
        "parallel": parallel,
    }


def _train_stage(root: Path, s: DemoSettings, dataset: str, steps: int, name: str, progress: bool):
    from opendojo.train import train

    out = root / "runs" / name
    resume = (out / "checkpoints").exists()  # a killed demo continues its run instead of refusing it
    result = train(_train_config(s, dataset, RUNS[name], steps), out, resume=resume, progress=progress)
    return {
        "run_dir": str(out),
        "final_metrics": result.final_metrics,
        "final_loss": result.final_loss,
        "samples_per_s": result.samples_per_s,
        "train_wall_s": result.wall_s,
        "data_wait_fraction": result.data_wait_fraction,
        "metrics_path": str(result.metrics_path),
    }


def _train_jobs(folder: DemoFolder, s: DemoSettings, dataset: str, plan: dict, progress: bool) -> dict:
    """One callable per training run that returns its stage record.

    When the plan chose side-by-side runs, the runs a previous demo did not finish start now, each in a
    fresh (spawned) process, and each callable waits for its run; only the run the plan timed slowest
    shows its progress bar (two processes cannot share a terminal line), so its ETA is the stage's.
    Otherwise each callable trains its run in this process when called.
    """
    steps = plan["steps"]
    todo = [n for n in RUNS if folder.done(f"train-{n}") is None]
    if not (plan.get("parallel") and len(todo) > 1):
        return {n: (lambda n=n: _train_stage(folder.root, s, dataset, steps, n, progress)) for n in RUNS}
    slowest = max(todo, key=lambda n: plan.get("seconds_per_step", {}).get(n, 0.0))
    pool = ProcessPoolExecutor(len(todo), mp_context=multiprocessing.get_context("spawn"))
    futures = {
        n: pool.submit(_train_stage, folder.root, s, dataset, steps, n, progress and n == slowest)
        for n in todo
    }
    pool.shutdown(wait=False)  # the workers finish their runs; the callables collect the results

    # A run missing from ``futures`` finished in a previous demo, so its stage never calls its callable.
    return {n: (lambda n=n: futures[n].result()) for n in RUNS}


def _simulate_stage(s: DemoSettings) -> dict[str, Any]:
    from opendojo.sim import simulate

    results = {}
    for system in SYSTEMS:
        results[system] = simulate(s.simulate_model, system, precision="bf16").to_dict()
    return {"workload": s.simulate_model, "precision": "bf16", "systems": results}


def run_demo(out: str | Path, settings: DemoSettings | None = None, *, progress: bool = True) -> dict:
    """Run every stage into ``out`` (resuming finished ones) and return the summary that
    ``summary.json`` holds. Raises :class:`~opendojo.demo.stages.DemoFolderError` for a folder that
    belongs to another run."""
    from opendojo.demo.summary import write_report

    settings = settings or DemoSettings()
    folder = DemoFolder(out, settings)
    names = ["numerics", "data", "plan", *(f"train-{r}" for r in RUNS), "simulate", "report"]
    bar = tqdm(
        total=len(names),
        desc="dojo demo",
        unit="stage",
        disable=not progress,
        position=0,
        bar_format="{desc}: {n_fmt}/{total_fmt} stages |{bar}| {elapsed} elapsed, ETA {remaining}",
    )
    t0 = time.perf_counter()
    records: dict[str, dict] = {}

    def stage(name: str, fn) -> dict:
        bar.set_description(f"dojo demo [{name}]")
        records[name] = folder.run(name, fn)
        bar.update(1)
        return records[name]

    stage("numerics", _numerics_stage)
    data = stage("data", lambda: _data_stage(folder.root, settings, progress))
    plan = stage("plan", lambda: _plan_stage(settings, data["dataset"]))
    for name, fn in _train_jobs(folder, settings, data["dataset"], plan, progress).items():
        stage(f"train-{name}", fn)
    stage("simulate", lambda: _simulate_stage(settings))
    summary = write_report(folder.root, settings, records, time.perf_counter() - t0)
    bar.update(1)
    bar.close()
    return summary
