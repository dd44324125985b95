"""Parallel layouts: how a training step is split over the devices of a system.

``dp × tp × pp`` must equal the device count. ``microbatch`` is the samples per micro-batch on one
data-parallel replica; ``batch / dp / microbatch`` micro-batches run per step (gradient accumulation,
or the pipeline's micro-batches). ``zero`` shards the optimizer state and fp32 master weights over the
data-parallel group (ZeRO-1 / Megatron's distributed optimizer); ``recompute`` keeps only each block's
input and recomputes the rest in the backward pass (one extra forward); ``vp`` gives each device ``vp``
non-adjacent chunks of layers (interleaved 1F1B): the bubble shrinks ``vp``-fold, stage-boundary
sends grow ``vp``-fold (Narayanan et al. 2021).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """A parallel layout; see the module docstring."""

    dp: int = 1
    tp: int = 1
    pp: int = 1
    microbatch: int = 1
    zero: bool = False
    recompute: bool = False
    vp: int = 1  # virtual pipeline stages per device (Megatron's interleaved 1F1B)

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.pp

    def describe(self) -> str:
        extra = (", zero-1" if self.zero else "") + (", recompute" if self.recompute else "")
        vp = f", vp={self.vp}" if self.vp > 1 else ""
        return f"dp={self.dp}, tp={self.tp}, pp={self.pp}{vp}, microbatch={self.microbatch}{extra}"


_KEYS = {"dp", "tp", "pp", "vp", "mb", "microbatch", "zero", "recompute"}


def parse_parallel(text: str | dict | Layout | None) -> dict[str, int] | Layout | None:
    """``"dp=8,tp=4,pp=2"`` (any subset; ``mb``, ``zero=0|1``, ``recompute=0|1`` too) → a dict of the
    fixed choices (the rest is searched), or a ready :class:`Layout` passed through."""
    if text is None or isinstance(text, Layout):
        return text
    if isinstance(text, dict):
        items = text.items()
    elif isinstance(text, str):
        items = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"parallel={text!r}: {part!r} is not key=value; e.g. dp=8,tp=4,pp=2")
            items.append((key.strip(), value.strip()))
    else:
        raise TypeError(f"parallel must be a string like 'dp=8,tp=4,pp=2', a dict or a Layout, got {text!r}")
    out: dict[str, int] = {}
    for key, value in items:
        if key not in _KEYS:
            raise ValueError(f"parallel: unknown key {key!r}; allowed: {', '.join(sorted(_KEYS))}")
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"parallel: {key}={value!r} is not an integer") from None
        if n < (0 if key in ("zero", "recompute") else 1):
            raise ValueError(f"parallel: {key}={n} must be >= 1")
        out["microbatch" if key == "mb" else key] = n
    return out
