"""Per-tensor-class bias state: the policy's memory (amax history, current bias, flag counts) as buffers.

Everything a bias policy remembers lives in registered buffers, so it travels with ``state_dict``,
safetensors checkpoints and DDP buffer broadcasts, and a resumed run makes exactly the same choices.
"""

from __future__ import annotations

import bisect
import math
from typing import NamedTuple

import torch
from torch import nn

from opendojo import numerics
from opendojo.nn.recipe import TensorPolicy
from opendojo.nn.seeds import shard_seed
from opendojo.numerics.blocks import block_fake_quantize
from opendojo.numerics.codec import fake_quantize_checked
from opendojo.numerics.formats import BIAS_MAX, BIAS_MIN

#: The numerics flags, counted per element.
FLAG_NAMES = ("overflow", "underflow", "invalid", "denormal")
#: Everything a bias_report counts: the flags, plus ±Inf inputs (the numerics flags leave Inf out:
#: it saturates to ±max by rule, but a trainer needs to see it).
COUNT_NAMES = (*FLAG_NAMES, "infinite")


def _finite_amax(x: torch.Tensor) -> tuple[float, int]:
    """(largest finite |x|, number of ±Inf elements); (0.0, 0) for an empty tensor.

    Inf/NaN are left out of the bias choice on purpose: one Inf would otherwise drag the bias to 0 and
    flush the rest of the tensor; instead it saturates to ±max and shows up in the counts.
    """
    if x.numel() == 0:
        return 0.0, 0
    x = x.detach()
    lo, hi = torch.aminmax(x)  # one pass, no |x| temporary: several times cheaper than x.abs().amax()
    a = max(-float(lo), float(hi))  # host floats: fewer tiny tensor ops per call
    if math.isfinite(a):
        return a, 0
    finite = torch.isfinite(x)
    a = torch.where(finite, x.abs(), torch.zeros((), dtype=x.dtype, device=x.device)).amax()
    return float(a), int(torch.isinf(x).sum())


class RoundingCall(NamedTuple):
    """What one rounding call may do: its stochastic-rounding ``seed``; ``update``: record amax, bias
    (training); ``count_flags``: collect the numerics flags into the counts (costly: see docs/nn.md);
    ``headroom``: binades of headroom added to the policy's margin for this call (the FP8 tensor-core
    path asks for one on gradients, so they stay below e5m2's Inf: docs/cfloat-spec.md, section 9)."""

    seed: int
    update: bool
    count_flags: bool
    headroom: int = 0


