"""encode / decode / fake_quantize: numpy arrays and torch tensors (CPU, CUDA) to and from CFloat codes.

Dispatch: on CPU the compiled kernel runs (``_ckernel.c``, vectorised, multithreaded; with flags a
slower counting loop); on CUDA or without the extension the torch-ops path (``_torch_codec.py``) runs.
Both give the same bits and flag counts as :mod:`opendojo.numerics.reference`, which the tests check.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from opendojo.numerics import _native
from opendojo.numerics._torch_codec import encode_torch
from opendojo.numerics.flags import Flags
from opendojo.numerics.formats import CFloatFormat, check_bias, get_format
from opendojo.numerics.rounding import RoundMode, check_rounding
from opendojo.numerics.stochastic import check_seed, seed_keys

_TORCH_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_NUMPY_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_TORCH_CODE = {8: torch.uint8, 16: torch.uint16}


# --- decode tables ----------------------------------------------------------------------------------
def decode_table(fmt: CFloatFormat | str, bias: int) -> np.ndarray:
    """float32 ``[2**bits]``: the value of every code (read-only). Every CFloat value is exact in FP32."""
    return _decode_table(get_format(fmt), check_bias(bias))


@functools.lru_cache(maxsize=512)  # 4 formats x 64 biases
def _decode_table(fmt: CFloatFormat, bias: int) -> np.ndarray:
    codes = np.arange(1 << fmt.bits, dtype=np.int64)
    M = fmt.mantissa_bits
    mag = codes & fmt.max_magnitude_code
    e, m = mag >> M, mag & ((1 << M) - 1)
    significand = np.where(e == 0, m, m + (1 << M)).astype(np.float64)
    value = np.ldexp(significand, (np.maximum(e, 1) - bias - M).astype(np.int32))
    if fmt.signed:
        value = np.where(codes & fmt.sign_mask, -value, value)
    table = value.astype(np.float32)
    table.flags.writeable = False
    return table


@functools.lru_cache(maxsize=64)
def _decode_table_torch(fmt: CFloatFormat, bias: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(decode_table(fmt, bias).copy()).to(device)


# --- argument checks ---------------------------------------------------------------------------------
def _check_common(fmt, bias, rounding, seed, flags) -> tuple[CFloatFormat, int, RoundMode, int | None]:
    fmt = get_format(fmt)
    bias = check_bias(bias)
    rounding = check_rounding(rounding)
    seed = check_seed(seed) if rounding == RoundMode.STOCHASTIC else None
    if flags is not None and not isinstance(flags, Flags):
        raise TypeError(f"flags must be None or a Flags instance, got {type(flags).__name__}")
    return fmt, bias, rounding, seed


def _as_float_input(x, name: str = "x"):
    """A torch tensor (detached) or a C-order native-endian numpy array of a supported float dtype."""
    if isinstance(x, torch.Tensor):
        if x.dtype not in _TORCH_FLOATS:
            raise TypeError(f"{name} must have a floating dtype (float16, bfloat16, float32, float64), "
                            f"got {x.dtype}")
        x = x.detach()  # an nn.Parameter detaches to a plain tensor
        # The kernels read raw memory: a tensor subclass (DTensor, ...) or a sparse tensor would be misread.
        if type(x) is not torch.Tensor or x.layout != torch.strided:
            raise TypeError(f"{name} must be a plain dense torch.Tensor, got {type(x).__name__} with layout "
                            f"{x.layout} (for a DTensor pass .to_local() or .full_tensor())")
        return x
    a = np.asarray(x)
    if a.dtype not in _NUMPY_FLOATS:
        raise TypeError(f"{name} must have a floating dtype (float16, float32, float64), got {a.dtype}")
    return _c_order(a)


def _c_order(a: np.ndarray) -> np.ndarray:
    """C-contiguous, native byte order, shape kept (np.ascontiguousarray turns 0-d into 1-d)."""
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return a if a.flags.c_contiguous else a.copy(order="C")


def _uses_native(t) -> bool:
    return _native.AVAILABLE and (not isinstance(t, torch.Tensor) or t.device.type == "cpu")


def _dtype_name(t) -> str:
    return str(t.dtype).removeprefix("torch.")


def _torch_view(a: np.ndarray) -> torch.Tensor:
    """numpy -> torch without copying when possible (the torch path only reads)."""
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a)


# --- public API ----------------------------------------------------------------------------------------
_HUGE_OUTPUT_BYTES = 8 << 20


def _advise_huge(address: int, nbytes: int) -> None:
    """Large new outputs: ask for transparent huge pages before the kernel's first touch (page faults
    otherwise dominate a memory-bound kernel; docs/numerics.md has the measurement). Best effort."""
    if nbytes >= _HUGE_OUTPUT_BYTES and _native.AVAILABLE:
        _native._ckernel.advise_huge(address, nbytes)


def _output(out, like, shape, dtype, name: str = "out"):
    """A new C-contiguous output like ``like`` (numpy or torch, same device), or the checked ``out``."""
    if isinstance(like, torch.Tensor):
        if out is None:  # (empty_like: torch.empty(torch.Size) is markedly dearer per call)
            new = torch.empty_like(like, dtype=dtype, memory_format=torch.contiguous_format)
            if new.device.type == "cpu":
                _advise_huge(new.data_ptr(), new.numel() * new.element_size())
            return new
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor for a torch input, got {type(out).__name__}")
        ok = out.shape == shape and out.dtype == dtype and out.device == like.device and out.is_contiguous()
        want = f"a contiguous {dtype} tensor of shape {tuple(shape)} on {like.device}"
        layout = "" if out.is_contiguous() else ", non-contiguous"
        got = f"{out.dtype} {tuple(out.shape)} on {out.device}{layout}"
    else:
        if out is None:
            new = np.empty(shape, dtype=dtype)
            _advise_huge(new.ctypes.data, new.nbytes)
            return new
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray for a numpy input, got {type(out).__name__}")
        ok = out.shape == shape and out.dtype == dtype and out.flags.c_contiguous and out.flags.writeable
        want = f"a writeable C-contiguous {np.dtype(dtype)} array of shape {tuple(shape)}"
        got = f"{out.dtype} {tuple(out.shape)}"
    if not ok:
        raise ValueError(f"{name} must be {want}, got {got}")
    return out


def _native_source(t):
    """The float32/float64 C-contiguous buffer the kernel reads (float16/bfloat16 widened exactly)."""
    if isinstance(t, torch.Tensor):
        src = t.contiguous() if t.dtype in (torch.float32, torch.float64) else t.float().contiguous()
        return src, src.data_ptr(), src.numel(), src.dtype == torch.float64
    src = t if t.dtype != np.float16 else t.astype(np.float32)
    return src, src.ctypes.data, src.size, src.dtype == np.float64


def _ptr(a) -> int:
    return a.data_ptr() if isinstance(a, torch.Tensor) else a.ctypes.data


def encode(x, fmt: CFloatFormat | str, bias: int, rounding: RoundMode | str = RoundMode.NEAREST,
           seed: int | None = None, flags: Flags | None = None, out=None):
    """Round ``x`` into CFloat codes of ``fmt`` at exponent ``bias`` (an integer 0..63).

    ``x``: numpy array (float16/32/64) or torch tensor (float16/bfloat16/float32/float64, any device,
    ``requires_grad`` allowed: its data is used), any shape. Returns codes of the same shape: uint8 for
    8-bit formats, uint16 for 16-bit; numpy in, numpy out; torch in, torch out on the same device.
    ``rounding``: "nearest" (ties to even), "stochastic" (needs an integer ``seed``; the random bits are
    a function of (seed, flat C-order index)) or "toward_zero". ``flags``: a :class:`Flags` to add
    exception counts to (a slower loop; ``None`` costs nothing). ``out``: an optional preallocated
    contiguous code array/tensor of the right shape, dtype and device, written and returned.
    """
    fmt, bias, rounding, seed = _check_common(fmt, bias, rounding, seed, flags)
    t = _as_float_input(x)
    keys = seed_keys(seed) if seed is not None else (0, 0)
    code_dtype = _TORCH_CODE[fmt.bits] if isinstance(t, torch.Tensor) else fmt.code_dtype
    out = _output(out, t, t.shape, code_dtype)
    if _uses_native(t):
        src, src_ptr, n, is64 = _native_source(t)
        op = (_native.ENC_F64_U8 if is64 else _native.ENC_F32_U8) + (fmt.bits == 16)
        counts = _native.run(op, src_ptr, _ptr(out), n, fmt, bias, rounding, keys,
                             flags_of=_dtype_name(t) if flags is not None else None)
    else:
        tt = t if isinstance(t, torch.Tensor) else _torch_view(t)
        counts = {} if flags is not None else None
        codes = encode_torch(tt, fmt, bias, rounding, seed, counts).to(_TORCH_CODE[fmt.bits])
        if isinstance(out, torch.Tensor):
            out.copy_(codes)
        else:
            out[...] = codes.numpy()
    if flags is not None:
        flags._accumulate(counts)
    return out


def _check_codes(codes, fmt: CFloatFormat):
    """Codes as a torch tensor or numpy array of the format's code dtype; range-checked if wider."""
    is_torch = isinstance(codes, torch.Tensor)
    c = codes.detach() if is_torch else np.asarray(codes)
    dtype = c.dtype
    integer = (not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool) if is_torch \
        else dtype.kind in "ui"
    if not integer:
        raise TypeError(f"codes must have an integer dtype (uint8 or uint16 for {fmt.name}), got {dtype}")
    target = _TORCH_CODE[fmt.bits] if is_torch else fmt.code_dtype
    narrow = torch.uint8 if is_torch else np.dtype(np.uint8)
    if dtype == target or dtype == narrow:  # these always fit: no range check needed
        return c.to(target) if is_torch else c.astype(target, copy=False)
    if c.numel() if is_torch else c.size:
        wide = c.to(torch.int64) if is_torch else c.astype(np.int64)
        lo, hi = int(wide.min()), int(wide.max())
        if lo < 0 or hi >= 1 << fmt.bits:
            raise ValueError(f"codes must lie in 0..{(1 << fmt.bits) - 1} for {fmt.name} ({fmt.bits}-bit "
                             f"format), got values in {lo}..{hi}")
    return c.to(target) if is_torch else c.astype(target)


