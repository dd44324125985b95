"""CFloat arithmetic: add, mul, fma, matmul on :class:`CFloatTensor` operands
(docs/cfloat-spec.md, section 8).

Semantics (decided, bit-exact on every device): operands decode exactly to FP32; the operation runs in
IEEE FP32 (round to nearest even, denormals kept): ``add`` and ``mul`` one FP32 rounding, ``fma`` one
FP32 rounding of the exact ``a * b + c``, ``matmul`` an FP32 accumulator updated by one ``fma`` per
k in increasing k order, as D1's matrix units accumulate in FP32; then the FP32 result rounds once
into the destination format and bias. An FP32 result that overflowed to ±Inf from finite operands
saturates and counts as an overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from opendojo.numerics.bias import choose_bias
from opendojo.numerics.codec import _check_codes, decode, encode
from opendojo.numerics.flags import Flags
from opendojo.numerics.formats import CFloatFormat, check_bias, get_format


@dataclass(frozen=True)
class CFloatTensor:
    """CFloat codes with their format and bias carried together (like a scaled float8 tensor).

    ``codes``: torch uint8/uint16 tensor (numpy arrays and wider integer dtypes are converted and
    range-checked), any shape. The value of element i is ``decode(codes[i], fmt, bias)``.
    """

    codes: torch.Tensor
    fmt: CFloatFormat
    bias: int

    def __post_init__(self) -> None:
        fmt = get_format(self.fmt)
        codes = _check_codes(self.codes, fmt)
        if not isinstance(codes, torch.Tensor):
            codes = torch.from_numpy(np.array(codes))
        object.__setattr__(self, "fmt", fmt)
        object.__setattr__(self, "bias", check_bias(self.bias))
        object.__setattr__(self, "codes", codes)

    @classmethod
    def from_float(cls, x, fmt: CFloatFormat | str, bias: int | None = None, rounding: str = "nearest",
                   seed: int | None = None, flags: Flags | None = None) -> CFloatTensor:
        """Round ``x`` (tensor or array) into ``fmt``; ``bias=None`` picks ``choose_bias(x, fmt)``."""
        fmt = get_format(fmt)
        x = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
        bias = choose_bias(x, fmt) if bias is None else bias
        return cls(encode(x, fmt, bias, rounding, seed, flags), fmt, bias)

    def to_float(self) -> torch.Tensor:
        """The exact values as a float32 tensor on the codes' device."""
        return decode(self.codes, self.fmt, self.bias)

    @property
    def shape(self) -> torch.Size:
        return self.codes.shape

    def __repr__(self) -> str:
        return f"CFloatTensor(shape={tuple(self.shape)}, fmt={self.fmt.name}, bias={self.bias})"


def _operand(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, CFloatTensor):
        raise TypeError(f"{name} must be a CFloatTensor, got {type(x).__name__}")
    return x.to_float()


def _round_result(r32: torch.Tensor, fmt, bias, rounding, seed, flags, like):
    """One rounding of the FP32 result ``r32`` into the destination."""
    fmt = get_format(like.fmt if fmt is None else fmt)
    if bias is None:
        finite = r32[torch.isfinite(r32)]
        bias = choose_bias(finite, fmt) if finite.numel() else fmt.default_bias
    codes = encode(r32, fmt, bias, rounding, seed, flags)
    if flags is not None:
        # CFloat operands are finite, so an Inf is an FP32 overflow; encode saturates Inf without a flag.
        flags.overflow += int(torch.isinf(r32).sum())
    return CFloatTensor(codes, fmt, bias)


def _broadcast(*ts: torch.Tensor, names: tuple[str, ...]) -> None:
    try:
        torch.broadcast_shapes(*(t.shape for t in ts))
    except RuntimeError:
        shapes = ", ".join(f"{n}{tuple(t.shape)}" for n, t in zip(names, ts, strict=True))
        raise ValueError(f"operand shapes do not broadcast: {shapes}") from None