class OptionalStateModule(nn.Module):
    """A module whose buffers may be absent from a checkpoint: one saved before conversion has no CFloat
    state, and loading it keeps the fresh state instead of reporting missing keys (``strict=True`` works)."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if any(key.startswith(prefix) for key in state_dict):
            super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class TensorBias(OptionalStateModule):
    """Rounds one tensor class of a layer to its CFloat format and keeps its bias-policy state.

    Buffers (all scalars are 0-d): ``bias`` (int64, the last bias used; −1 before first use),
    ``amax_history`` (float32, newest first, finite amax of the tensor per training call: ``[history]``
    for the delayed policy, ``[1]`` (the last one) for the others),
    and the int64 event counts ``overflow``, ``underflow``, ``invalid``, ``denormal`` (elements, cumulative
    over the steps whose flags were counted, from the numerics flags) and ``infinite`` (±Inf inputs, which
    saturate silently; every training step).
    """

    def __init__(self, policy: TensorPolicy, device: torch.device | None = None):
        super().__init__()
        self.policy = policy
        self.format = None if policy.is_identity else numerics.get_format(policy.format)
        self.reduction_dim = -1  # the dimension per-block biases run along; the layer sets it
        # fmt.max(bias) for bias = 63, 62, ..., 0: ascending, for _choose_bias
        biases = range(BIAS_MAX, BIAS_MIN - 1, -1)
        self._maxima = [] if self.format is None else [self.format.max(b) for b in biases]
        self.register_buffer("bias", torch.full((), -1, dtype=torch.int64, device=device))
        # Only the delayed policy reads a window; the others keep just the last amax (for bias_report).
        window = policy.history if policy.bias == "delayed" else 1
        self.register_buffer("amax_history", torch.zeros(window, dtype=torch.float32, device=device))
        for name in COUNT_NAMES:
            self.register_buffer(name, torch.zeros((), dtype=torch.int64, device=device))

    def _choose_bias(self, amax: float, headroom: int = 0) -> int:
        """``numerics.choose_bias(amax, format, margin)`` by bisection in a table of the format's maxima.

        Same answer (tests hold it to numerics.choose_bias over many binades), ~50x cheaper than its
        linear scan: this runs four times per layer and step, on the host, between kernels.
        """
        need = amax * 2.0 ** (self.policy.margin + headroom)
        i = bisect.bisect_left(self._maxima, need)
        return max(BIAS_MAX - i, BIAS_MIN)

    def extra_repr(self) -> str:
        p = self.policy
        return f"{p.format}, rounding={p.rounding}, bias={p.bias}"

    def choose(self, amax: float, update: bool, headroom: int = 0) -> int:
        """The bias for a tensor whose finite amax is ``amax`` (``headroom`` extra binades); records
        ``amax`` when ``update``."""
        p = self.policy
        if p.bias == "fixed":
            bias = p.fixed_bias
        elif p.bias == "dynamic":
            bias = self._choose_bias(amax, headroom)
        else:  # delayed: the window's amax, from steps before this one; the first call has no history yet
            window = float(self.amax_history.max())
            bias = self._choose_bias(window if window > 0 else amax, headroom)
        if update:
            if self.amax_history.numel() > 1:
                self.amax_history.copy_(torch.roll(self.amax_history, 1))
                self.amax_history[0] = amax
            else:
                self.amax_history.fill_(amax)
            self.bias.fill_(bias)
        return int(bias)

    # The rounding runs eagerly under torch.compile: it reads tensors through raw pointers (the numerics
    # C kernel) and makes host-side bias decisions, neither of which a graph can hold.
    @torch.compiler.disable
    def forward(self, x: torch.Tensor, call: RoundingCall, avoid_top_code: bool = False) -> torch.Tensor:
        """``x`` rounded to the policy's format (values only, no autograd), same shape/dtype/device.

        Args:
            x: any float tensor.
            call: seed and what to record (see :class:`RoundingCall`).
            avoid_top_code: saturate at the second-largest magnitude instead of the largest, so that
                CFloat8_1_4_3 values fit ``float8_e4m3fn`` (the FP8 tensor-core path; see docs/nn.md).
        """
        if self.format is None:
            return x
        if _is_dtensor(x):
            return self._forward_sharded(x, call, avoid_top_code)
        amax, n_inf = _finite_amax(x)
        return self._round(x, amax, n_inf, call, avoid_top_code)

    def _forward_sharded(self, x, call: RoundingCall, avoid_top_code: bool):
        """A DTensor (an FSDP2-sharded weight between steps): round the local shard at the bias of the
        *global* amax (one all-reduce), with stochastic-rounding bits drawn per shard."""
        import torch.distributed as dist
        from torch.distributed.tensor import DTensor

        local = x.to_local()
        amax, n_inf = _finite_amax(local)
        amax_t = torch.tensor(amax, dtype=torch.float32, device=local.device)
        mesh = x.device_mesh
        for dim in range(mesh.ndim):
            dist.all_reduce(amax_t, op=dist.ReduceOp.MAX, group=mesh.get_group(dim))
        shard = mesh.get_rank()
        call = call._replace(seed=shard_seed(call.seed, shard))
        y = self._round(local, float(amax_t), n_inf, call, avoid_top_code)
        return DTensor.from_local(y, mesh, x.placements, shape=x.shape, stride=x.stride())

    def _round(self, x: torch.Tensor, amax: float, n_inf: int, call: RoundingCall, avoid_top_code: bool):
        bias = self.choose(amax, call.update, call.headroom)
        self.last_bias = bias  # scratch for the FP8 path, not state
        flags = numerics.Flags() if call.count_flags else None
        seed = call.seed if self.policy.rounding == "stochastic" else None
        if self.policy.block is not None:  # the bias recorded above is the per-tensor one: the coarsest
            y, _ = block_fake_quantize(x, self.format, self.reduction_dim, self.policy.block,
                                       self.policy.rounding, seed, self.policy.margin, flags)
            y = y.to(x.dtype)
        elif _is_plain(x):  # the policy and bias are valid by construction: skip the per-call checks
            y = fake_quantize_checked(x.detach(), self.format, bias, self.policy.rounding, seed, flags)
        else:  # let the public entry point name what is wrong with x
            y = numerics.fake_quantize(x, self.format, bias, rounding=self.policy.rounding, seed=seed,
                                       flags=flags)
        if avoid_top_code:
            limit = _second_largest(self.format, bias)
            y = y.clamp(-limit, limit)
        if flags is not None:
            for name in FLAG_NAMES:
                getattr(self, name).add_(int(getattr(flags, name)))
        if call.update and n_inf:
            self.infinite.add_(n_inf)  # cheap (known from the amax pass), so counted on every step
        return y


_PLAIN_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _is_plain(x: torch.Tensor) -> bool:
    """A dense float tensor (or nn.Parameter) the rounding kernels can read directly."""
    return x.dtype in _PLAIN_FLOATS and x.layout == torch.strided and type(x) in (torch.Tensor, nn.Parameter)


def _is_dtensor(x: torch.Tensor) -> bool:
    # Without importing torch.distributed on the hot path: DTensor is the only tensor subclass we split.
    return type(x).__name__ == "DTensor"


def _second_largest(fmt: object, bias: int) -> float:
    """The largest magnitude but one of ``fmt`` at ``bias``: decode of the code just below the top."""
    top = numerics.encode(torch.tensor([float("inf")]), fmt, bias)
    return float(numerics.decode(top - 1, fmt, bias)[0])
