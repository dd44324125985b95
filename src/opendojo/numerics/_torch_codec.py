"""Encode with torch integer ops on the float bits: the portable path (CPU, CUDA, any device).

It implements exactly the reference's integer formulation (see reference.py) on int64 tensors:
``sig`` the input significand, ``s`` the number of dropped bits (clamped where the result no longer
depends on it), ``q = sig >> s`` plus a rounding increment, then ``((e - 1) << M) + q`` saturated.
It runs on CUDA tensors and wherever the compiled kernel is missing.
"""

from __future__ import annotations

import torch

from opendojo.numerics.formats import CFloatFormat
from opendojo.numerics.rounding import RoundMode
from opendojo.numerics.stochastic import RANDOM_BITS, random_bits_torch

# (int view dtype, mantissa bits, exponent bias, all-ones exponent field, |x| mask) of the input type
_BITS = {
    torch.float32: (torch.int32, 23, 127, 255, 0x7FFFFFFF),
    torch.float64: (torch.int64, 52, 1023, 2047, 0x7FFFFFFFFFFFFFFF),
}


def _fields(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The int64 bit fields of a float32/float64 tensor: sign, |x| bits, exponent field, mantissa."""
    view_dtype, MB, _, FMAX, ABS = _BITS[x.dtype]
    bits = x.view(view_dtype).to(torch.int64)  # sign-extended: negative inputs are negative ints
    a = bits & ABS
    f = a >> MB
    man = a & ((1 << MB) - 1)
    return {"negative": bits < 0, "a": a, "f": f, "man": man, "is_nan": (f == FMAX) & (man != 0)}


def _increment(q, low, s, s_int, rounding: RoundMode, seed, n: int, device, index_offset: int):
    """The rounding increment (0 or 1) of the truncated quotient ``q`` with dropped bits ``low``."""
    if rounding == RoundMode.NEAREST:
        half = torch.ones_like(s_int) << (s_int - 1)
        return ((low > half) | ((low == half) & ((q & 1) == 1))).to(torch.int64)
    if rounding == RoundMode.STOCHASTIC:
        r = RANDOM_BITS
        y = torch.where(s >= r, low >> torch.clamp(s - r, 0, 63), low << torch.clamp(r - s, 0, 63))
        return (y + random_bits_torch(seed, n, device, index_offset)) >> r
    return torch.zeros_like(q)


def _flag_counts(x, orig_dtype, fmt: CFloatFormat, fld, mag, mag_unsat, low, neg_live) -> dict[str, int]:
    """Exception flag counts of one encode (see reference.py for their definitions)."""
    M = fmt.mantissa_bits
    FMAX = _BITS[x.dtype][3]
    nonzero = fld["a"] != 0
    uhp_neg = neg_live & nonzero if not fmt.signed else torch.zeros_like(nonzero)
    live = (fld["f"] != FMAX) & ~uhp_neg
    if orig_dtype != x.dtype:  # float16/bfloat16 widened: denormal in their own format
        in_denormal = (x != 0) & (x.abs() < torch.finfo(orig_dtype).tiny)
    else:
        in_denormal = (fld["f"] == 0) & (fld["man"] != 0)
    result_denormal = live & (mag > 0) & (mag < (1 << M))
    return {
        "invalid": int((fld["is_nan"] | uhp_neg).sum()),
        "denormal": int((in_denormal | result_denormal).sum()),
        "overflow": int((live & (mag_unsat > fmt.max_magnitude_code)).sum()),
        "underflow": int((live & nonzero & (mag < (1 << M)) & (low != 0)).sum()),
    }


def encode_flat(
    x: torch.Tensor,
    fmt: CFloatFormat,
    bias: int,
    rounding: RoundMode,
    seed: int | None,
    want_flags: bool,
    index_offset: int = 0,
) -> tuple[torch.Tensor, dict[str, int] | None]:
    """Codes (int64, ``[n]``) of the flat float tensor ``x``; and flag counts if ``want_flags``.

    float16/bfloat16 inputs are widened exactly to float32 first (the input-denormal flag still
    refers to their own format).
    """
    orig_dtype = x.dtype
    if orig_dtype in (torch.float16, torch.bfloat16):
        x = x.to(torch.float32)
    _, MB, EB, _, _ = _BITS[x.dtype]
    M = fmt.mantissa_bits
    fld = _fields(x)
    f = fld["f"]
    sig = torch.where(f == 0, fld["man"], fld["man"] | (1 << MB))
    e = torch.clamp(f - EB + bias, min=1)
    s = e - torch.clamp(f, min=1) - bias - M + EB + MB  # dropped bits, >= 1 since M < MB
    s_int = torch.clamp(s, max=63)
    q = sig >> s_int
    low = sig - (q << s_int)
    q = q + _increment(q, low, s, s_int, rounding, seed, x.numel(), x.device, index_offset)
    mag_unsat = ((e - 1) << M) + q
    mag = torch.clamp(mag_unsat, max=fmt.max_magnitude_code)
    mag = torch.where(fld["is_nan"], torch.full_like(mag, fmt.max_magnitude_code), mag)
    neg_live = fld["negative"] & ~fld["is_nan"]
    if fmt.signed:
        code = mag | (neg_live.to(torch.int64) << (fmt.bits - 1))
    else:
        code = torch.where(neg_live, torch.zeros_like(mag), mag)
    if not want_flags:
        return code, None
    return code, _flag_counts(x, orig_dtype, fmt, fld, mag, mag_unsat, low, neg_live)


# On CPU, int64 temporaries of a whole large array would be page-fault bound; chunks stay in cache.
# The random bits depend on the flat index only, so chunking never changes a code.
_CPU_CHUNK = 1 << 18


def encode_torch(x: torch.Tensor, fmt: CFloatFormat, bias: int, rounding: RoundMode, seed: int | None,
                 flags_counts: dict[str, int] | None) -> torch.Tensor:
    """Codes (int64, x's shape) of any float tensor; adds flag counts into ``flags_counts`` if given."""
    flat = x.reshape(-1)
    n = flat.numel()
    step = _CPU_CHUNK if flat.device.type == "cpu" else max(n, 1)
    parts = []
    for start in range(0, n, step):
        codes, counts = encode_flat(flat[start : start + step], fmt, bias, rounding, seed,
                                    flags_counts is not None, index_offset=start)
        parts.append(codes)
        if flags_counts is not None:
            for k, v in counts.items():
                flags_counts[k] = flags_counts.get(k, 0) + v
    codes = torch.cat(parts) if len(parts) != 1 else parts[0]
    return codes.reshape(x.shape) if n else torch.zeros(x.shape, dtype=torch.int64, device=x.device)
