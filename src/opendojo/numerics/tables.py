"""Human-readable tables of the formats and of a format's values at a bias (for ``dojo numerics``)."""

from __future__ import annotations

import numpy as np

from opendojo.numerics.codec import decode_table
from opendojo.numerics.formats import FORMATS, CFloatFormat, check_bias, get_format


def _g(v: float) -> str:
    return f"{v:.6g}"


def formats_table() -> str:
    """Markdown table: every CFloat format, its layout and its range at the default bias."""
    lines = [
        "| format | sign | exponent | mantissa | bits | default bias | max | smallest normal | "
        "smallest subnormal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in FORMATS.values():
        b = f.default_bias
        layout = f"{int(f.signed)} | {f.exponent_bits} | {f.mantissa_bits} | {f.bits}"
        lines.append(f"| {f.name} | {layout} | {b} | {_g(f.max(b))} | {_g(f.smallest_normal(b))} | "
                     f"{_g(f.smallest_subnormal(b))} |")
    lines.append("")
    lines.append("Every format takes any bias 0..63; max(bias) = (2 - 2**-M) * 2**(2**E - 1 - bias).")
    return "\n".join(lines)


def value_table(fmt: CFloatFormat | str, bias: int) -> str:
    """The values of a format at ``bias``.

    8-bit formats: all 256 codes as a 16 x 16 grid (row = high nibble, column = low nibble).
    16-bit formats: one line per exponent field with its first and last value and the step.
    """
    fmt = get_format(fmt)
    bias = check_bias(bias)
    table = decode_table(fmt, bias)
    head = (f"{fmt.name} at bias {bias}: max {_g(fmt.max(bias))}, smallest normal "
            f"{_g(fmt.smallest_normal(bias))}, smallest subnormal {_g(fmt.smallest_subnormal(bias))}")
    if fmt.bits == 8:
        lines = [head, "", "code | " + " ".join(f"{'+' + str(c):>11}" for c in range(8))]
        for row_start in range(0, 256, 8):
            row = table[row_start : row_start + 8]
            lines.append(f"0x{row_start:02X} | " + " ".join(f"{_g(float(v)):>11}" for v in row))
        return "\n".join(lines)
    M = fmt.mantissa_bits
    lines = [head, "", "exponent field | codes | first value | last value | step"]
    for e in range(1 << fmt.exponent_bits):
        lo, hi = e << M, ((e + 1) << M) - 1
        step = float(table[lo + 1]) - float(table[lo])
        lines.append(f"{e:>14} | 0x{lo:04X}..0x{hi:04X} | {_g(float(table[lo]))} | {_g(float(table[hi]))} | "
                     f"{_g(step)}")
    if fmt.signed:
        lines.append("codes with the sign bit set (0x8000..) hold the same magnitudes negated (0x8000 is -0)")
    return "\n".join(lines)


def describe_codes(x: np.ndarray, codes: np.ndarray, values: np.ndarray) -> str:
    """One line per input: value in, code (hex), value out."""
    width = 4 if codes.dtype == np.uint16 else 2
    return "\n".join(f"{float(a)!r:>24} -> 0x{int(c):0{width}X} -> {float(v)!r}"
                     for a, c, v in zip(x.tolist(), codes.tolist(), values.tolist(), strict=True))
