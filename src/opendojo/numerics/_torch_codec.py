"""Encode with torch integer ops on the float bits: the portable path (CPU, CUDA, any device).

It implements exactly the reference's integer formulation (see reference.py) on int64 tensors:
``sig`` the input significand, ``s`` the number of dropped bits (clamped where the result no longer
depends on it), ``q = sig >> s`` plus a rounding increment, then ``((e - 1) << M) + q`` saturated.
It runs on CUDA tensors and wherever the compiled kernel is missing.
"""

from __future__ import annotations

import torch

from opendojo.numerics.formats import CFloatFormat
from opendojo.numerics.stochastic import RANDOM_BITS, random_bits_torch

# (int view dtype, mantissa bits, exponent bias, all-ones exponent field, |x| mask) of the input type
_BITS = {
    torch.float32: (torch.int32, 23, 127, 255, 0x7FFFFFFF),
    torch.float64: (torch.int64, 52, 1023, 2047, 0x7FFFFFFFFFFFFFFF),
}


def encode_flat(
    x: torch.Tensor,
    fmt: CFloatFormat,
    bias: int,
    rounding: str,
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
    view_dtype, MB, EB, FMAX, ABS = _BITS[x.dtype]
    M = fmt.mantissa_bits
    max_mag = fmt.max_magnitude_code

    bits = x.view(view_dtype).to(torch.int64)  # sign-extended: negative inputs are negative ints
    negative = bits < 0
    a = bits & ABS
    f = a >> MB
    man = a & ((1 << MB) - 1)
    is_nan = (f == FMAX) & (man != 0)
    sig = torch.where(f == 0, man, man | (1 << MB))
    fe = torch.clamp(f, min=1)
    e = torch.clamp(f - EB + bias, min=1)
    s = e - fe - bias - M + EB + MB  # dropped bits, >= 1 since M < MB
    s_int = torch.clamp(s, max=63)
    q = sig >> s_int
    low = sig - (q << s_int)
    if rounding == "nearest":
        half = torch.ones_like(s_int) << (s_int - 1)
        up = (low > half) | ((low == half) & ((q & 1) == 1))
        q = q + up.to(torch.int64)
    elif rounding == "stochastic":
        r = RANDOM_BITS
        y = torch.where(s >= r, low >> torch.clamp(s - r, 0, 63), low << torch.clamp(r - s, 0, 63))
        rnd = random_bits_torch(seed, x.numel(), x.device, index_offset)
        q = q + ((y + rnd) >> r)
    mag_unsat = ((e - 1) << M) + q
    mag = torch.clamp(mag_unsat, max=max_mag)
    mag = torch.where(is_nan, torch.full_like(mag, max_mag), mag)
    neg_live = negative & ~is_nan
    if fmt.signed:
        code = mag | (neg_live.to(torch.int64) << (fmt.bits - 1))
    else:
        code = torch.where(neg_live, torch.zeros_like(mag), mag)

    if not want_flags:
        return code, None
    finite = f != FMAX
    nonzero = a != 0
    uhp_neg = neg_live & nonzero if not fmt.signed else torch.zeros_like(nonzero)
    invalid = is_nan | uhp_neg
    live = finite & ~uhp_neg
    if orig_dtype != x.dtype:
        tiny = torch.finfo(orig_dtype).tiny
        in_denormal = (x != 0) & (x.abs() < tiny)
    else:
        in_denormal = (f == 0) & (man != 0)
    result_denormal = live & (mag > 0) & (mag < (1 << M))
    overflow = live & (mag_unsat > max_mag)
    underflow = live & nonzero & (mag < (1 << M)) & (low != 0)
    counts = {
        "invalid": int(invalid.sum()),
        "denormal": int((in_denormal | result_denormal).sum()),
        "overflow": int(overflow.sum()),
        "underflow": int(underflow.sum()),
    }
    return code, counts


# On CPU, int64 temporaries of a whole large array would be page-fault bound; chunks stay in cache.
# The random bits depend on the flat index only, so chunking never changes a code.
_CPU_CHUNK = 1 << 18


def encode_torch(x: torch.Tensor, fmt: CFloatFormat, bias: int, rounding: str, seed: int | None,
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
