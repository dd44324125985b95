"""The slow, exact scalar reference for CFloat (Python integers and fractions; no floating point maths).

Every fast kernel (C, torch ops) is held to these functions by the tests. The semantics are those of
docs/cfloat-spec.md; in one place:

* ``a = |x|``; exponent ``k = floor(log2 a)``; biased exponent ``e = max(k + bias, 1)``;
  quantum ``ulp = 2**(e - bias - M)``; ``t = a / ulp``.
* nearest: ``q = round(t)``, ties to even; toward_zero: ``q = floor(t)``;
  stochastic: ``q = floor(t + R / 2**16)`` with ``R`` the 16 random bits of (seed, index)
  (= add 16 random bits below the kept LSB and truncate).
* magnitude code ``((e - 1) << M) + q`` (a carry out of the mantissa bumps the exponent, and the
  denormal range ``e == 1, q < 2**M`` falls out unchanged); above the largest code it saturates.
* NaN: +max and Invalid. ±Inf: ±max, no flag (not a finite overflow). UHP: negative nonzero -> 0 and
  Invalid; -0 -> 0 without a flag. Zero keeps its sign in signed formats.

Flags for one element (a set of names): ``invalid``, ``denormal`` (input denormal in its own input
format, or the result code denormal), ``overflow`` (finite input whose rounded magnitude exceeds max),
``underflow`` (nonzero finite input whose result is zero or denormal and inexact).
"""

from __future__ import annotations

import math
from fractions import Fraction

from opendojo.numerics.formats import IEEE_FORMATS, CFloatFormat, check_bias, get_format
from opendojo.numerics.rounding import RoundMode, check_rounding
from opendojo.numerics.stochastic import RANDOM_BITS


def decode(code: int, fmt: CFloatFormat | str, bias: int) -> Fraction:
    """The exact value of ``code`` (a Python int in ``0 .. 2**bits - 1``); -0 is returned as 0."""
    fmt = get_format(fmt)
    bias = check_bias(bias)
    if not 0 <= code < 1 << fmt.bits:
        raise ValueError(f"code must be in 0..{(1 << fmt.bits) - 1}, got {code}")
    M = fmt.mantissa_bits
    negative = bool(code & fmt.sign_mask)
    mag = code & fmt.max_magnitude_code
    e, m = mag >> M, mag & ((1 << M) - 1)
    if e == 0:
        value = Fraction(m, 1 << M) * Fraction(2) ** (1 - bias)
    else:
        value = (1 + Fraction(m, 1 << M)) * Fraction(2) ** (e - bias)
    return -value if negative else value


def decode_float(code: int, fmt: CFloatFormat | str, bias: int) -> float:
    """:func:`decode` as a Python float, with the sign of zero kept (every CFloat value is exact in FP64)."""
    fmt = get_format(fmt)
    v = float(decode(code, fmt, bias))
    return -0.0 if (v == 0 and code & fmt.sign_mask) else v


def _floor_log2(a: Fraction) -> int:
    k = a.numerator.bit_length() - a.denominator.bit_length()
    # 2**k <= a < 2**(k+1) after at most one correction step
    if Fraction(2) ** k > a:
        k -= 1
    return k


def _is_input_denormal(x: float | Fraction, input_format: str) -> bool:
    if x == 0 or isinstance(x, Fraction) or not math.isfinite(x):
        return False
    return abs(x) < IEEE_FORMATS[input_format].smallest_normal


def _round_quotient(t: Fraction, rounding: RoundMode, random: int | None) -> int:
    """``t`` (a value in units of the kept LSB) rounded to an integer by ``rounding``."""
    fl = math.floor(t)
    if rounding == RoundMode.TOWARD_ZERO:
        return fl
    if rounding == RoundMode.NEAREST:
        rem = t - fl
        return fl + (1 if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2 == 1) else 0)
    if random is None or not 0 <= random < 1 << RANDOM_BITS:
        raise ValueError(f"random must be an int in [0, 2**{RANDOM_BITS}) for stochastic, got {random!r}")
    return math.floor(t + Fraction(random, 1 << RANDOM_BITS))


def _special(x: float | Fraction, fmt: CFloatFormat, flags: set[str]) -> int | None:
    """The code of a NaN, an infinity, a zero or a negative input of an unsigned format; else None."""
    max_mag = fmt.max_magnitude_code
    if isinstance(x, float) and math.isnan(x):
        flags.add("invalid")
        return max_mag
    negative = (x < 0) or (isinstance(x, float) and x == 0 and math.copysign(1.0, x) < 0)
    if negative and not fmt.signed:
        if x != 0:
            flags.add("invalid")
        return 0
    sign = fmt.sign_mask if negative else 0
    if isinstance(x, float) and math.isinf(x):
        return sign | max_mag
    return sign if x == 0 else None


def encode(
    x: float | Fraction,
    fmt: CFloatFormat | str,
    bias: int,
    rounding: RoundMode | str = RoundMode.NEAREST,
    random: int | None = None,
    input_format: str = "float64",
) -> tuple[int, set[str]]:
    """Encode one value; return ``(code, flags)``.

    ``x``: a Python float (its exact binary value is used) or a Fraction. ``random``: the 16 random
    bits for stochastic rounding (see :func:`opendojo.numerics.stochastic.random_bits`).
    ``input_format``: the IEEE format x came from, for the input-denormal flag.
    """
    fmt = get_format(fmt)
    bias = check_bias(bias)
    rounding = check_rounding(rounding)
    flags: set[str] = {"denormal"} if _is_input_denormal(x, input_format) else set()
    special = _special(x, fmt, flags)
    if special is not None:
        return special, flags
    M = fmt.mantissa_bits
    sign = fmt.sign_mask if x < 0 else 0
    a = abs(Fraction(x))
    e = max(_floor_log2(a) + bias, 1)
    t = a / Fraction(2) ** (e - bias - M)
    mag = ((e - 1) << M) + _round_quotient(t, rounding, random)
    if mag > fmt.max_magnitude_code:
        flags.add("overflow")
        mag = fmt.max_magnitude_code
    if mag < (1 << M):
        if t != math.floor(t):
            flags.add("underflow")
        if mag != 0:
            flags.add("denormal")
    return sign | mag, flags


def round_fp32(x: Fraction) -> float:
    """IEEE FP32 round-to-nearest-even of an exact value (denormals kept; beyond the range: ±Inf)."""
    if x == 0:
        return 0.0
    a = abs(x)
    e = max(_floor_log2(a), -126)
    t = a / Fraction(2) ** (e - 23)
    fl = math.floor(t)
    rem = t - fl
    q = fl + (1 if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2 == 1) else 0)
    value = Fraction(q) * Fraction(2) ** (e - 23)
    if value >= Fraction(2) ** 128:
        return math.copysign(math.inf, x)
    return float(-value if x < 0 else value)


def fma_fp32(a: Fraction, b: Fraction, c: Fraction) -> float:
    """FP32 fused multiply-add of exact FP32 operands: one rounding of ``a * b + c``."""
    return round_fp32(a * b + c)
