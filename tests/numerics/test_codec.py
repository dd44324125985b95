"""encode/decode/fake_quantize: every backend bit-exact to the scalar reference; bad inputs rejected."""

import math

import numpy as np
import pytest
import torch

from opendojo.numerics import (
    CFLOAT8_1_4_3,
    CFLOAT8_1_5_2,
    CFLOAT16_SHP,
    CFLOAT16_UHP,
    FORMATS,
    Flags,
    decode,
    decode_table,
    encode,
    fake_quantize,
)
from opendojo.numerics import reference as ref
from opendojo.numerics.stochastic import random_bits

from .conftest import encode_with

ALL = list(FORMATS.values())
SPECIALS = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-45, -1e-45, 3e38, -3e38, 1.0, -1.0, 480.0, 481.0,
            464.0, 496.0, 2.0**-9, 2.0**-10, 2.0**-10 * 1.5, 3 * 2.0**-11]


@pytest.mark.parametrize("fmt", ALL, ids=[f.name for f in ALL])
def test_every_code_decodes_as_the_reference_says_8bit_all_biases_16bit_three(fmt):
    biases = range(64) if fmt.bits == 8 else (0, fmt.default_bias, 63)
    codes = np.arange(1 << fmt.bits)
    for bias in biases:
        got = decode(codes.astype(fmt.code_dtype), fmt, bias)
        want = np.array([ref.decode_float(int(c), fmt, bias) for c in codes], dtype=np.float64)
        assert np.array_equal(got.astype(np.float64), want)
        assert np.array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("fmt", ALL, ids=[f.name for f in ALL])
def test_decode_tables_obey_the_scaling_identity_at_every_bias(fmt):
    base = decode_table(fmt, 0).astype(np.float64)
    for bias in range(64):
        assert np.array_equal(decode_table(fmt, bias).astype(np.float64), np.ldexp(base, -bias))


@pytest.mark.parametrize("fmt", ALL, ids=[f.name for f in ALL])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "toward_zero"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_specials_and_spread_match_reference_every_bias(backend, fmt, rounding, dtype):
    rng = np.random.default_rng(1)
    spread = rng.standard_normal(64) * np.exp2(rng.integers(-90, 50, 64).astype(np.float64))
    x = np.concatenate([np.array(SPECIALS), spread]).astype(dtype)
    for bias in range(64):
        got = encode_with(backend, x, fmt, bias, rounding, seed=bias)
        for i, v in enumerate(x):
            r = random_bits(bias, i) if rounding == "stochastic" else None
            want, _ = ref.encode(float(v), fmt, bias, rounding, r)
            assert got[i] == want, (bias, i, float(v), got[i], want)


def test_nan_saturates_positive_and_inf_keeps_sign():
    x = np.array([np.nan, -np.nan, np.inf, -np.inf], np.float32)
    assert encode(x, CFLOAT8_1_4_3, 7).tolist() == [0x7F, 0x7F, 0x7F, 0xFF]
    assert encode(x, CFLOAT16_UHP, 31).tolist() == [0xFFFF, 0xFFFF, 0xFFFF, 0]


def test_ocp_e4m3_agrees_except_at_its_nan_codes():
    import ml_dtypes

    x = np.random.default_rng(2).standard_normal(20000).astype(np.float32) * 100
    x = x[np.abs(x) <= 464]  # ml_dtypes does not saturate
    ours = encode(x, CFLOAT8_1_4_3, 7)
    theirs = x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    assert np.array_equal(ours, theirs)
    e5 = x.astype(ml_dtypes.float8_e5m2).view(np.uint8)
    assert np.array_equal(encode(x, CFLOAT8_1_5_2, 15), e5)


def test_shp_at_bias_15_is_ieee_half_below_65504():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(20000) * np.exp2(rng.integers(-26, 15, 20000))
    x = x[np.abs(x) < 65504]
    assert np.array_equal(encode(x, CFLOAT16_SHP, 15), x.astype(np.float16).view(np.uint16))


