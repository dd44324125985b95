"""The ``dojo`` command. Thin: each subcommand parses its arguments and calls one function.

Each pillar registers its subcommands in its own ``_add_*`` function below, so the heavy imports
(torch, PyAV, DuckDB) happen only when that subcommand runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from opendojo import __version__


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"opendojo {__version__}")
    return 0


# --- numerics -------------------------------------------------------------------------------
def _numerics_bias_arg(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 63:
        raise argparse.ArgumentTypeError(f"bias must be an integer in 0..63, got {value}")
    return value


def _numerics_format(name: str):
    """The format named ``name``; a ValueError (listing the choices) becomes a clean CLI error."""
    from opendojo.numerics import get_format

    try:
        return get_format(name)
    except ValueError as e:
        print(f"dojo numerics: error: --format: {e}", file=sys.stderr)
        sys.exit(2)  # a usage error, as for every other bad argument


def _cmd_numerics_formats(args: argparse.Namespace) -> int:
    from opendojo.numerics.tables import formats_table

    print(formats_table())
    return 0


def _cmd_numerics_table(args: argparse.Namespace) -> int:
    from opendojo.numerics.tables import value_table

    fmt = _numerics_format(args.format)
    print(value_table(fmt, fmt.default_bias if args.bias is None else args.bias))
    return 0


def _cmd_numerics_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from opendojo.numerics import Flags, decode, encode
    from opendojo.numerics.tables import describe_codes

    fmt = _numerics_format(args.format)
    bias = fmt.default_bias if args.bias is None else args.bias
    x = np.array(args.values, dtype=np.float64)
    flags = Flags()
    codes = encode(x, fmt, bias, args.rounding, seed=args.seed, flags=flags)
    print(describe_codes(x, codes, decode(codes, fmt, bias)))
    print("flags: " + ", ".join(f"{k}={v}" for k, v in flags.as_dict().items()))
    return 0


def _add_numerics(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("numerics", help="the CFloat formats: value tables, encoding")
    nsub = p.add_subparsers(dest="numerics_command", metavar="SUBCOMMAND", required=True)
    q = nsub.add_parser("formats", help="list the CFloat formats and their ranges at the default bias")
    q.set_defaults(func=_cmd_numerics_formats)
    q = nsub.add_parser("table", help="print every value of a format at a bias")
    q.add_argument("--format", default="cfloat8_1_4_3", help="format name (see `dojo numerics formats`)")
    q.add_argument("--bias", type=_numerics_bias_arg, default=None, help="0..63 (default: the format's)")
    q.set_defaults(func=_cmd_numerics_table)
    q = nsub.add_parser("encode", help="round numbers into a format and show codes, values and flags")
    q.add_argument("values", type=float, nargs="+", help="numbers to encode (float64, rounded directly)")
    q.add_argument("--format", default="cfloat8_1_4_3", help="format name (see `dojo numerics formats`)")
    q.add_argument("--bias", type=_numerics_bias_arg, default=None, help="0..63 (default: the format's)")
    q.add_argument("--rounding", default="nearest", choices=["nearest", "stochastic", "toward_zero"])
    q.add_argument("--seed", type=int, default=0, help="stochastic-rounding seed (default 0)")
    q.set_defaults(func=_cmd_numerics_encode)


# --- data -----------------------------------------------------------------------------------
def _size_arg(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 128x128") from None
    return h, w


def _print_query(args: argparse.Namespace, table) -> None:
    from opendojo.errors import printable  # camera names and paths come from files: escape them

    n_clips = len(set(table.column("clip_id").to_pylist()))
    print(f"{table.num_rows} camera clips, {n_clips} clips match")
    for row in table.slice(0, args.show).to_pylist():
        print(f"  {row['clip_id']} {printable(row['camera']):<12} frame {row['start_frame']:>6} "
              f"{printable(row['source'])}")
    if args.out:
        print(f"subset manifest written to {printable(args.out)}")


def _run_data(args: argparse.Namespace) -> int:
    from opendojo import data
    from opendojo.errors import UsageError, check_int, check_seed

    if args.data_cmd == "synth":
        seed = check_seed("--seed", args.seed)
        out = data.synth(args.out, clips=args.clips, cameras=args.cameras, frames=args.frames,
                         size=args.size, seed=seed, fps=args.fps, keyint=args.keyint)
        print(f"wrote {args.clips} drives to {out}")
    elif args.data_cmd == "ingest":
        if args.engine == "ray" and not args.ray_address:
            raise UsageError("--ray-address: required with --engine ray (the head's HOST:6379)")
        report = data.ingest(args.sources, args.out, workers=args.workers, clip_frames=args.clip_frames,
                             require_labels=args.require_labels, tags=args.tag,
                             ray_address=args.ray_address if args.engine == "ray" else None)
        print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
        return 0 if report.ok else 1
    elif args.data_cmd == "query":
        check_int("--show", args.show, low=0)
        _print_query(args, data.query(args.dataset, args.where, out=args.out))
    else:
        for key, value in data.stats(args.dataset).items():
            print(f"{key:>20}: {value:,.4f}" if isinstance(value, float) else f"{key:>20}: {value:,}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from opendojo.errors import EXIT_FAILURE, EXIT_USAGE, printable

    try:
        return _run_data(args)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"dojo data {args.data_cmd}: error: {printable(e)}", file=sys.stderr)
        # UsageError (a ValueError) and a missing dataset are the caller's mistake; ENOSPC, EACCES or a
        # query timeout mean the run failed
        return EXIT_USAGE if isinstance(e, ValueError | FileNotFoundError) else EXIT_FAILURE


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="the video data engine: synth, ingest, query, stats")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    ds = p.add_subparsers(dest="data_cmd", metavar="ACTION")
    s = ds.add_parser("synth", help="render procedural multi-camera driving video (H.264) + label sidecars")
    s.add_argument("--out", required=True)
    s.add_argument("--clips", type=int, default=4, help="number of drives (files)")
    s.add_argument("--cameras", type=int, default=4, help="cameras per drive (1-8)")
    s.add_argument("--frames", type=int, default=64, help="frames per drive")
    s.add_argument("--size", type=_size_arg, default=(128, 128), help="HxW pixels (even)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fps", type=int, default=30)
    s.add_argument("--keyint", type=int, default=16, help="frames between keyframes")
    s.set_defaults(func=_cmd_data)
    i = ds.add_parser("ingest", help="cut videos into keyframe-aligned clips, write shards + clip index")
    i.add_argument("sources", nargs="+", help="video files or folders")
    i.add_argument("--out", required=True, help="dataset folder or fsspec URL")
    i.add_argument("--workers", type=int, default=1)
    i.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local processes (--workers) or Ray tasks on a cluster (--ray-address)")
    i.add_argument("--ray-address", default=None, help="with --engine ray: the Ray head's HOST:6379")
    i.add_argument("--clip-frames", type=int, default=16)
    i.add_argument("--require-labels", action="store_true", help="a video without a JSON sidecar fails")
    i.add_argument("--tag", action="append", default=[], help="tag every ingested clip (repeatable)")
    i.set_defaults(func=_cmd_data)
    q = ds.add_parser("query", help="select clips with an SQL WHERE clause; --out writes a subset manifest")
    q.add_argument("dataset")
    q.add_argument("where", help='one boolean expression, e.g. "speed_mean > 20 AND occupied_ahead > 0"')
    q.add_argument("--out", help="subset manifest (Parquet) to write")
    q.add_argument("--show", type=int, default=10, help="rows to print")
    q.set_defaults(func=_cmd_data)
    t = ds.add_parser("stats", help="counts, hours, frames and bytes of a dataset or subset")
    t.add_argument("dataset")
    t.set_defaults(func=_cmd_data)


# --- train ----------------------------------------------------------------------------------
def _train_overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.set or [])
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.checkpoint_every is not None:
        overrides.append(f"train.checkpoint_every={args.checkpoint_every}")
    if args.precision is not None:
        overrides.append(f"train.precision={args.precision}")
    if args.fsdp:
        overrides.append("train.fsdp=true")
    return overrides


def _cmd_train(args: argparse.Namespace) -> int:
    import os

    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:
        # Not yet under torchrun: start it, with the same arguments minus --nproc, on this machine.
        from opendojo.train.distributed import launch_torchrun

        argv = ["--config", args.config, "--out", args.out] + ["--set=" + o for o in _train_overrides(args)]
        argv += ["--resume"] if args.resume else []
        argv += ["--no-progress"] if args.no_progress else []
        return launch_torchrun(args.nproc, argv, max_restarts=args.max_restarts)
    import torch.distributed as dist

    from opendojo.errors import EXIT_PREEMPTED
    from opendojo.train import NonFiniteLossError, load_config, preempt, train

    preempt.install()  # SIGTERM: checkpoint at the end of the step, exit EXIT_PREEMPTED (docs/service.md)
    try:
        config = load_config(args.config, _train_overrides(args))
        result = train(config, args.out, resume=args.resume, progress=not args.no_progress)
    except preempt.Preempted as e:
        print(f"dojo train: {e}", file=sys.stderr)
        return EXIT_PREEMPTED
    except NonFiniteLossError as e:
        print(f"dojo train: stopped: {e}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as e:
        print(f"dojo train: error: {e}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        m = result.final_metrics
        print(f"done: {result.steps} steps in {result.wall_s:.1f} s ({result.cpu_s:.0f} s CPU), "
              f"{result.samples_per_s:.1f} samples/s; "
              f"loss {result.final_loss:.4f}; occupancy IoU {m.get('occupancy_iou', float('nan')):.3f}, "
              f"ADE {m.get('ade_m', float('nan')):.2f} m, FDE {m.get('fde_m', float('nan')):.2f} m, "
              f"speed MAE {m.get('speed_mae_mps', float('nan')):.2f} m/s")
        print(f"run folder: {result.out_dir}  (metrics.jsonl, checkpoints/, plots/)")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the FSD-style video network (see docs/training.md)")
    p.add_argument("--config", required=True, help="training config, TOML (e.g. configs/tiny.toml)")
    p.add_argument("--out", required=True, help="run folder: metrics.jsonl, checkpoints/, plots/")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--checkpoint-every", type=int, help="override train.checkpoint_every (steps)")
    p.add_argument("--set", action="append", metavar="TABLE.KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("--precision", choices=("fp32", "bf16", "dojo", "dojo_lean"),
                   help="override train.precision")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--nproc", type=int, default=1, help="processes on this machine (starts torchrun)")
    p.add_argument("--max-restarts", type=int, default=0,
                   help="torchrun restarts after a failed rank (with --nproc)")
    p.add_argument("--fsdp", action="store_true",
                   help="shard parameters with FSDP2 (needs >1 process or torchrun)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


# --- hw + simulate --------------------------------------------------------------------------
def _cmd_hw_list(args: argparse.Namespace) -> int:
    from opendojo.hw import list_parts, list_systems, load_system
    from opendojo.hw.show import fmt

    print(f"{'system':<20} {'devices':>8} {'device':<14} {'peak BF16':>14} {'power':>10}")
    for name in list_systems():
        s = load_system(name)
        flag = "  (hypothetical)" if s.hypothetical else ""
        print(f"{name:<20} {s.devices:>8} {s.device.name:<14} {fmt(s.peak_flops['bf16'], 'FLOP/s'):>14} "
              f"{fmt(s.power_w, 'W'):>10}{flag}")
    print("parts: " + ", ".join(p for p in list_parts() if p not in list_systems()))
    return 0


def _cmd_hw_show(args: argparse.Namespace) -> int:
    from opendojo.hw import describe

    try:
        print(describe(args.name))
    except ValueError as e:
        print(f"dojo hw show: {e}", file=sys.stderr)
        return 2
    return 0


def _cmd_hw_calibrate(args: argparse.Namespace) -> int:
    import torch

    from opendojo.hw.calibrate import measure_host, store
    from opendojo.hw.show import fmt

    if args.threads:
        torch.set_num_threads(args.threads)
    measured = measure_host(progress=not args.quiet)
    path = store(measured, args.dir)
    for key, value in measured.items():
        unit = "s" if key.endswith("_s") else "B/s" if key.endswith("_bw") else (
            "" if "rate" in key or "half_dim" in key else "FLOP/s")
        print(f"  {key:<36} {fmt(value, unit) if unit else format(value, '.4g')}")
    print(f"stored in {path} ({torch.get_num_threads()} threads)")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    import json

    from opendojo.sim import simulate

    if args.sim_action == "validate":
        return _cmd_simulate_validate(args)
    if not args.model or not args.system:
        print("dojo simulate: --model and --system are required (or: dojo simulate validate)",
              file=sys.stderr)
        return 2
    try:
        if args.sweep:
            return _cmd_simulate_sweep(args)
        r = simulate(args.model, args.system, nodes=args.nodes, batch=args.batch, precision=args.precision,
                     parallel=args.parallel, h100_eq=args.h100_eq, fusion=False if args.eager else None)
    except (ValueError, TypeError) as e:
        print(f"dojo simulate: {e}", file=sys.stderr)
        return 2
    print(json.dumps(r.to_dict(), indent=2) if args.json else r.summary())
    return 0


def _cmd_simulate_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from opendojo.sim.sweep import plot_sweep, run_sweep, write_csv

    systems = [s.strip() for s in args.system.split(",") if s.strip()]
    rows = run_sweep(args.model, systems, args.sweep, batch=args.batch, precision=args.precision,
                     parallel=args.parallel, progress=not args.json)
    out = Path(args.out)
    csv_path = write_csv(rows, out.with_suffix(".csv"))
    title = f"{args.model}, {args.precision}, sweep {args.sweep}"
    png_path = plot_sweep(rows, out.with_suffix(".png"), title)
    for r in rows:
        if r.get("error"):
            print(f"  {r['system']:<18} {r['param']}={r['value']:<10.4g} skipped: {r['error']}")
        else:
            print(f"  {r['system']:<18} {r['param']}={r['value']:<10.4g} step {r['step_time_s']:.4g} s  "
                  f"{r['samples_per_s']:.4g} samples/s  MFU {100 * r['mfu']:.1f} %  ({r['layout']})")
    print(f"wrote {csv_path} and {png_path}")
    return 0


def _cmd_simulate_validate(args: argparse.Namespace) -> int:
    import torch

    from opendojo.sim.validate import format_table, validate

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = validate(host=not args.no_host, progress=True)
    print(format_table(rows))
    return 0


def _add_hw_sim(sub: argparse._SubParsersAction) -> None:
    hw = sub.add_parser("hw", help="hardware as data: list, show and calibrate systems")
    hws = hw.add_subparsers(dest="hw_command", metavar="ACTION", required=True)
    p = hws.add_parser("list", help="list the systems and parts")
    p.set_defaults(func=_cmd_hw_list)
    p = hws.add_parser("show", help="print a system or part: numbers, sources, confidence, derived totals")
    p.add_argument("name", help="e.g. dojo-exapod, training-tile, h100-dgx, host")
    p.set_defaults(func=_cmd_hw_show)
    p = hws.add_parser("calibrate", help="measure this host (matmul/conv FLOP/s, bandwidth, per-op overhead)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads to measure with (default 1: reproducible on a shared machine)")
    p.add_argument("--dir", default=None, help="where to store host-cpu.toml (default: the user cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_hw_calibrate)

    p = sub.add_parser("simulate", help="predict a training step on Dojo / GPU / host systems; validate")
    p.add_argument("--model", help="built-in workload (gpt-175b, resnet50, fsd-base, ...) or file.py:fn")
    p.add_argument("--system", help="system name (dojo-exapod, h100-cluster-16k, host, ...); "
                                    "comma-separated with --sweep")
    p.add_argument("--nodes", type=int, default=None, help="number of devices (Dojo tiles, GPUs)")
    p.add_argument("--batch", type=int, default=None, help="global batch in samples (default: workload's)")
    p.add_argument("--precision", default="bf16", choices=["bf16", "cfloat8", "fp32"])
    p.add_argument("--parallel", default=None,
                   help="e.g. dp=8,tp=4,pp=2[,vp=2,mb=1,zero=0|1|2,recompute=0|1,sp=0|1]")
    p.add_argument("--h100-eq", default="delivered", choices=["delivered", "peak", "power"],
                   help="which H100-equivalent definition to headline (all are printed)")
    p.add_argument("--eager", action="store_true",
                   help="GPUs without pointwise fusion (eager PyTorch; default models torch.compile fusion)")
    p.add_argument("--json", action="store_true", help="print the documented JSON object")
    p.add_argument("--sweep", default=None,
                   help="nodes=1:1024 | nodes=1,2,4 | PART.FIELD=low:high:points; writes PNG + CSV")
    p.add_argument("--out", default="sim-sweep", help="sweep output path prefix (.png and .csv are added)")
    p.set_defaults(func=_cmd_simulate, sim_action=None)
    acts = p.add_subparsers(dest="sim_action", metavar="ACTION")
    v = acts.add_parser("validate", help="error table: host measurements, published GPU runs, Dojo figures")
    v.add_argument("--no-host", action="store_true", help="skip the host measurements (about a minute)")
    v.add_argument("--threads", type=int, default=1,
                   help="torch threads for the host section (default 1: with 2 OpenMP threads on a busy "
                        "2-core machine every parallel region can stall for a scheduler slice)")
    v.set_defaults(func=_cmd_simulate)


# --- demo -----------------------------------------------------------------------------------
def _cmd_demo(args: argparse.Namespace) -> int:
    from opendojo.demo import DemoFolderError, DemoSettings, run_demo

    try:
        settings = DemoSettings(seed=args.seed, minutes=args.minutes, clips=args.clips, cameras=args.cameras,
                                steps=args.steps)
        summary = run_demo(args.out, settings, progress=not args.quiet)
    except (DemoFolderError, ValueError) as e:
        print(f"dojo demo: {e}", file=sys.stderr)
        return 2
    runs = summary["training"]["runs"]
    print(f"\nreport: {summary['report']['path']}  ({summary['run']['wall_s'] / 60:.1f} min)")
    for name, run in runs.items():
        m = run["final_metrics"]
        print(
            f"  {name:5s} occupancy IoU {m.get('occupancy_iou', float('nan')):.3f}"
            f"  ADE {m.get('ade_m'):.2f} m  speed MAE {m.get('speed_mae_mps'):.2f} m/s"
            f"  {run['samples_per_s']:.1f} samples/s"
        )
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole system on synthetic data and write report.html",
        description="Synthesise fleet-like video, ingest it, train the tiny FSD network in FP32 and "
        "CFloat8, simulate the base network on Dojo and an 8xH100 box, write report.html and "
        "summary.json. Re-running into the same --out with the same settings resumes; other "
        "settings are refused.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--minutes", type=float, default=8.0, help="wall-time budget; more minutes, more steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clips", type=int, default=48, help="synthetic drives to generate")
    p.add_argument("--cameras", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default: from --minutes)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)


# --- service --------------------------------------------------------------------------------
def _add_service(sub: argparse._SubParsersAction) -> None:
    from opendojo.service.commands import add_parsers  # parsers and handlers live in the service layer

    add_parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dojo", description="OpenDojo: Tesla's Dojo training system in software."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("version", help="print the OpenDojo version")
    p.set_defaults(func=_cmd_version)
    for add in (_add_numerics, _add_data, _add_train, _add_hw_sim, _add_demo, _add_service):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # `dojo ... | head` closed the pipe: stop quietly, as Unix tools do, instead of a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
