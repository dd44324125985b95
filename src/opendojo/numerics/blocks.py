"""Per-block biases: one CFloat bias per block of ``block`` consecutive elements along one dimension.

Like the MX formats' shared power-of-two block scale, but the scale is CFloat's own 6-bit bias, so a
block's codes are ordinary CFloat codes at its bias (docs/cfloat-spec.md, section 10). Each block gets
the bias :func:`opendojo.numerics.choose_bias` would give it alone; the last block of a dimension whose
size is not a multiple of ``block`` is shorter.

The fast path uses the scaling identity: rounding ``x`` at bias ``B`` equals rounding ``x · 2^(B − B0)``
at bias ``B0`` and scaling back. Multiplying by a power of two is exact in FP32 here (scaled magnitudes
stay at or below the format's max at ``B0``; anything that would fall into FP32's denormal range rounds
to zero either way), and stochastic rounding draws the same random bits (they depend on the flat index
only), so the result is bit for bit the per-element rounding the reference defines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from opendojo.errors import check_int, check_positive
from opendojo.numerics.codec import fake_quantize
from opendojo.numerics.flags import Flags
from opendojo.numerics.formats import BIAS_MAX, BIAS_MIN, CFloatFormat, get_format
from opendojo.numerics.rounding import RoundMode


def block_bias(amax: torch.Tensor, fmt: CFloatFormat | str, margin: int = 0) -> torch.Tensor:
    """int32 like ``amax``: per entry, the largest bias in 0..63 with ``fmt.max(bias) ≥ amax·2^margin``.

    Exact (no logarithms): with ``need = m · 2^e`` (``torch.frexp``, ``m`` in [0.5, 1)) and
    ``fmt.max(0) = c · 2^(2^E)`` (``c = 1 − 2^−(M+1)``), the answer is ``2^E − e − [m > c]``, clamped to
    0..63. amax 0 gives 63; Inf gives 0. ``amax`` must be finite or +Inf and non-negative.
    """
    fmt = get_format(fmt)
    margin = check_int("margin", margin, low=0)
    need = amax.to(torch.float64) * 2.0 ** margin
    m, e = torch.frexp(need)
    c = 1.0 - 2.0 ** -(fmt.mantissa_bits + 1)
    bias = (1 << fmt.exponent_bits) - e.to(torch.int32) - (m > c).to(torch.int32)
    bias = torch.where(need == 0, torch.full_like(bias, BIAS_MAX), bias)
    bias = torch.where(torch.isinf(need), torch.full_like(bias, BIAS_MIN), bias)
    return bias.clamp(BIAS_MIN, BIAS_MAX)


def block_amax(x: torch.Tensor, dim: int, block: int) -> torch.Tensor:
    """Largest finite |x| of each block along ``dim``: x's shape with ``dim`` → ``ceil(size / block)``."""
    dim = dim % x.dim()
    a = x.detach().abs()
    if not bool(torch.isfinite(a).all()):  # Inf/NaN stay out of the bias choice, as for whole tensors
        a = torch.where(torch.isfinite(a), a, torch.zeros((), dtype=a.dtype, device=a.device))
    size = a.shape[dim]
    blocks = -(-size // block)
    if blocks * block != size:  # pad the short last block with zeros (they never raise an amax)
        a = F.pad(a.movedim(dim, -1), (0, blocks * block - size)).movedim(-1, dim)
    return a.reshape(*a.shape[:dim], blocks, block, *a.shape[dim + 1:]).amax(dim=dim + 1)


def block_fake_quantize(x: torch.Tensor, fmt: CFloatFormat | str, dim: int, block: int,
                        rounding: RoundMode | str = RoundMode.NEAREST, seed: int | None = None,
                        margin: int = 0, flags: Flags | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` rounded to ``fmt`` with one bias per block of ``block`` elements along ``dim``.

    Args:
        x: a float32 tensor, any shape (other dtypes are rounded through float32).
        dim: the blocked dimension (a GEMM's reduction dimension).
        block: elements per block (≥ 1); the last block may be shorter.
        rounding, seed: as :func:`fake_quantize` (the random bits follow x's flat index).
        margin: binades of headroom per block, as :func:`choose_bias`.
        flags: a :class:`Flags` to add the exception counts to, or None.
    Returns:
        (the rounded tensor, float32 like x; the int32 biases, x's shape with ``dim`` → number of blocks).
    """
    fmt = get_format(fmt)
    block = check_positive("block", block)
    biases = block_bias(block_amax(x, dim, block), fmt, margin)
    dim = dim % x.dim()
    shift = (biases - fmt.default_bias).repeat_interleave(block, dim=dim).narrow(dim, 0, x.shape[dim])
    scale = torch.ldexp(torch.ones_like(shift, dtype=torch.float32), shift)  # exact powers of two
    scaled = (x.float() * scale).contiguous()  # the kernel writes a contiguous out=
    fake_quantize(scaled, fmt, fmt.default_bias, rounding, seed, flags=flags, out=scaled)
    return scaled.div_(scale), biases  # dividing by a power of two is exact
