"""Thin dispatcher to the compiled kernel (``_ckernel.c``); ``AVAILABLE`` is False without it."""

from __future__ import annotations

from opendojo.numerics.formats import CFloatFormat

try:  # the extension is optional (setup.py builds it when a C compiler is present)
    from opendojo.numerics import _ckernel
except ImportError:  # pragma: no cover - exercised only on machines without a compiler
    _ckernel = None

AVAILABLE = _ckernel is not None

# op numbers of _ckernel.c's OPS table (the +1 of each pair is the 16-bit-code variant)
(ENC_F32_U8, ENC_F32_U16, ENC_F64_U8, ENC_F64_U16, FQ_F32_U8, FQ_F32_U16, FQ_F64_U8, FQ_F64_U16,
 DEC_U8, DEC_U16) = range(10)
MODES = {"nearest": 0, "stochastic": 1, "toward_zero": 2}


def num_threads() -> int:
    """Threads for large arrays: torch's intra-op setting, so the two never oversubscribe the CPU."""
    import torch

    return max(1, torch.get_num_threads())


# |x| bit patterns below which a nonzero input is denormal in its own format, as seen by the kernel
# (float16/bfloat16 arrive widened to float32)
TINY_BITS = {"float64": 0x0010000000000000, "float32": 0x00800000, "bfloat16": 0x00800000,
             "float16": (127 - 14) << 23}


def _threads(n: int) -> int:
    # the kernel hands out chunks of 2**15 elements and runs anything under two chunks on the calling
    # thread, so below 2**16 do not even ask torch
    return 1 if n < 1 << 16 else num_threads()


def run(op: int, src: int, dst: int, n: int, fmt: CFloatFormat, bias: int, rounding: str = "nearest",
        keys: tuple[int, int] = (0, 0), lut: int = 0, offset: int = 0, threads: int | None = None,
        flags_of: str | None = None) -> dict[str, int] | None:
    """Run one kernel over ``n`` elements at raw addresses ``src`` -> ``dst`` (C-contiguous buffers).

    ``flags_of``: the input's own format name ("float32", "float16", ...) to count exception flags
    (returned as a dict), or None for the fast path without flags.
    """
    counts = _ckernel.run(op, src, dst, lut, n, offset, fmt.mantissa_bits, bias, int(fmt.signed),
                          fmt.bits - 1, MODES[rounding], fmt.max_magnitude_code, keys[0], keys[1],
                          _threads(n) if threads is None else threads, flags_of is not None,
                          TINY_BITS[flags_of] if flags_of else 0)
    if counts is None:
        return None
    return dict(zip(("invalid", "denormal", "overflow", "underflow"), counts, strict=True))
