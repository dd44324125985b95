"""Choosing the exponent bias of a tensor from its absolute maximum."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from opendojo.errors import UsageError, check_int
from opendojo.numerics.formats import BIAS_MAX, BIAS_MIN, CFloatFormat, get_format


def _amax(x_or_amax) -> float:
    if isinstance(x_or_amax, torch.Tensor):
        t = x_or_amax.detach()
        if not t.dtype.is_floating_point:
            raise TypeError(f"x_or_amax must be a float tensor or a number, got dtype {t.dtype}")
        amax = float(t.abs().max()) if t.numel() else 0.0
        if t.numel() == 1 and t.ndim == 0:
            amax = float(t)
    elif isinstance(x_or_amax, numbers.Real) and not isinstance(x_or_amax, bool):
        amax = float(x_or_amax)
    else:
        a = np.asarray(x_or_amax)
        if a.dtype.kind != "f":
            raise TypeError(f"x_or_amax must be a float array/tensor or a number, got dtype {a.dtype}")
        amax = float(np.max(np.abs(a))) if a.ndim else float(a)
        if a.size == 0:
            amax = 0.0
    if math.isnan(amax) or amax < 0:
        raise UsageError(f"x_or_amax: got absolute maximum {amax}; allowed: a non-negative number")
    return amax


def choose_bias(x_or_amax, fmt: CFloatFormat | str, margin: int = 0) -> int:
    """The largest bias in ``BIASES`` (0..63) whose ``fmt.max(bias)`` still covers ``amax * 2**margin``.

    ``x_or_amax``: a tensor/array (its absolute maximum is used) or the absolute maximum itself (a
    non-negative number). The largest such bias gives the most precision without saturating.
    ``margin``: extra binades of headroom (an integer >= 0): each one halves the largest representable
    value used, i.e. lowers the bias by one, so values may grow 2**margin-fold before saturating.
    amax 0 gives 63; an amax above ``fmt.max(0)`` (or Inf) gives 0 (saturation cannot be avoided).
    """
    fmt = get_format(fmt)
    margin = check_int("margin", margin, low=0)
    amax = _amax(x_or_amax)
    if amax == 0:
        return BIAS_MAX
    need = amax * 2.0 ** int(margin)
    for bias in range(BIAS_MAX, BIAS_MIN - 1, -1):
        if fmt.max(bias) >= need:
            return bias
    return BIAS_MIN
