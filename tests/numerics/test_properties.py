"""Property tests (hypothesis): every backend equals the scalar reference on random bit patterns and on
exact ties, at every bias; stochastic rounding is reproducible and unbiased; flags count like the
reference; gfloat (an independent implementation) agrees in all three rounding modes."""

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opendojo.numerics import FORMATS, Flags, decode_table, encode, fake_quantize
from opendojo.numerics import reference as ref
from opendojo.numerics._torch_codec import encode_flat
from opendojo.numerics.stochastic import random_bits, random_bits_torch

from .conftest import BACKENDS, encode_with, flags_with

FMTS = list(FORMATS.values())
SETTINGS = settings(max_examples=int(os.environ.get("NUMERICS_EXAMPLES", "60")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
formats = st.sampled_from(FMTS)
biases = st.integers(0, 63)
roundings = st.sampled_from(["nearest", "stochastic", "toward_zero"])
seeds = st.integers(0, 2**64 - 1)


def _reference_codes(x: np.ndarray, fmt, bias, rounding, seed, input_format="float64"):
    out = []
    for i, v in enumerate(x.tolist()):
        r = random_bits(seed, i) if rounding == "stochastic" else None
        out.append(ref.encode(float(v), fmt, bias, rounding, r, input_format)[0])
    return np.array(out, dtype=np.int64)


@SETTINGS
@given(bits=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=48), fmt=formats, bias=biases,
       rounding=roundings, seed=seeds)
def test_random_float32_bit_patterns_match_reference(bits, fmt, bias, rounding, seed):
    x = np.array(bits, dtype=np.uint32).view(np.float32)
    want = _reference_codes(x, fmt, bias, rounding, seed, "float32")
    for backend in BACKENDS:
        assert np.array_equal(encode_with(backend, x, fmt, bias, rounding, seed), want), backend


@SETTINGS
@given(bits=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=48), fmt=formats, bias=biases,
       rounding=roundings, seed=seeds)
def test_random_float64_bit_patterns_match_reference(bits, fmt, bias, rounding, seed):
    x = np.array(bits, dtype=np.uint64).view(np.float64)
    want = _reference_codes(x, fmt, bias, rounding, seed)
    for backend in BACKENDS:
        assert np.array_equal(encode_with(backend, x, fmt, bias, rounding, seed), want), backend


@SETTINGS
@given(fmt=formats, bias=biases, data=st.data())
def test_exact_ties_and_their_float32_neighbours_match_reference(fmt, bias, data):
    table = decode_table(fmt, bias).astype(np.float64)
    top = fmt.max_magnitude_code
    mags = np.array(data.draw(st.lists(st.integers(0, top), min_size=1, max_size=24)))
    above_max = 2 * table[top] - table[top - 1]  # one step past max: its midpoint is the overflow threshold
    lo, hi = table[mags], np.where(mags < top, table[np.minimum(mags + 1, top)], above_max)
    ties = (lo + hi) / 2  # exact in float64 and float32 (at most 12 significant bits)
    if fmt.signed:
        ties = np.concatenate([ties, -ties])
    t32 = ties.astype(np.float32)
    x32 = np.concatenate([t32, np.nextafter(t32, np.float32(np.inf)), np.nextafter(t32, np.float32(-np.inf))])
    for rounding in ("nearest", "toward_zero"):
        want = _reference_codes(x32, fmt, bias, rounding, 0, "float32")
        for backend in BACKENDS:
            assert np.array_equal(encode_with(backend, x32, fmt, bias, rounding), want)
            assert np.array_equal(encode_with(backend, ties, fmt, bias, rounding), want[: len(ties)])


@SETTINGS
@given(bits=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40), fmt=formats, bias=biases,
       rounding=roundings, seed=seeds, wide=st.booleans())
def test_flag_counts_equal_the_reference_per_element_flags(bits, fmt, bias, rounding, seed, wide):
    x = np.array(bits, dtype=np.uint64)
    x = x.view(np.float64) if wide else (x >> 32).astype(np.uint32).view(np.float32)
    want = dict.fromkeys(("invalid", "denormal", "overflow", "underflow"), 0)
    for i, v in enumerate(x.tolist()):
        r = random_bits(seed, i) if rounding == "stochastic" else None
        for name in ref.encode(v, fmt, bias, rounding, r, str(x.dtype))[1]:
            want[name] += 1
    for backend in BACKENDS:
        assert flags_with(backend, x, fmt, bias, rounding, seed) == want, backend
    f = Flags()
    codes = encode(x, fmt, bias, rounding, seed, flags=f)
    assert f.as_dict() == want
    assert np.array_equal(codes, encode(x, fmt, bias, rounding, seed))  # flags do not change the codes


@pytest.mark.parametrize("dtype, input_format", [(torch.float16, "float16"), (torch.bfloat16, "bfloat16")])
def test_half_inputs_widen_exactly_and_flag_their_own_denormals(dtype, input_format):
    bits = torch.arange(0, 1 << 16, 7, dtype=torch.int32).to(torch.int16)
    x = bits.view(dtype)
    f = Flags()
    codes = encode(x, FORMATS["cfloat8_1_5_2"], 20, flags=f)
    want = dict.fromkeys(("invalid", "denormal", "overflow", "underflow"), 0)
    for i, v in enumerate(x.float().tolist()):
        c, fl = ref.encode(v, "cfloat8_1_5_2", 20, "nearest", None, input_format)
        assert int(codes[i]) == c
        for name in fl:
            want[name] += 1
    assert f.as_dict() == want and f.denormal > 0


