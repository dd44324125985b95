"""Graceful stop: on SIGTERM, finish the current step, save a checkpoint and exit with ``EXIT_PREEMPTED``.

A scheduler that needs the slot back (the training service, SageMaker's StopTrainingJob, Kubernetes)
sends SIGTERM and waits a grace period. The handler only raises a flag; the training loop looks at it
once per step, after the optimizer step, so the checkpoint holds a whole step and ``--resume`` continues
bit-identically. Under torchrun every rank must stop at the same step (saving is collective), so the
ranks agree on the flag with one tiny all-reduce.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import torch

__all__ = ["Preempted", "install", "requested", "stop_agreed"]

_flag = threading.Event()


class Preempted(Exception):
    """Training stopped on request after ``step`` steps; ``checkpoint`` is where ``--resume`` continues."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"stopped on SIGTERM after step {step}; checkpoint {checkpoint}; "
                         "continue with --resume")
        self.step, self.checkpoint = step, checkpoint


def _on_sigterm(signum: int, frame: object) -> None:
    _flag.set()


def install() -> None:
    """Turn SIGTERM into a stop request for this process (main thread only; elsewhere a no-op)."""
    _flag.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def requested() -> bool:
    """Whether this process has been asked to stop."""
    return _flag.is_set()


def stop_agreed(ctx) -> bool:
    """Whether any rank was asked to stop (one scalar all-reduce when distributed; ``ctx`` a DistContext)."""
    if not getattr(ctx, "distributed", False):
        return requested()
    from opendojo.train import distributed as D

    return bool(D.all_reduce_sum(torch.tensor([float(requested())]), ctx).item() > 0)
