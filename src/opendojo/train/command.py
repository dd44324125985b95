"""The ``dojo train`` command: its arguments and what it runs, shared by ``dojo train`` and
``python -m opendojo.train`` (what torchrun starts on every rank).

Importing this module is cheap (no torch): the ``dojo`` parser is built for every command.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from opendojo.errors import EXIT_FAILURE, EXIT_OK, EXIT_PREEMPTED, check_int, printable, run_command
from opendojo.train.config import PRECISIONS

__all__ = ["add_train_arguments", "main", "run_train"]

_PEER_GRACE_S = 2.0


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``dojo train``, on ``p``."""
    p.add_argument("--config", required=True, help="training config, TOML (e.g. configs/tiny.toml)")
    p.add_argument("--out", required=True, help="run folder: metrics.jsonl, checkpoints/, plots/")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--checkpoint-every", type=int, help="override train.checkpoint_every (steps)")
    p.add_argument("--set", action="append", metavar="TABLE.KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("--precision", choices=PRECISIONS, help="override train.precision")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest valid checkpoint in --out (an unreadable newer one is "
                        "skipped with a warning)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="continue from this checkpoint folder (implies --resume)")
    p.add_argument("--nproc", type=int, default=1, help="processes on this machine (starts torchrun)")
    p.add_argument("--max-restarts", type=int, default=0,
                   help="torchrun restarts after a failed rank (with --nproc)")
    p.add_argument("--fsdp", action="store_true",
                   help="shard parameters with FSDP2 (needs >1 process or torchrun)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.set or [])
    for key, value in (("steps", args.steps), ("checkpoint_every", args.checkpoint_every),
                       ("precision", args.precision)):
        if value is not None:
            overrides.append(f"train.{key}={value}")
    if args.fsdp:
        overrides.append("train.fsdp=true")
    return overrides


def _launch(args: argparse.Namespace) -> int:
    """Start torchrun with the same arguments minus ``--nproc``, once the config is known to be valid
    (a usage error is reported here once, not by every rank)."""
    from opendojo.train.config import load_config
    from opendojo.train.distributed import launch_torchrun

    load_config(args.config, _overrides(args))
    check_int("--max-restarts", args.max_restarts, low=0)
    argv = ["--config", args.config, "--out", args.out] + ["--set=" + o for o in _overrides(args)]
    argv += ["--resume"] if args.resume else []
    argv += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    argv += ["--no-progress"] if args.no_progress else []
    return launch_torchrun(args.nproc, argv, max_restarts=args.max_restarts)


def run_train(args: argparse.Namespace) -> int:
    """Run ``dojo train`` with parsed ``args``; exceptions are left to :func:`opendojo.errors.run_command`."""
    check_int("--nproc", args.nproc, low=1)
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:
        return _launch(args)
    import torch.distributed as dist

    from opendojo.train import preempt
    from opendojo.train.config import load_config
    from opendojo.train.distributed import PeerFailure
    from opendojo.train.loop import train

    preempt.install()  # SIGTERM: checkpoint at the end of the step, exit EXIT_PREEMPTED (docs/training.md)
    try:
        config = load_config(args.config, _overrides(args))
        result = train(config, args.out, resume=args.resume or bool(args.checkpoint),
                       checkpoint=args.checkpoint, progress=not args.no_progress)
    except preempt.Preempted as e:
        print(f"dojo train: {e}", file=sys.stderr)
        return EXIT_PREEMPTED
    except PeerFailure:
        # Rank 0 failed and reports why (one line is enough). Let it exit first: torchrun stops the other
        # ranks as soon as one exits, and returns the exit status of the first to fail.
        time.sleep(_PEER_GRACE_S)
        return EXIT_FAILURE
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
        print(f"run folder: {printable(result.out_dir)}  (metrics.jsonl, checkpoints/, plots/)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m opendojo.train ARGS``: the same command as ``dojo train ARGS``."""
    parser = argparse.ArgumentParser(prog="dojo train", description="Train the FSD-style video network.")
    add_train_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run_command("dojo train", lambda: run_train(args), debug=args.debug)
