"""torch.distributed plumbing: rank discovery, process group, DDP / FSDP2 wrapping, and the torchrun launch.

The trainer runs the same code on one process or many. Under ``torchrun`` (or ``dojo train --nproc N``,
which starts torchrun itself) the environment carries ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; the
process group uses NCCL on CUDA and gloo on the CPU.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")

__all__ = [
    "PeerFailure",
    "on_main",
    "DistContext",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "gather_objects",
    "init_distributed",
    "launch_torchrun",
    "wrap_model",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(preference: str, local_rank: int) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "config key train.device: 'cuda' was asked for but no CUDA device is available; "
            "allowed here: auto, cpu"
        )
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Read the torchrun environment, pick the device and (for a world size > 1) join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _pick_device(device_preference, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            device_id=device if device.type == "cuda" else None,
        )
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device)


def wrap_model(model: nn.Module, ctx: DistContext, fsdp: bool) -> nn.Module:
    """DDP (replicated weights, averaged gradients) or FSDP2 (``fully_shard`` per block, then the root).

    With one process and no FSDP the model is returned as is. FSDP2 also works with one process (useful
    to test the sharded code path).
    """
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        if not dist.is_initialized():
            raise ValueError("train.fsdp=true needs a process group: launch with --nproc N or torchrun")
        # Shard each repeated block separately so only one block's full weights exist at a time.
        for module in model.modules():
            if type(module).__name__ in ("_Block", "_ConvStage"):
                fully_shard(module)
        return fully_shard(model)
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    return model


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``t`` over all ranks (in place, and returned); a no-op on one process."""
    if ctx.distributed:
        # gloo cannot reduce CUDA float64 everywhere and NCCL cannot reduce CPU tensors: move if needed.
        on = t.to(ctx.device) if ctx.device.type == "cuda" else t
        dist.all_reduce(on)
        if on is not t:
            t.copy_(on.cpu())
    return t


def launch_torchrun(nproc: int, argv: list[str], *, max_restarts: int = 0) -> int:
    """Run torchrun (``--standalone --nproc-per-node N -m opendojo.train ARGV``) in this process.

    Returns the exit status of the first rank that failed (0 when all succeed): each rank reports its own
    error in one line, so torchrun's own traceback of the failure is not shown. A rank killed by a signal
    raises ``RuntimeError`` naming the rank and the signal. On the CPU each rank gets
    one thread (torchrun's default ``OMP_NUM_THREADS=1``), so N ranks use N cores.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"--nproc must be a positive int, got {nproc!r}")
    args = parse_args(
        [
            "--standalone",
            f"--nproc-per-node={nproc}",
            f"--max-restarts={max_restarts}",
            "-m",
            "opendojo.train",
            *argv,
        ]
    )
    try:
        run(args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        if failure.exitcode < 0:  # killed by a signal (the OOM killer's SIGKILL): it could say nothing itself
            name = signal.Signals(-failure.exitcode).name
            raise RuntimeError(f"rank {rank} was killed by {name} (out of memory?)") from None
        return failure.exitcode
    return 0


def barrier(ctx: DistContext) -> None:
    """Wait for all ranks (no-op on one process)."""
    if ctx.distributed:
        dist.barrier()


def gather_objects(obj: object, ctx: DistContext) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: object, ctx: DistContext) -> object:
    """Rank 0's ``obj`` on every rank (a collective: every rank waits for rank 0)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class PeerFailure(RuntimeError):
    """Raised on the other ranks when rank 0 failed in :func:`on_main` (rank 0 reports the error itself)."""


def on_main(fn: Callable[[], T], ctx: DistContext) -> T | None:
    """``fn()`` on rank 0 only; every rank returns together, and when it fails every rank raises (rank 0
    the error itself, the others :class:`PeerFailure`), instead of the others waiting for it forever."""
    error: Exception | None = None
    result = None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as e:  # shared below, then raised on rank 0 as it is
            error = e
    failure = broadcast_object(None if error is None else f"{type(error).__name__}: {error}", ctx)
    if error is not None:
        raise error
    if failure is not None:
        raise PeerFailure(f"rank 0 failed: {failure}")
    return result
