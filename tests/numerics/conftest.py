"""Shared helpers for the numerics tests: every backend, held to the reference."""

import numpy as np
import pytest
import torch

from opendojo.numerics import _native
from opendojo.numerics._torch_codec import encode_flat

BACKENDS = ["c", "torch"] if _native.AVAILABLE else ["torch"]


def encode_with(backend: str, x: np.ndarray, fmt, bias: int, rounding: str, seed=None, threads=None):
    """Codes (int64 numpy) of float32/float64 numpy ``x`` through one backend."""
    from opendojo.numerics.stochastic import seed_keys

    x = np.ascontiguousarray(x)
    if backend == "torch":
        codes, _ = encode_flat(torch.from_numpy(x).reshape(-1), fmt, bias, rounding, seed, False)
        return codes.numpy().reshape(x.shape)
    out = np.empty(x.shape, dtype=fmt.code_dtype)
    op = (_native.ENC_F64_U8 if x.dtype == np.float64 else _native.ENC_F32_U8) + (fmt.bits == 16)
    keys = seed_keys(seed) if seed is not None else (0, 0)
    _native.run(op, x.ctypes.data, out.ctypes.data, x.size, fmt, bias, rounding, keys, threads=threads)
    return out.astype(np.int64)


def flags_with(backend: str, x: np.ndarray, fmt, bias: int, rounding: str, seed=None) -> dict[str, int]:
    """Flag counts of encoding float32/float64 numpy ``x`` through one backend."""
    from opendojo.numerics.stochastic import seed_keys

    x = np.ascontiguousarray(x)
    if backend == "torch":
        return encode_flat(torch.from_numpy(x).reshape(-1), fmt, bias, rounding, seed, True)[1]
    out = np.empty(x.shape, dtype=fmt.code_dtype)
    op = (_native.ENC_F64_U8 if x.dtype == np.float64 else _native.ENC_F32_U8) + (fmt.bits == 16)
    keys = seed_keys(seed) if seed is not None else (0, 0)
    return _native.run(op, x.ctypes.data, out.ctypes.data, x.size, fmt, bias, rounding, keys,
                       flags_of=str(x.dtype))


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param
