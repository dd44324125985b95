"""The counter-based random bits behind stochastic rounding.

The ``RANDOM_BITS`` (r = 16) random bits used for element ``i`` (flat index in C order) are a pure
function of ``(seed, i)``, so a seed gives the same codes on numpy, torch CPU, torch CUDA and the C
kernel, whatever the chunking or thread count. The function is two rounds of a 32-bit integer
finaliser (``_mix32``, the "lowbias32" constants) keyed by the seed::

    k1 = mix32(seed_lo ^ 0x9E3779B9);  k2 = mix32(seed_hi ^ k1 ^ 0x85EBCA6B)
    h  = mix32(mix32(i_lo ^ k1) ^ ((k2 + i_hi * 0x9E3779B9) mod 2**32))
    bits = h >> 16

with ``seed_lo/hi`` and ``i_lo/hi`` the low and high 32-bit halves. The same formula is written in
C (``_ckernel.c``) and in torch int64 ops (:func:`random_bits_torch`); tests hold them to this file.
"""

from __future__ import annotations

from opendojo.errors import UsageError, check_int

RANDOM_BITS = 16
_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9
_C1 = 0x7FEB352D
_C2 = 0x846CA68B


def _mix32(x: int) -> int:
    x &= _M32
    x ^= x >> 16
    x = (x * _C1) & _M32
    x ^= x >> 15
    x = (x * _C2) & _M32
    x ^= x >> 16
    return x


def check_seed(seed: object) -> int:
    """Return ``seed`` as an int in [0, 2**64) or raise a UsageError naming the argument."""
    if seed is None:
        raise UsageError("seed: got None; allowed: an integer in 0..2**64 - 1 (stochastic rounding)")
    return check_int("seed", seed, low=0, high=(1 << 64) - 1)


def seed_keys(seed: int) -> tuple[int, int]:
    """The two 32-bit keys derived from a 64-bit seed."""
    k1 = _mix32((seed & _M32) ^ _GOLDEN)
    k2 = _mix32(((seed >> 32) & _M32) ^ k1 ^ 0x85EBCA6B)
    return k1, k2


def random_bits(seed: int, index: int) -> int:
    """The r = 16 random bits (an int in [0, 2**16)) for flat element ``index`` under ``seed``."""
    k1, k2 = seed_keys(check_seed(seed))
    lo, hi = index & _M32, index >> 32
    h = _mix32(_mix32(lo ^ k1) ^ ((k2 + hi * _GOLDEN) & _M32))
    return h >> (32 - RANDOM_BITS)


# --- torch int64 version (CPU and CUDA) --------------------------------------------------------------
def _mul32_t(x, c: int):
    """``(x * c) mod 2**32`` for int64 tensors x < 2**32 without int64 overflow (split the constant)."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _M32


def _mix32_t(x):
    x = x ^ (x >> 16)
    x = _mul32_t(x, _C1)
    x = x ^ (x >> 15)
    x = _mul32_t(x, _C2)
    return x ^ (x >> 16)


def random_bits_torch(seed: int, n: int, device, offset: int = 0):
    """int64 tensor ``[n]`` of the random bits for flat indices ``offset .. offset + n - 1``."""
    import torch

    k1, k2 = seed_keys(seed)
    idx = torch.arange(offset, offset + n, dtype=torch.int64, device=device)
    lo = idx & _M32
    hi_key = (k2 + (idx >> 32) * _GOLDEN) & _M32
    h = _mix32_t(_mix32_t(lo ^ k1) ^ hi_key)
    return h >> (32 - RANDOM_BITS)
