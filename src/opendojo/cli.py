"""The ``dojo`` command. Thin: each subcommand parses its arguments and calls one function.

Each pillar registers its subcommands in its own ``_add_*`` function below, so the heavy imports
(torch, PyAV, DuckDB) happen only when that subcommand runs.
"""

from __future__ import annotations

import argparse
import sys

from opendojo import __version__
from opendojo.errors import EXIT_USAGE, run_command


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"opendojo {__version__}")
    return 0


# --- numerics -------------------------------------------------------------------------------
def _numerics_bias_arg(text: str) -> int:
    from opendojo.errors import UsageError
    from opendojo.numerics.formats import check_bias

    try:  # a non-number is passed on as text, so the one message names it and the range
        return check_bias(int(text) if text.strip().lstrip("+-").isdigit() else text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None  # argparse prints only this type's words


def _numerics_format(name: str):
    """The format named ``name``; a UsageError (listing the choices) becomes a clean CLI error."""
    from opendojo.errors import EXIT_USAGE, UsageError
    from opendojo.numerics import get_format

    try:
        return get_format(name)
    except UsageError as e:
        reason = str(e).split(": ", 1)[-1]  # the message names get_format's argument; this is --format
        print(f"dojo numerics: error: --format: {reason}", file=sys.stderr)
        sys.exit(EXIT_USAGE)  # a usage error, as for every other bad argument


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

    from opendojo.errors import EXIT_USAGE, UsageError
    from opendojo.numerics import Flags, RoundMode, check_rounding, decode, encode
    from opendojo.numerics.tables import describe_codes

    fmt = _numerics_format(args.format)
    try:
        rounding = check_rounding(args.rounding or RoundMode.NEAREST, "--rounding")
    except UsageError as e:
        print(f"dojo numerics: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    bias = fmt.default_bias if args.bias is None else args.bias
    x = np.array(args.values, dtype=np.float64)
    flags = Flags()
    codes = encode(x, fmt, bias, rounding, seed=args.seed, flags=flags)
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
    q.add_argument("--bias", type=_numerics_bias_arg, default=None,
                   help="exponent bias (default: the format's)")
    q.set_defaults(func=_cmd_numerics_table)
    q = nsub.add_parser("encode", help="round numbers into a format and show codes, values and flags")
    q.add_argument("values", type=float, nargs="+", help="numbers to encode (float64, rounded directly)")
    q.add_argument("--format", default="cfloat8_1_4_3", help="format name (see `dojo numerics formats`)")
    q.add_argument("--bias", type=_numerics_bias_arg, default=None,
                   help="exponent bias (default: the format's)")
    # checked when the command runs: the mode names live in opendojo.numerics (which imports torch)
    q.add_argument("--rounding", default=None, help="a rounding mode of opendojo.numerics.RoundMode "
                   "(default: round to nearest, ties to even)")
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
def _add_train(sub: argparse._SubParsersAction) -> None:
    from opendojo.train.command import add_train_arguments, run_train

    p = sub.add_parser("train", help="train the FSD-style video network (see docs/training.md)")
    add_train_arguments(p)
    p.set_defaults(func=run_train)


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

    from opendojo.errors import EXIT_USAGE, UsageError, check_int, check_seed
    from opendojo.sim.validate import format_table, validate

    try:
        held_out = check_int("--held-out", args.held_out, low=0, high=1000)
        seed = check_seed("--seed", args.seed)
    except UsageError as e:
        print(f"dojo simulate validate: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = validate(host=not args.no_host, progress=True, held_out=0 if args.no_host else held_out, seed=seed)
    print(format_table(rows))
    return 0


def _add_hw_sim(sub: argparse._SubParsersAction) -> None:
    from opendojo.hw.system import PRECISIONS

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
    p.add_argument("--precision", default="bf16", choices=PRECISIONS,
                   help="precision the hardware prices (a trainer recipe maps to one: dojo -> cfloat8)")
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
    v = acts.add_parser("validate", help="error table: host in-sample and held-out models, published GPU "
                                         "runs, Dojo consistency check")
    v.add_argument("--no-host", action="store_true", help="skip the host measurements (a minute or two)")
    v.add_argument("--held-out", type=int, default=11,
                   help="models drawn from families the calibration never runs (default 11: one per family)")
    v.add_argument("--seed", type=int, default=0, help="seed of the held-out shapes and batches")
    v.add_argument("--threads", type=int, default=1,
                   help="torch threads for the host section (default 1: with 2 OpenMP threads on a busy "
                        "2-core machine every parallel region can stall for a scheduler slice)")
    v.set_defaults(func=_cmd_simulate)


# --- demo -----------------------------------------------------------------------------------
def _cmd_demo(args: argparse.Namespace) -> int:
    from opendojo.demo import DemoFolderError, DemoSettings, run_demo

    try:
        given = {"clips": args.clips} if args.clips is not None else {}  # default: DemoSettings'
        settings = DemoSettings(seed=args.seed, minutes=args.minutes, cameras=args.cameras, steps=args.steps,
                                **given)
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
    p.add_argument("--clips", type=int, default=None, help="synthetic drives to generate (default 192)")
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
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("version", help="print the OpenDojo version")
    p.set_defaults(func=_cmd_version)
    for add in (_add_numerics, _add_data, _add_train, _add_hw_sim, _add_demo, _add_service):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``dojo ARGV``. A caller's mistake ends as one line and exit 2 (``UsageError`` and every other
    ValueError), a run-time failure (I/O, DuckDB, divergence) as one line and exit 1; ``--debug`` adds the
    traceback."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted after the subcommand too: `dojo train ... --debug`
    args = parser.parse_args([a for a in argv if a != "--debug"])
    if not hasattr(args, "func"):
        parser.print_help()
        return EXIT_USAGE
    prog = " ".join(["dojo", *([args.command] if args.command else [])])
    return run_command(prog, lambda: args.func(args), debug=debug)


if __name__ == "__main__":
    sys.exit(main())