def test_float64_rounds_directly_not_via_float32():
    # 1 + 2**-4 + 2**-30 is above the E4M3 tie at 1 + 2**-4; through float32 it would become the tie
    # (2**-30 is lost) and round to even (down).
    x = np.array([1 + 2.0**-4 + 2.0**-30], np.float64)
    assert encode(x, CFLOAT8_1_4_3, 7)[0] == encode(np.array([1.125]), CFLOAT8_1_4_3, 7)[0]
    assert encode(x.astype(np.float32), CFLOAT8_1_4_3, 7)[0] == encode(np.array([1.0]), CFLOAT8_1_4_3, 7)[0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_torch_in_torch_out_same_codes_as_numpy(dtype):
    x = torch.randn(3, 5, 7, dtype=torch.float64).to(dtype) * 50
    codes = encode(x, CFLOAT8_1_4_3, 7)
    assert codes.dtype == torch.uint8 and codes.shape == x.shape
    assert np.array_equal(codes.numpy(), encode(x.double().numpy(), CFLOAT8_1_4_3, 7))
    c16 = encode(x, CFLOAT16_SHP, 15)
    assert c16.dtype == torch.uint16
    fq = fake_quantize(x, CFLOAT8_1_4_3, 7)
    assert fq.dtype == dtype and fq.shape == x.shape
    assert torch.equal(fq, decode(codes, CFLOAT8_1_4_3, 7).to(dtype))


def test_requires_grad_and_non_contiguous_inputs():
    x = torch.randn(8, 6, requires_grad=True)
    xt = x.t()  # non-contiguous: flat index is the C order of the transposed view
    c = encode(xt, CFLOAT8_1_5_2, 15, "stochastic", seed=9)
    assert torch.equal(c, encode(xt.detach().contiguous(), CFLOAT8_1_5_2, 15, "stochastic", seed=9))
    assert fake_quantize(x, CFLOAT8_1_5_2, 15).requires_grad is False


def test_fake_quantize_equals_decode_of_encode_every_mode():
    x = np.random.default_rng(5).standard_normal(5000).astype(np.float32) * 1e3
    for fmt in ALL:
        for rounding in ("nearest", "stochastic", "toward_zero"):
            c = encode(x, fmt, 10, rounding, seed=3)
            assert np.array_equal(fake_quantize(x, fmt, 10, rounding, seed=3), decode(c, fmt, 10))


def test_zero_dim_and_empty_inputs():
    assert encode(np.float32(1.0), CFLOAT8_1_4_3, 7).shape == ()
    assert encode(np.zeros((0, 3), np.float32), CFLOAT8_1_4_3, 7).shape == (0, 3)
    assert decode(np.zeros(0, np.uint8), CFLOAT8_1_4_3, 7).dtype == np.float32


# --- bad input -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("x", [np.arange(4), np.ones(3, np.complex64), np.array([1.0, None], dtype=object),
                               torch.arange(3), torch.ones(2, dtype=torch.complex64)])
def test_non_float_inputs_are_rejected(x):
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        encode(x, CFLOAT8_1_4_3, 7)
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        fake_quantize(x, CFLOAT8_1_4_3, 7)


@pytest.mark.parametrize("bias", [-1, 64, 3.5, 7.0, None, True])
def test_bias_out_of_range_or_not_integer(bias):
    with pytest.raises(ValueError, match=r"bias: got .*; allowed: an integer in 0\.\.63"):
        encode(np.ones(2, np.float32), CFLOAT8_1_4_3, bias)
    with pytest.raises(ValueError, match=r"bias: got .*; allowed: an integer in 0\.\.63"):
        decode(np.ones(2, np.uint8), CFLOAT8_1_4_3, bias)


