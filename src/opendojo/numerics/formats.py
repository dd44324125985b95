"""CFloat formats as data (Tesla's CFloat whitepaper; docs/cfloat-spec.md states
every rule the code implements, docs/numerics.md how to use it).

A :class:`CFloatFormat` describes the bit layout only; the exponent bias is tensor metadata (an
integer 0..63) passed next to the codes, so every finfo-style quantity takes the bias as argument.

Values of a format with ``E`` exponent bits, ``M`` mantissa bits and bias ``B``:

* exponent field ``e`` in ``1 .. 2**E - 1`` (all-ones included, there is no Inf/NaN):
  ``±(1 + m / 2**M) * 2**(e - B)``
* ``e == 0``: ``±(m / 2**M) * 2**(1 - B)`` (zero when ``m == 0``; the sign of zero is kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opendojo.errors import check_choice, check_int

BIAS_MIN = 0
BIAS_MAX = 63  # the bias is an unsigned 6-bit field in the paper
BIASES = range(BIAS_MIN, BIAS_MAX + 1)  #: every legal bias, the one statement of the range


def check_bias(bias: object, name: str = "bias") -> int:
    """Return ``bias`` as a Python int after checking it is an integer in 0..63 (a UsageError otherwise)."""
    if type(bias) is int and BIAS_MIN <= bias <= BIAS_MAX:  # the common case, without the ABC check
        return bias
    return check_int(name, bias, low=BIAS_MIN, high=BIAS_MAX)


@dataclass(frozen=True)
class CFloatFormat:
    """One CFloat bit layout: ``bits = signed + exponent_bits + mantissa_bits`` (sign, exponent, mantissa
    from the most significant bit). ``default_bias`` is only a convenient starting point."""

    name: str
    exponent_bits: int
    mantissa_bits: int
    signed: bool
    bits: int
    default_bias: int

    def __post_init__(self) -> None:
        if self.bits != int(self.signed) + self.exponent_bits + self.mantissa_bits:
            raise ValueError(f"format {self.name}: bits={self.bits} != sign + exponent + mantissa bits")
        if self.bits not in (8, 16):
            raise ValueError(f"format {self.name}: bits must be 8 or 16, got {self.bits}")
        check_bias(self.default_bias, "default_bias")

    # --- codes -------------------------------------------------------------------------------
    @property
    def max_magnitude_code(self) -> int:
        """Largest code without the sign bit (all exponent and mantissa bits set)."""
        return (1 << (self.exponent_bits + self.mantissa_bits)) - 1

    @property
    def sign_mask(self) -> int:
        """The sign bit of a code (0 for unsigned formats)."""
        return (1 << (self.bits - 1)) if self.signed else 0

    @property
    def code_dtype(self) -> np.dtype:
        """numpy dtype of a code array: uint8 or uint16."""
        return np.dtype(np.uint8 if self.bits == 8 else np.uint16)

    # --- finfo-style values for a given bias ---------------------------------------------------
    @property
    def eps(self) -> float:
        """Distance from 1 to the next larger value in the same binade, relative: ``2**-M``."""
        return 2.0 ** -self.mantissa_bits

    @property
    def max_exponent_field(self) -> int:
        return (1 << self.exponent_bits) - 1

    def max(self, bias: int) -> float:
        """Largest finite value: ``(2 - 2**-M) * 2**((2**E - 1) - bias)``."""
        b = check_bias(bias)
        return (2.0 - 2.0 ** -self.mantissa_bits) * 2.0 ** (self.max_exponent_field - b)

    def smallest_normal(self, bias: int) -> float:
        """``2**(1 - bias)``."""
        return 2.0 ** (1 - check_bias(bias))

    def smallest_subnormal(self, bias: int) -> float:
        """``2**(1 - bias - M)``."""
        return 2.0 ** (1 - check_bias(bias) - self.mantissa_bits)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class IEEEFormat:
    """An IEEE-754-style interchange format that CFloat converts from and to (has Inf/NaN)."""

    name: str
    exponent_bits: int
    mantissa_bits: int
    bits: int

    @property
    def bias(self) -> int:
        return (1 << (self.exponent_bits - 1)) - 1

    @property
    def smallest_normal(self) -> float:
        return 2.0 ** (1 - self.bias)


CFLOAT8_1_4_3 = CFloatFormat("cfloat8_1_4_3", exponent_bits=4, mantissa_bits=3, signed=True, bits=8,
                             default_bias=7)
CFLOAT8_1_5_2 = CFloatFormat("cfloat8_1_5_2", exponent_bits=5, mantissa_bits=2, signed=True, bits=8,
                             default_bias=15)
CFLOAT16_SHP = CFloatFormat("cfloat16_shp", exponent_bits=5, mantissa_bits=10, signed=True, bits=16,
                            default_bias=15)
CFLOAT16_UHP = CFloatFormat("cfloat16_uhp", exponent_bits=6, mantissa_bits=10, signed=False, bits=16,
                            default_bias=31)

FORMATS: dict[str, CFloatFormat] = {f.name: f for f in (CFLOAT8_1_4_3, CFLOAT8_1_5_2, CFLOAT16_SHP,
                                                           CFLOAT16_UHP)}

FP64 = IEEEFormat("float64", exponent_bits=11, mantissa_bits=52, bits=64)
FP32 = IEEEFormat("float32", exponent_bits=8, mantissa_bits=23, bits=32)
BF16 = IEEEFormat("bfloat16", exponent_bits=8, mantissa_bits=7, bits=16)
FP16 = IEEEFormat("float16", exponent_bits=5, mantissa_bits=10, bits=16)

IEEE_FORMATS: dict[str, IEEEFormat] = {f.name: f for f in (FP64, FP32, BF16, FP16)}


def get_format(fmt: str | CFloatFormat) -> CFloatFormat:
    """Look a format up by (case-insensitive) name, or pass a :class:`CFloatFormat` through."""
    if isinstance(fmt, CFloatFormat):
        return fmt
    if isinstance(fmt, str) and fmt.strip().lower().replace("-", "_") in FORMATS:
        return FORMATS[fmt.strip().lower().replace("-", "_")]
    return FORMATS[check_choice("fmt", fmt, FORMATS)]  # raises: fmt names none of the formats
