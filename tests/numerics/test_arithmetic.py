"""add/mul/fma/matmul: decode exactly, one IEEE FP32 operation, one rounding into the destination."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from opendojo.numerics import (
    CFLOAT8_1_4_3,
    CFLOAT8_1_5_2,
    CFLOAT16_SHP,
    CFLOAT16_UHP,
    CFloatTensor,
    Flags,
    add,
    fma,
    matmul,
    mul,
)
from opendojo.numerics import reference as ref
from opendojo.numerics.arithmetic import fma32
from opendojo.numerics.stochastic import random_bits


def _random_operand(fmt, bias, shape, seed):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 1 << fmt.bits, shape, generator=g)
    return CFloatTensor(codes, fmt, bias)


def _exact(t: CFloatTensor, i) -> Fraction:
    return ref.decode(int(t.codes.reshape(-1)[i]), t.fmt, t.bias)


@pytest.mark.parametrize("fmt_a, bias_a, fmt_b, bias_b", [
    (CFLOAT8_1_4_3, 7, CFLOAT8_1_4_3, 3), (CFLOAT8_1_5_2, 15, CFLOAT8_1_4_3, 40),
    (CFLOAT16_SHP, 15, CFLOAT16_SHP, 0), (CFLOAT16_UHP, 0, CFLOAT16_UHP, 0),
    (CFLOAT16_SHP, 63, CFLOAT8_1_4_3, 63),
])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_add_mul_fma_match_the_exact_reference(fmt_a, bias_a, fmt_b, bias_b, rounding):
    a = _random_operand(fmt_a, bias_a, (300,), 1)
    b = _random_operand(fmt_b, bias_b, (300,), 2)
    c = _random_operand(fmt_a, bias_a, (300,), 3)
    for op in ("add", "mul", "fma"):
        if op == "add":
            got = add(a, b, CFLOAT8_1_5_2, 20, rounding, seed=4)
        elif op == "mul":
            got = mul(a, b, CFLOAT8_1_5_2, 20, rounding, seed=4)
        else:
            got = fma(a, b, c, CFLOAT8_1_5_2, 20, rounding, seed=4)
        for i in range(300):
            x, y, z = _exact(a, i), _exact(b, i), _exact(c, i)
            exact = {"add": x + y, "mul": x * y, "fma": x * y + z}[op]
            r32 = ref.round_fp32(exact)
            if exact == 0:  # IEEE sign of an exact zero: Python float ops follow it
                fx, fy, fz = (ref.decode_float(int(t.codes[i]), t.fmt, t.bias) for t in (a, b, c))
                r32 = {"add": fx + fy, "mul": fx * fy, "fma": fx * fy + fz}[op]
            rnd = random_bits(4, i) if rounding == "stochastic" else None
            want, _ = ref.encode(r32, CFLOAT8_1_5_2, 20, rounding, rnd)
            assert int(got.codes[i]) == want, (op, i, x, y, z)


def test_fma32_breaks_midpoint_ties_with_the_exact_addend():
    # (1 + 2**-12)**2 = 1 + 2**-11 + 2**-24: an exact FP32 midpoint; a tiny c decides the direction,
    # which a plain FP64 sum would lose.
    a = torch.full((3,), 1 + 2.0**-12)
    c = torch.tensor([2.0**-100, -(2.0**-100), 0.0])
    r = fma32(a, a, c)
    assert r.tolist() == [1 + 2.0**-11 + 2.0**-23, 1 + 2.0**-11, 1 + 2.0**-11]


def test_matmul_is_sequential_fp32_fma_accumulation():
    a = _random_operand(CFLOAT8_1_4_3, 7, (3, 5), 5)
    b = _random_operand(CFLOAT8_1_5_2, 15, (5, 4), 6)
    got = matmul(a, b, CFLOAT16_SHP, 10)
    assert got.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            acc = 0.0
            for k in range(5):
                x, y = ref.decode(int(a.codes[i, k]), a.fmt, 7), ref.decode(int(b.codes[k, j]), b.fmt, 15)
                acc = ref.fma_fp32(x, y, Fraction(acc))
            want, _ = ref.encode(acc, CFLOAT16_SHP, 10)
            assert int(got.codes[i, j]) == want


def test_default_destination_is_first_operand_format_with_a_chosen_bias():
    a = CFloatTensor.from_float(torch.tensor([100.0, -3.0]), CFLOAT8_1_4_3)
    assert a.bias == 9  # largest bias whose max (1.875 * 2**6 = 120) covers 100
    s = add(a, a)
    assert s.fmt is CFLOAT8_1_4_3 and s.bias == 8
    assert a.to_float().tolist() == [96.0, -3.0]  # 100 = 1.5625 * 2**6 is a tie: to even
    assert s.to_float().tolist() == [192.0, -6.0]


def test_overflow_to_fp32_inf_saturates_and_is_flagged():
    big = CFloatTensor(torch.tensor([0xFFFF]), CFLOAT16_UHP, 0)  # (2 - 2**-10) * 2**63
    f = Flags()
    r = matmul(CFloatTensor(torch.full((1, 4), 0xFFFF), CFLOAT16_UHP, 0),
               CFloatTensor(torch.full((4, 1), 0xFFFF), CFLOAT16_UHP, 0), CFLOAT16_UHP, 0, flags=f)
    assert int(r.codes[0, 0]) == 0xFFFF and f.overflow == 1
    assert int(mul(big, big, bias=0).codes[0]) == 0xFFFF


def test_bad_operands_are_rejected():
    a = _random_operand(CFLOAT8_1_4_3, 7, (3, 4), 1)
    with pytest.raises(TypeError, match="b must be a CFloatTensor"):
        add(a, torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"operand shapes do not broadcast: a\(3, 4\), b\(5,\)"):
        mul(a, _random_operand(CFLOAT8_1_4_3, 7, (5,), 2))
    with pytest.raises(ValueError, match="matmul needs a"):
        matmul(a, a)
    with pytest.raises(ValueError, match=r"codes must lie in 0\.\.255"):
        CFloatTensor(torch.tensor([300]), CFLOAT8_1_4_3, 7)
    with pytest.raises(ValueError, match=r"bias: got .*; allowed: an integer in 0\.\.63"):
        CFloatTensor(torch.tensor([3], dtype=torch.uint8), CFLOAT8_1_4_3, 64)
    assert CFloatTensor(np.array([1, 2], np.uint8), "cfloat8_1_4_3", 7).codes.dtype == torch.uint8
