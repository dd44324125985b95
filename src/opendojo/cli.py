"""The ``dojo`` command. Thin: each subcommand parses its arguments and calls one function.

Each pillar registers its subcommands in its own ``_add_*`` function below, so the heavy imports
(torch, PyAV, DuckDB) happen only when that subcommand runs.
"""

from __future__ import annotations

import argparse
import sys

from opendojo import __version__


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"opendojo {__version__}")
    return 0


# --- numerics -------------------------------------------------------------------------------
def _add_numerics(sub: argparse._SubParsersAction) -> None:
    pass


# --- data -----------------------------------------------------------------------------------
def _size_arg(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 128x128") from None
    return h, w


def _cmd_data(args: argparse.Namespace) -> int:
    from opendojo import data

    try:
        if args.data_cmd == "synth":
            out = data.synth(args.out, clips=args.clips, cameras=args.cameras, frames=args.frames,
                             size=args.size, seed=args.seed, fps=args.fps, keyint=args.keyint)
            print(f"wrote {args.clips} drives to {out}")
        elif args.data_cmd == "ingest":
            report = data.ingest(args.sources, args.out, workers=args.workers, clip_frames=args.clip_frames,
                                 require_labels=args.require_labels, tags=args.tag)
            print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
            return 0 if report.ok else 1
        elif args.data_cmd == "query":
            table = data.query(args.dataset, args.where, out=args.out)
            n_clips = len(set(table.column("clip_id").to_pylist()))
            print(f"{table.num_rows} camera clips, {n_clips} clips match")
            for row in table.slice(0, args.show).to_pylist():
                print(f"  {row['clip_id']} {row['camera']:<12} frame {row['start_frame']:>6} {row['source']}")
            if args.out:
                print(f"subset manifest written to {args.out}")
        else:
            for key, value in data.stats(args.dataset).items():
                print(f"{key:>20}: {value:,.4f}" if isinstance(value, float) else f"{key:>20}: {value:,}")
    except (ValueError, FileNotFoundError) as e:
        print(f"dojo data {args.data_cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


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
    i.add_argument("--clip-frames", type=int, default=16)
    i.add_argument("--require-labels", action="store_true", help="a video without a JSON sidecar fails")
    i.add_argument("--tag", action="append", default=[], help="tag every ingested clip (repeatable)")
    i.set_defaults(func=_cmd_data)
    q = ds.add_parser("query", help="select clips with an SQL WHERE clause; --out writes a subset manifest")
    q.add_argument("dataset")
    q.add_argument("where", help='e.g. "speed_mean > 20 AND occupied_ahead > 0"')
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

    from opendojo.train import NonFiniteLossError, load_config, train

    try:
        config = load_config(args.config, _train_overrides(args))
        result = train(config, args.out, resume=args.resume, progress=not args.no_progress)
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
        print(f"done: {result.steps} steps in {result.wall_s:.1f} s, {result.samples_per_s:.1f} samples/s; "
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
def _add_hw_sim(sub: argparse._SubParsersAction) -> None:
    pass


# --- demo -----------------------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction) -> None:
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dojo", description="OpenDojo: Tesla's Dojo training system in software."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("version", help="print the OpenDojo version")
    p.set_defaults(func=_cmd_version)
    for add in (_add_numerics, _add_data, _add_train, _add_hw_sim, _add_demo):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