def decode(codes, fmt: CFloatFormat | str, bias: int, out=None):
    """Exact float32 values of CFloat ``codes`` (numpy in, numpy out; torch in, torch out, same device).

    ``codes``: uint8/uint16 (or any integer dtype whose values fit in the format's width), any shape.
    ``out``: an optional preallocated contiguous float32 array/tensor of the same shape, written and returned.
    """
    fmt = get_format(fmt)
    bias = check_bias(bias)
    c = _check_codes(codes, fmt)
    out = _output(out, c, c.shape, torch.float32 if isinstance(c, torch.Tensor) else np.float32)
    if _uses_native(c):
        src = c.contiguous() if isinstance(c, torch.Tensor) else _c_order(c)
        n = src.numel() if isinstance(src, torch.Tensor) else src.size
        op = _native.DEC_U16 if fmt.bits == 16 else _native.DEC_U8
        _native.run(op, _ptr(src), _ptr(out), n, fmt, bias, lut=decode_table(fmt, bias).ctypes.data)
        return out
    ct = c if isinstance(c, torch.Tensor) else _torch_view(_c_order(c))
    values = _decode_table_torch(fmt, bias, ct.device)[ct.to(torch.int64)]
    if isinstance(out, torch.Tensor):
        out.copy_(values)
    else:
        out[...] = values.numpy()
    return out