def add(a: CFloatTensor, b: CFloatTensor, fmt: CFloatFormat | str | None = None, bias: int | None = None,
        rounding: str = "nearest", seed: int | None = None, flags: Flags | None = None) -> CFloatTensor:
    """``a + b`` (broadcasting): FP32 add, one rounding into ``fmt`` (default a's) at ``bias``
    (default: :func:`choose_bias` of the FP32 result)."""
    x, y = _operand(a, "a"), _operand(b, "b")
    _broadcast(x, y, names=("a", "b"))
    r = x + y
    return _round_result(r, fmt, bias, rounding, seed, flags, a)


def mul(a: CFloatTensor, b: CFloatTensor, fmt: CFloatFormat | str | None = None, bias: int | None = None,
        rounding: str = "nearest", seed: int | None = None, flags: Flags | None = None) -> CFloatTensor:
    """``a * b`` (broadcasting): FP32 multiply, one rounding into the destination (see :func:`add`)."""
    x, y = _operand(a, "a"), _operand(b, "b")
    _broadcast(x, y, names=("a", "b"))
    r = x * y
    return _round_result(r, fmt, bias, rounding, seed, flags, a)


def fma32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """IEEE FP32 fused multiply-add of float32 tensors: ``a * b + c`` with one FP32 rounding (RNE).

    Done in FP64: the product of two FP32 values is exact there; the sum ``s`` is rounded once and
    its exact error ``e`` is recovered (TwoSum). Every FP32 rounding boundary is an FP64 number, so
    ``s`` rounds to FP32 like the exact value unless ``s`` sits exactly on a midpoint, where the sign
    of ``e`` breaks the tie (by moving ``s`` one FP64 ulp towards the exact value).
    """
    p = a.double() * b.double()
    cd = c.double()
    s = p + cd
    bp = s - cd
    e = (p - bp) + (cd - (s - bp))  # TwoSum: s + e == p + c exactly
    r = s.float()
    rd = r.double()
    other = 2 * s - rd  # the FP32 neighbour on the far side when s is a midpoint
    midpoint = torch.isfinite(r) & (s != rd) & (other.float().double() == other)
    toward = torch.where(e > 0, torch.full_like(s, torch.inf), torch.full_like(s, -torch.inf))
    nudged = torch.nextafter(s, toward)
    fix = midpoint & (e != 0)
    return torch.where(fix, nudged.float(), r)


def fma(a: CFloatTensor, b: CFloatTensor, c: CFloatTensor, fmt: CFloatFormat | str | None = None,
        bias: int | None = None, rounding: str = "nearest", seed: int | None = None,
        flags: Flags | None = None) -> CFloatTensor:
    """``a * b + c`` (broadcasting) with one FP32 rounding (:func:`fma32`), then one into the destination."""
    x, y, z = _operand(a, "a"), _operand(b, "b"), _operand(c, "c")
    _broadcast(x, y, z, names=("a", "b", "c"))
    r = fma32(x, y, z)
    return _round_result(r, fmt, bias, rounding, seed, flags, a)


def matmul(a: CFloatTensor, b: CFloatTensor, fmt: CFloatFormat | str | None = None, bias: int | None = None,
           rounding: str = "nearest", seed: int | None = None, flags: Flags | None = None) -> CFloatTensor:
    """``a @ b`` for ``a [..., M, K]`` and ``b [..., K, N]``: an FP32 accumulator (starting at +0) takes one
    :func:`fma32` per k in increasing order; the ``[..., M, N]`` result rounds once into the destination.
    Exact emulation, not a fast GEMM: cost is K fused steps over ``[M, N]``."""
    x, y = _operand(a, "a"), _operand(b, "b")
    if x.ndim < 2 or y.ndim < 2 or x.shape[-1] != y.shape[-2]:
        raise ValueError(f"matmul needs a [..., M, K] and b [..., K, N] with equal K, got a{tuple(x.shape)} "
                         f"and b{tuple(y.shape)}")
    try:
        batch = torch.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    except RuntimeError:
        raise ValueError(f"matmul batch dimensions do not broadcast: a{tuple(x.shape)}, "
                         f"b{tuple(y.shape)}") from None
    acc = torch.zeros((*batch, x.shape[-2], y.shape[-1]), dtype=torch.float32, device=x.device)
    for k in range(x.shape[-1]):
        acc = fma32(x[..., :, k : k + 1], y[..., k : k + 1, :], acc)
    return _round_result(acc, fmt, bias, rounding, seed, flags, a)
