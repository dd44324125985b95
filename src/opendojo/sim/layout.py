"""Parallel layouts: how a training step is split over the devices of a system.

``dp × tp × pp`` must equal the device count. ``microbatch`` is the samples per micro-batch on one
data-parallel replica; ``batch / dp / microbatch`` micro-batches run per step (gradient accumulation,
or the pipeline's micro-batches). ``zero`` is the ZeRO stage over the data-parallel group (Rajbhandari et
al. 2020): 1 shards the optimizer state and fp32 master weights (Megatron's distributed optimizer),
2 also the gradients (each micro-batch's gradient is reduce-scattered into its shard; FSDP's
``SHARD_GRAD_OP``, what Llama 3 used: weights not resharded after the forward pass); ``recompute`` keeps
only each block's input and recomputes the rest in the backward pass (one extra forward); ``vp`` gives
each device ``vp`` non-adjacent chunks of layers (interleaved 1F1B): the bubble shrinks ``vp``-fold,
stage-boundary sends grow ``vp``-fold (Narayanan et al. 2021). ``sp`` (tp > 1 only): Megatron sequence
parallelism (Korthikanti et al. 2022): the norms and the activations outside the tensor-parallel GEMMs
are split over the sequence across the TP group too, the TP all-reduce becoming a reduce-scatter +
all-gather of the same volume; without it those activations and norms are replicated on every TP rank.
Korthikanti's *selective* recomputation (recompute only the attention scores/softmax) is not a separate
option: the capture uses fused (flash) attention, which never stores the scores and recomputes them in
its backward kernel already (counted there), so selective recomputation coincides with ``recompute=0``.
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
    zero: int = 0  # ZeRO stage 0, 1 or 2 (a bool is stage 0 or 1)
    recompute: bool = False
    vp: int = 1  # virtual pipeline stages per device (Megatron's interleaved 1F1B)
    sp: bool = False  # sequence parallelism over the TP group (meaningful with tp > 1)

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.pp

    def describe(self) -> str:
        extra = ((f", zero-{int(self.zero)}" if self.zero else "")
                 + (", sp" if self.sp and self.tp > 1 else "") + (", recompute" if self.recompute else ""))
        vp = f", vp={self.vp}" if self.vp > 1 else ""
        return f"dp={self.dp}, tp={self.tp}, pp={self.pp}{vp}, microbatch={self.microbatch}{extra}"


_KEYS = {"dp", "tp", "pp", "vp", "mb", "microbatch", "zero", "recompute", "sp"}
#: Largest value of each 0-based switch.
_SWITCHES = {"zero": 2, "recompute": 1, "sp": 1}


def parse_parallel(text: str | dict | Layout | None) -> dict[str, int] | Layout | None:
    """``"dp=8,tp=4,pp=2"`` (any subset; ``mb``, ``zero=0|1|2``, ``recompute=0|1``, ``sp=0|1`` too) → a
    dict of the fixed choices (the rest is searched), or a ready :class:`Layout` passed through."""
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
        if key in _SWITCHES:
            if not 0 <= n <= _SWITCHES[key]:
                allowed = ", ".join(map(str, range(_SWITCHES[key] + 1)))
                raise ValueError(f"parallel: {key}={n}; allowed {allowed}")
        elif n < 1:
            raise ValueError(f"parallel: {key}={n} must be >= 1")
        out["microbatch" if key == "mb" else key] = n
    return out
