"""Formats as data: the finfo-style values of docs/cfloat-spec.md's table, lookup and bias checks."""

import pytest

from opendojo.numerics import (
    CFLOAT8_1_4_3,
    CFLOAT8_1_5_2,
    CFLOAT16_SHP,
    CFLOAT16_UHP,
    FORMATS,
    CFloatFormat,
    choose_bias,
    get_format,
)


@pytest.mark.parametrize(
    "fmt, bias, max_, normal, subnormal",
    [
        (CFLOAT8_1_4_3, 0, 61440.0, 2.0, 2.0**-2),
        (CFLOAT8_1_4_3, 7, 480.0, 2.0**-6, 2.0**-9),
        (CFLOAT8_1_4_3, 63, 1.875 * 2.0**-48, 2.0**-62, 2.0**-65),
        (CFLOAT8_1_5_2, 0, 1.75 * 2.0**31, 2.0, 2.0**-1),
        (CFLOAT8_1_5_2, 15, 114688.0, 2.0**-14, 2.0**-16),
        (CFLOAT8_1_5_2, 63, 1.75 * 2.0**-32, 2.0**-62, 2.0**-64),
        (CFLOAT16_SHP, 15, 131008.0, 2.0**-14, 2.0**-24),
        (CFLOAT16_UHP, 31, (2 - 2.0**-10) * 2.0**32, 2.0**-30, 2.0**-40),
    ],
)
def test_finfo_values_match_the_spec_table(fmt, bias, max_, normal, subnormal):
    assert fmt.max(bias) == max_
    assert fmt.smallest_normal(bias) == normal
    assert fmt.smallest_subnormal(bias) == subnormal


def test_layouts_and_default_biases():
    layouts = [(f.exponent_bits, f.mantissa_bits, f.signed, f.bits, f.default_bias) for f in FORMATS.values()]
    assert layouts == [(4, 3, True, 8, 7), (5, 2, True, 8, 15), (5, 10, True, 16, 15), (6, 10, False, 16, 31)]
    assert CFLOAT8_1_4_3.eps == 2.0**-3 and CFLOAT16_SHP.eps == 2.0**-10


def test_get_format_by_name_and_passthrough():
    assert get_format("CFloat8_1_4_3") is CFLOAT8_1_4_3
    assert get_format(CFLOAT16_UHP) is CFLOAT16_UHP


def test_get_format_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"fmt: got .e4m3.; allowed: .*cfloat16_shp"):
        get_format("e4m3")


def test_inconsistent_format_definition_is_rejected():
    with pytest.raises(ValueError, match="bits=9"):
        CFloatFormat("bad", 4, 3, True, 9, 7)


@pytest.mark.parametrize("bias", [-1, 64, 7.0, "7", True, None])
def test_bias_must_be_an_integer_in_range(bias):
    with pytest.raises(ValueError, match=r"bias: got .*; allowed: an integer in 0\.\.63"):
        CFLOAT8_1_4_3.max(bias)


@pytest.mark.parametrize("fmt", list(FORMATS.values()), ids=list(FORMATS))
@pytest.mark.parametrize("amax", [1e-30, 3e-7, 0.5, 1.0, 448.0, 480.0, 481.0, 6e4, 1e9])
def test_choose_bias_is_the_largest_bias_that_covers_amax(fmt, amax):
    b = choose_bias(amax, fmt)
    if amax <= fmt.max(0):
        assert fmt.max(b) >= amax
        assert b == 63 or fmt.max(b + 1) < amax
    else:
        assert b == 0


def test_choose_bias_margin_zero_input_and_tensors():
    import numpy as np
    import torch

    assert choose_bias(0.0, CFLOAT8_1_4_3) == 63
    assert choose_bias(480.0, CFLOAT8_1_4_3) == 7
    assert choose_bias(480.0, CFLOAT8_1_4_3, margin=2) == 5
    assert choose_bias(np.array([-480.0, 3.0], np.float32), CFLOAT8_1_4_3) == 7
    assert choose_bias(torch.tensor([1.0, -480.0], requires_grad=True), "cfloat8_1_4_3") == 7
    assert choose_bias(float("inf"), CFLOAT8_1_4_3) == 0


@pytest.mark.parametrize("bad, err, msg", [
    (float("nan"), ValueError, "x_or_amax"), (-1.0, ValueError, "x_or_amax"),
    ([1, 2], TypeError, "x_or_amax"),
])
def test_choose_bias_bad_amax(bad, err, msg):
    with pytest.raises(err, match=msg):
        choose_bias(bad, CFLOAT8_1_4_3)


@pytest.mark.parametrize("margin", [-1, 1.5, True])
def test_choose_bias_bad_margin(margin):
    with pytest.raises(ValueError, match="margin: got .*; allowed: an integer ≥ 0"):
        choose_bias(1.0, CFLOAT8_1_4_3, margin=margin)
