"""The learning-rate schedule: linear warm-up, then cosine decay to a floor. A pure function of the step,
so resuming needs no scheduler state."""

from __future__ import annotations

import math

__all__ = ["learning_rate"]


def learning_rate(step: int, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate of the update made at 0-based ``step``.

    Warm-up: ``lr · (step + 1) / warmup_steps`` for ``step < warmup_steps``; then cosine from ``lr`` at
    ``warmup_steps`` to ``min_lr`` at ``total_steps`` (and ``min_lr`` after it).
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