def fake_quantize(x, fmt: CFloatFormat | str, bias: int, rounding: RoundMode | str = RoundMode.NEAREST,
                  seed: int | None = None, flags: Flags | None = None, out=None):
    """``decode(encode(x, ...))`` in one pass, returned in x's dtype, shape and device.

    Same arguments as :func:`encode`. float32/float64 results are exact CFloat values; float16/bfloat16
    results are those values rounded to nearest in x's dtype (exact unless the bias puts them outside
    its range: e.g. SHP's max 131008 at bias 15 is Inf in float16). No autograd: a tensor that requires
    grad is read through its data. ``out``: an optional preallocated contiguous array/tensor like x
    (``out=x`` rounds in place), written and returned.
    """
    fmt, bias, rounding, seed = _check_common(fmt, bias, rounding, seed, flags)
    t = _as_float_input(x)
    return fake_quantize_checked(t, fmt, bias, rounding, seed, flags, _output(out, t, t.shape, t.dtype))


def fake_quantize_checked(t, fmt: CFloatFormat, bias: int, rounding: str, seed: int | None,
                          flags: Flags | None = None, out=None):
    """:func:`fake_quantize` for callers whose arguments are already valid: ``t`` a plain dense float
    tensor or C-order array, ``fmt`` a format object, ``bias`` in 0..63, ``rounding`` a
    :class:`RoundMode`, ``seed`` an int (stochastic) or None, ``out`` None or checked like ``t``.

    Nothing is validated again: the training path calls this four times per layer and step, where the
    checks cost as much as rounding a small tensor (docs/nn.md). ``out`` None allocates the result.
    """
    keys = seed_keys(seed) if seed is not None else (0, 0)
    if out is None:
        out = _output(None, t, t.shape, t.dtype)
    if _uses_native(t):
        src, src_ptr, n, is64 = _native_source(t)
        wide = src.dtype != t.dtype  # float16/bfloat16: the kernel wrote float32, narrow into out
        dst = _output(None, src, src.shape, src.dtype) if wide else out
        op = (_native.FQ_F64_U8 if is64 else _native.FQ_F32_U8) + (fmt.bits == 16)
        counts = _native.run(op, src_ptr, _ptr(dst), n, fmt, bias, rounding, keys,
                             lut=decode_table(fmt, bias).ctypes.data,
                             flags_of=_dtype_name(t) if flags is not None else None)
        if wide:
            if isinstance(out, torch.Tensor):
                out.copy_(dst)
            else:
                with np.errstate(over="ignore"):  # a value beyond float16's range becomes Inf, as documented
                    out[...] = dst
    else:
        tt = t if isinstance(t, torch.Tensor) else _torch_view(t)
        counts = {} if flags is not None else None
        codes = encode_torch(tt, fmt, bias, rounding, seed, counts)
        values = _decode_table_torch(fmt, bias, tt.device)[codes].to(tt.dtype)
        if isinstance(out, torch.Tensor):
            out.copy_(values)
        else:
            out[...] = values.numpy()
    if flags is not None:
        flags._accumulate(counts)
    return out
