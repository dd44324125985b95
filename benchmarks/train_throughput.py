"""Training throughput of the FSD network: samples/s, achieved FLOP/s and data-wait fraction.

For each preset (``tiny``; ``base`` with ``--presets tiny,base``), each precision (fp32, bf16, dojo,
dojo_lean) and 1 vs 2 processes, runs ``dojo train`` on synthetic data in a fresh subprocess and reads
its metrics.jsonl: samples/s and the fraction of step time spent waiting on data are medians over the
logged windows after the first (the first holds start-up). FLOPs per sample (forward + backward) are
counted with ``torch.utils.flop_counter.FlopCounterMode`` on the FP32 network; achieved FLOP/s =
FLOPs/sample × samples/s. Anchor measured right before each row: this machine's FP32 matmul rate
(2048³, N × the one-thread rate for N processes of one thread each: on a busy shared machine a single
process with two threads collapses, so every row uses one thread per process), which gives the
model-FLOP utilisation (MFU) column.

Then the per-step weight check of the trainer (every parameter finite, added against silent divergence)
beside the training step it guards, both timed in the same run (``--checks-only``: just that table).

    .venv/bin/python benchmarks/train_throughput.py [--presets tiny,base] [--steps 25] [--checks-only]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from opendojo.models import fsd_net
from opendojo.train.config import PRECISIONS
from opendojo.train.metrics import read_metrics

# Per preset: the data (synthetic, small enough to generate quickly), the global batch and steps.
SETUPS = {
    "tiny": {
        "data": [
            "data.synthetic_clips=12",
            "data.synthetic_frames=32",
            "data.cameras=3",
            "data.image_size=64",
            "data.frames_per_clip=4",
        ],
        "batch": 8,
    },
    "base": {
        "data": [
            "data.synthetic_clips=2",
            "data.synthetic_frames=16",
            "data.cameras=8",
            "data.image_size=256",
            "data.frames_per_clip=8",
        ],
        "batch": 2,
    },
}


def matmul_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Median FP32 matmul rate of an n×n×n product with ``threads`` threads, GFLOP/s."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    torch.set_num_threads(before)
    return statistics.median(rates)


def flops_per_sample(preset: str, cameras: int, frames: int, size: int) -> float:
    """Forward + backward FLOPs of one sample (occupancy grid 32, 8 waypoints as the synthetic data)."""
    model = fsd_net(preset, cameras=cameras, frames=frames, image_size=size, occupancy_grid=32, horizon=8)
    x = torch.randn(1, cameras, frames, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        sum(v.float().mean() for v in out.values()).backward()
    return float(counter.get_total_flops())


def run(preset: str, precision: str, nproc: int, workers: int, steps: int, cache: Path, work: Path) -> dict:
    setup = SETUPS[preset]
    out = work / f"{preset}-{precision}-{nproc}-{workers}"
    config = work / "empty.toml"
    config.write_text("# all from --set\n")
    log_every = max(1, steps // 5)
    sets = [
        *setup["data"],
        f"train.batch_size={setup['batch']}",
        f"train.log_every={log_every}",
        "train.eval_every=0",
        "train.checkpoint_every=0",
        "train.eval_batches=1",
        f'data.cache_dir="{cache}"',
        f"model.preset={preset}",
        f"data.num_workers={workers}",
    ]
    # One thread per process, for 1 and for N processes: on a busy shared machine one process with two
    # OpenMP threads collapses (threads spin at barriers while a sibling is descheduled).
    sets.append("train.threads=1")
    cmd = [
        sys.executable,
        "-m",
        "opendojo.cli",
        "train",
        "--config",
        str(config),
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--precision",
        precision,
        "--nproc",
        str(nproc),
        "--no-progress",
        *[f"--set={s}" for s in sets],
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["failed"]
        errors = [line for line in lines if "error" in line.lower()]  # torchrun logs after the cause
        return {"error": (errors or lines)[-1][:200]}
    records = read_metrics(out / "metrics.jsonl")
    windows = [r for r in records if r["kind"] == "train"][1:] or [r for r in records if r["kind"] == "train"]
    return {
        "samples_per_s": statistics.median(r["samples_per_s"] for r in windows),
        "data_wait": statistics.median(r["data_wait_fraction"] for r in windows),
    }


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _plain_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    sum(v.float().mean() for v in model(x).values()).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def check_overhead(presets: list[str], repeats: int = 15) -> None:
    """The trainer's per-step weight check (every parameter finite, ``opendojo.train.step.weights_finite``)
    against the step it guards (forward, backward, clip, AdamW; one thread, one process), same run."""
    from opendojo.train.distributed import DistContext
    from opendojo.train.step import weights_finite

    torch.set_num_threads(1)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    print("\n| preset | batch | step ms (anchor) | weight check ms | check / step |")
    print("|---|---|---|---|---|")
    for preset in presets:
        opts = dict(s.split("=") for s in SETUPS[preset]["data"])
        cams, frames, size = (int(opts[f"data.{k}"]) for k in ("cameras", "frames_per_clip", "image_size"))
        model = fsd_net(preset, cameras=cams, frames=frames, image_size=size, occupancy_grid=32, horizon=8)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(SETUPS[preset]["batch"], cams, frames, 3, size, size)

        step_ms = _median_ms(partial(_plain_step, model, optimizer, x), repeats)
        check_ms = _median_ms(partial(weights_finite, model, ctx), repeats)
        row = f"| {preset} | {SETUPS[preset]['batch']} | {step_ms:.1f} | {check_ms:.2f} |"
        print(f"{row} {check_ms / step_ms:.2%} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny", help="comma-separated presets (tiny, base)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--nprocs", default="1,2")
    parser.add_argument("--workers", default="0", help="DataLoader workers per rank, comma-separated")
    parser.add_argument("--steps", type=int, default=25, help="steps per run (base: use 3-4)")
    parser.add_argument("--checks-only", action="store_true", help="only the per-step weight-check table")
    args = parser.parse_args()
    presets = args.presets.split(",")
    if args.checks_only:
        return check_overhead(presets)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# FSD training throughput — {now}")
    print(
        f"# machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"python {platform.python_version()}; shared machine: compare rows of this run only"
    )
    print("# anchor: FP32 matmul 2048^3 right before each row, N x the 1-thread rate for N one-thread")
    print("# processes (shared machine: each row is compared with the machine at that moment)")
    print()
    print(
        "| preset | precision | processes | loader workers | samples/s | GFLOP/sample | achieved GFLOP/s "
        "| matmul anchor GFLOP/s | MFU vs anchor | data wait |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cache = Path(os.environ.get("OPENDOJO_CACHE", "~/.cache/opendojo")).expanduser()
        for preset in presets:
            setup = SETUPS[preset]
            opts = dict(s.split("=") for s in setup["data"])
            gflop = (
                flops_per_sample(
                    preset,
                    int(opts["data.cameras"]),
                    int(opts["data.frames_per_clip"]),
                    int(opts["data.image_size"]),
                )
                / 1e9
            )
            for precision in args.precisions.split(","):
                for nproc in (int(n) for n in args.nprocs.split(",")):
                    for workers in (int(w) for w in args.workers.split(",")):
                        # The compute a row could use: N one-thread processes.
                        anchor = nproc * matmul_gflops(1)
                        r = run(preset, precision, nproc, workers, args.steps, cache, work)
                        row = f"| {preset} | {precision} | {nproc} | {workers} |"
                        if "error" in r:
                            print(f"{row} failed: {r['error']} | | | | | |", flush=True)
                            continue
                        achieved = gflop * r["samples_per_s"]
                        print(
                            f"{row} {r['samples_per_s']:.3g} | {gflop:.2f} | {achieved:.1f} | {anchor:.1f} | "
                            f"{achieved / anchor:.0%} | {r['data_wait']:.1%} |",
                            flush=True,
                        )
    check_overhead(presets)


if __name__ == "__main__":
    main()