def test_rounding_seed_and_flags_arguments_are_checked():
    x = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="rounding: got .up.; allowed: nearest, stochastic, toward_zero"):
        encode(x, CFLOAT8_1_4_3, 7, rounding="up")
    with pytest.raises(ValueError, match="seed: got None; allowed: an integer"):
        encode(x, CFLOAT8_1_4_3, 7, rounding="stochastic")
    with pytest.raises(ValueError, match=r"seed: got .*; allowed: an integer in 0\.\.18446744073709551615"):
        fake_quantize(x, CFLOAT8_1_4_3, 7, rounding="stochastic", seed=-1)
    with pytest.raises(ValueError, match=r"seed: got .*; allowed: an integer"):
        encode(x, CFLOAT8_1_4_3, 7, rounding="stochastic", seed=1.5)
    with pytest.raises(TypeError, match="flags must be None or a Flags"):
        encode(x, CFLOAT8_1_4_3, 7, flags={})


def test_codes_above_the_format_width_are_rejected():
    with pytest.raises(ValueError, match=r"codes must lie in 0\.\.255 .*got values in 0\.\.256"):
        decode(np.array([0, 256], np.uint16), CFLOAT8_1_4_3, 7)
    with pytest.raises(ValueError, match=r"codes must lie in 0\.\.65535"):
        decode(torch.tensor([-1, 5]), CFLOAT16_SHP, 15)
    with pytest.raises(TypeError, match="codes must have an integer dtype"):
        decode(np.ones(3, np.float32), CFLOAT8_1_4_3, 7)
    # wider integer dtypes are fine when the values fit
    assert decode(np.array([0x38], np.int64), CFLOAT8_1_4_3, 7)[0] == 1.0


def test_flags_count_elements_and_clear():
    f = Flags()
    x = np.array([np.nan, 1e6, -1e6, 2.0**-12, 0.0, 1.0, np.inf, 1e-45], np.float32)
    encode(x, CFLOAT8_1_4_3, 7, flags=f)
    assert f.as_dict() == {"invalid": 1, "denormal": 1, "overflow": 2, "underflow": 2}
    assert bool(f.overflow) and bool(f)
    fake_quantize(torch.from_numpy(x), CFLOAT8_1_4_3, 7, flags=f)
    assert f.overflow == 4
    f.clear()
    assert not f and f.as_dict() == dict.fromkeys(("invalid", "denormal", "overflow", "underflow"), 0)
    encode(np.array([-1.0, -0.0]), CFLOAT16_UHP, 31, flags=f)
    assert f.invalid == 1


def test_out_arguments_are_written_and_checked():
    x = np.random.default_rng(8).standard_normal(1000).astype(np.float32)
    codes = np.empty(1000, np.uint8)
    assert encode(x, CFLOAT8_1_4_3, 7, out=codes) is codes
    assert np.array_equal(codes, encode(x, CFLOAT8_1_4_3, 7))
    values = np.empty(1000, np.float32)
    assert decode(codes, CFLOAT8_1_4_3, 7, out=values) is values
    y = x.copy()
    fake_quantize(y, CFLOAT8_1_4_3, 7, "stochastic", seed=2, out=y)  # in place
    assert np.array_equal(y, fake_quantize(x, CFLOAT8_1_4_3, 7, "stochastic", seed=2))
    t = torch.from_numpy(x).to(torch.bfloat16)
    o = torch.empty_like(t)
    assert torch.equal(fake_quantize(t, CFLOAT8_1_4_3, 7, out=o), fake_quantize(t, CFLOAT8_1_4_3, 7))
    with pytest.raises(ValueError, match=r"out must be a writeable C-contiguous uint8 array of shape"):
        encode(x, CFLOAT8_1_4_3, 7, out=np.empty(999, np.uint8))
    with pytest.raises(ValueError, match=r"out must be a contiguous torch.float32 tensor"):
        decode(torch.from_numpy(codes), CFLOAT8_1_4_3, 7, out=torch.empty(2000)[::2])
    with pytest.raises(TypeError, match="out must be a torch.Tensor"):
        fake_quantize(torch.from_numpy(x), CFLOAT8_1_4_3, 7, out=values)