# --- stochastic rounding -------------------------------------------------------------------------------
def test_random_bits_are_the_same_in_python_and_torch_at_any_offset():
    for seed in (0, 1, 2**63 + 12345):
        for offset in (0, 2**32 - 3):  # crosses a high-word boundary
            got = random_bits_torch(seed, 6, "cpu", offset).tolist()
            assert got == [random_bits(seed, offset + i) for i in range(6)]


@pytest.mark.parametrize("fmt", FMTS, ids=[f.name for f in FMTS])
def test_stochastic_codes_identical_across_backends_threads_and_chunks(fmt):
    x = np.random.default_rng(7).standard_normal(300_000).astype(np.float32) * 3
    want = encode_with("torch", x, fmt, 9, "stochastic", seed=11)
    if "c" in BACKENDS:
        for threads in (1, 2, 3, 7):
            assert np.array_equal(encode_with("c", x, fmt, 9, "stochastic", 11, threads=threads), want)
    parts = [encode_flat(torch.from_numpy(x[a:b]), fmt, 9, "stochastic", 11, False, index_offset=a)[0]
             for a, b in ((0, 1000), (1000, 123_457), (123_457, 300_000))]
    assert np.array_equal(torch.cat(parts).numpy(), want)
    t = torch.from_numpy(x).reshape(600, 500)
    assert np.array_equal(encode(t, fmt, 9, "stochastic", seed=11).reshape(-1).numpy().astype(np.int64), want)
    other = encode(x, fmt, 9, "stochastic", seed=12).astype(np.int64)
    assert np.mean(other != want) > 0.1  # another seed rounds many elements the other way


@pytest.mark.parametrize("fmt", FMTS, ids=[f.name for f in FMTS])
def test_stochastic_rounding_is_unbiased(fmt):
    # values spread uniformly inside quantisation steps, at one binade; the mean rounding error in ulps
    # must vanish: 5 sigma of the sample mean (sigma <= 0.5 ulp) plus the 2**-16 truncation of the
    # 16 random bits.
    n = 400_000
    bias = fmt.default_bias
    ulp = fmt.smallest_normal(bias) * fmt.eps * 4  # the binade [4, 8) * smallest_normal
    x = (4 * fmt.smallest_normal(bias) + np.random.default_rng(3).random(n) * 3.9 * fmt.smallest_normal(bias))
    err = (fake_quantize(x, fmt, bias, "stochastic", seed=5) - x) / ulp
    assert abs(err.mean()) < 5 * 0.5 / np.sqrt(n) + 2.0**-16
    near = (fake_quantize(x, fmt, bias) - x) / ulp
    assert np.abs(err).max() < 1 and np.abs(near).max() <= 0.5


# --- independent references ------------------------------------------------------------------------------
def _gfloat_info(fmt, bias):
    from gfloat import Domain, FormatInfo

    return FormatInfo(fmt.name, k=fmt.bits, precision=fmt.mantissa_bits + 1, bias=bias, is_signed=fmt.signed,
                      domain=Domain.Finite, has_nz=fmt.signed, num_high_nans=0, has_subnormals=True,
                      is_twos_complement=False)


@pytest.mark.parametrize("fmt", FMTS, ids=[f.name for f in FMTS])
def test_gfloat_agrees_in_all_three_rounding_modes(fmt):
    import gfloat
    from gfloat import RoundMode

    rng = np.random.default_rng(0)
    x = rng.standard_normal(3000) * np.exp2(rng.integers(-75, 45, 3000).astype(np.float64))
    if not fmt.signed:
        x = np.abs(x)  # gfloat does not clamp negatives for UHP
    srbits = np.array([random_bits(3, i) for i in range(x.size)])
    for bias in (0, 1, fmt.default_bias, 40, 63):
        fi = _gfloat_info(fmt, bias)
        modes = (("nearest", RoundMode.TiesToEven, {}), ("toward_zero", RoundMode.TowardZero, {}),
                 ("stochastic", RoundMode.Stochastic, {"srbits": srbits, "srnumbits": 16}))
        for rounding, mode, kw in modes:
            theirs = gfloat.encode_ndarray(fi, gfloat.round_ndarray(fi, x, mode, sat=True, **kw))
            ours = encode(x, fmt, bias, rounding, seed=3)
            assert np.array_equal(theirs.astype(np.int64), ours.astype(np.int64)), (bias, rounding)


@pytest.mark.parametrize("name, fmt, bias", [("float8_e4m3fnuz", "cfloat8_1_4_3", 8),
                                             ("float8_e5m2fnuz", "cfloat8_1_5_2", 16)])
def test_ml_dtypes_fnuz_formats_agree_through_the_scaling_identity(name, fmt, bias):
    import ml_dtypes

    x = np.random.default_rng(1).standard_normal(20000).astype(np.float32) * 20
    f = FORMATS[fmt]
    x = x[np.abs(x) < f.max(bias) / 2]
    theirs = x.astype(getattr(ml_dtypes, name)).astype(np.float32)
    # fnuz has no -0: compare values, which are equal up to the sign of zero
    assert np.array_equal(fake_quantize(x, f, bias), theirs)
    # the scaling identity: bias B on x equals bias B0 on x * 2**(B0 - B)
    assert np.array_equal(encode(x, f, bias), encode(x * np.float32(2.0**5), f, bias - 5))