def test_public_api_on_the_torch_ops_path_equals_the_c_path(monkeypatch):
    """What CUDA tensors and compiler-less installs run: the same public calls, forced onto torch ops."""
    from opendojo.numerics import _native

    rng = np.random.default_rng(9)
    x = (rng.standard_normal(600_000) * np.exp2(rng.integers(-20, 12, 600_000))).astype(np.float32)
    x[:4] = [np.nan, np.inf, 1e-45, -3e38]
    runs = []
    for native in (True, False):
        if not native:
            monkeypatch.setattr(_native, "AVAILABLE", False)
        f = Flags()
        codes = encode(x, CFLOAT8_1_5_2, 18, "stochastic", seed=4, flags=f)  # several CPU chunks
        fq = fake_quantize(torch.from_numpy(x).to(torch.bfloat16), CFLOAT16_SHP, 20, flags=f)
        out = np.empty(x.shape, np.float32)
        dec = decode(codes, CFLOAT8_1_5_2, 18, out=out)
        runs.append((codes, fq, dec, f.as_dict()))
    (c1, q1, d1, f1), (c2, q2, d2, f2) = runs
    assert np.array_equal(c1, c2) and torch.equal(q1, q2) and np.array_equal(d1, d2)
    assert f1 == f2 and f1["invalid"] == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_give_the_same_codes_values_and_flags_as_cpu():
    x = torch.randn(1 << 20, dtype=torch.float32) * 300
    x[:3] = torch.tensor([float("nan"), float("inf"), 1e-45])
    for fmt in (CFLOAT8_1_4_3, CFLOAT16_SHP, CFLOAT16_UHP):
        for rounding in ("nearest", "stochastic", "toward_zero"):
            fc, fg = Flags(), Flags()
            cpu = encode(x, fmt, 9, rounding, seed=5, flags=fc)
            gpu = encode(x.cuda(), fmt, 9, rounding, seed=5, flags=fg)
            assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu) and fc == fg
            assert torch.equal(fake_quantize(x.cuda().double(), fmt, 9, rounding, seed=5).cpu(),
                               fake_quantize(x.double(), fmt, 9, rounding, seed=5))
            assert torch.equal(decode(gpu, fmt, 9).cpu(), decode(cpu, fmt, 9))


def test_decode_table_checks_its_arguments():
    with pytest.raises(ValueError, match=r"bias: got 64; allowed: an integer in 0\.\.63"):
        decode_table(CFLOAT8_1_4_3, 64)
    with pytest.raises(ValueError, match="fmt: got .*; allowed: cfloat8_1_4_3"):
        decode_table("fp8", 7)
    assert decode_table("cfloat8_1_4_3", 7)[0x38] == 1.0


def test_tensor_subclasses_and_sparse_tensors_are_refused_not_misread():
    import torch

    from opendojo.numerics import CFLOAT8_1_4_3, encode, fake_quantize

    class Wrapped(torch.Tensor):
        pass

    x = torch.randn(4, 4)
    with pytest.raises(TypeError, match="plain dense torch.Tensor, got Wrapped"):
        encode(x.as_subclass(Wrapped), CFLOAT8_1_4_3, 7)
    with pytest.raises(TypeError, match="layout torch.sparse_coo"):
        fake_quantize(x.to_sparse(), CFLOAT8_1_4_3, 7)
    p = torch.nn.Parameter(x.clone())
    assert torch.equal(fake_quantize(p, CFLOAT8_1_4_3, 7), fake_quantize(x, CFLOAT8_1_4_3, 7))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_fake_quantize_checked_matches_the_public_entry_point(dtype):
    from opendojo.numerics import RoundMode
    from opendojo.numerics.codec import fake_quantize_checked

    fmt = CFLOAT8_1_5_2
    x = (torch.randn(70_001, dtype=torch.float64) * 50).to(dtype)
    for rounding, seed in (("nearest", None), ("stochastic", 17)):
        want_flags, got_flags = Flags(), Flags()
        want = fake_quantize(x, fmt, 12, rounding, seed, flags=want_flags)
        got = fake_quantize_checked(x, fmt, 12, RoundMode(rounding), seed, got_flags)
        assert got.dtype == dtype and torch.equal(got, want) and got_flags == want_flags
