"""Per-block biases: the fast path against the exact reference, element by element."""

import pytest
import torch

from opendojo import numerics
from opendojo.numerics import reference as ref
from opendojo.numerics.blocks import block_amax, block_bias, block_fake_quantize
from opendojo.numerics.stochastic import random_bits


def _reference_blocks(x: torch.Tensor, fmt, dim: int, block: int, rounding: str, seed: int | None):
    """Per element: the bias choose_bias gives its block alone, then reference.encode/decode."""
    moved = x.movedim(dim, -1).contiguous()
    rows = moved.reshape(-1, moved.shape[-1])
    index = torch.arange(x.numel()).reshape(x.shape).movedim(dim, -1).reshape(rows.shape)
    out = torch.empty_like(rows)
    for row in range(rows.shape[0]):
        values, flat = rows[row], index[row]
        for start in range(0, values.numel(), block):
            chunk = values[start:start + block]
            bias = numerics.choose_bias(chunk, fmt)
            for k in range(chunk.numel()):
                rnd = random_bits(seed, int(flat[start + k])) if rounding == "stochastic" else None
                code, _ = ref.encode(float(chunk[k]), fmt, bias, rounding, rnd, "float32")
                out[row, start + k] = ref.decode_float(code, fmt, bias)
    return out.reshape(moved.shape).movedim(-1, dim)


@pytest.mark.parametrize("fmt", [numerics.CFLOAT8_1_4_3, numerics.CFLOAT8_1_5_2])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "toward_zero"])
@pytest.mark.parametrize("shape, dim, block", [((3, 70), -1, 32), ((2, 40, 3, 3), 1, 16), ((5, 9), 0, 2)])
def test_block_rounding_matches_the_reference_bit_for_bit(fmt, rounding, shape, dim, block):
    g = torch.Generator().manual_seed(7)
    # Blocks of very different magnitudes: the case per-block biases exist for.
    x = torch.randn(shape, generator=g) * torch.exp2(torch.randint(-30, 12, shape, generator=g).float())
    seed = 1234 if rounding == "stochastic" else None
    got, biases = block_fake_quantize(x, fmt, dim, block, rounding, seed)
    want = _reference_blocks(x, fmt, dim, block, rounding, seed)
    assert torch.equal(got, want)
    assert biases.shape[dim % x.dim()] == -(-shape[dim] // block)


def test_block_bias_equals_choose_bias_on_every_binade():
    binades = torch.exp2(torch.arange(-80.0, 40.0, 0.25))
    amax = torch.cat([torch.zeros(1), binades, torch.tensor([float("inf")])])
    for fmt in numerics.FORMATS.values():
        got = block_bias(amax, fmt, margin=1)
        want = [numerics.choose_bias(float(a), fmt, margin=1) for a in amax]
        assert got.tolist() == want, fmt


def test_block_amax_ignores_inf_and_pads_the_short_block():
    x = torch.tensor([[1.0, -3.0, float("inf"), 2.0, -0.5]])
    assert block_amax(x, -1, 2).tolist() == [[3.0, 2.0, 0.5]]


def test_one_block_is_the_per_tensor_rounding():
    x = torch.randn(4, 64) * 5
    got, biases = block_fake_quantize(x, numerics.CFLOAT8_1_4_3, -1, 64 * 4)
    bias = numerics.choose_bias(x, numerics.CFLOAT8_1_4_3)
    assert torch.equal(got[0], numerics.fake_quantize(x, numerics.CFLOAT8_1_4_3, bias)[0])


def test_a_non_contiguous_tensor_is_rounded_like_its_contiguous_copy():
    x = (torch.randn(3, 40, 5) * 10).transpose(1, 2)  # blocks along the (now strided) last dimension
    got, _ = block_fake_quantize(x, numerics.CFLOAT8_1_4_3, -1, 16)
    want, _ = block_fake_quantize(x.contiguous(), numerics.CFLOAT8_1_4_3, -1, 16)
    assert torch.equal(got, want)


def test_bad_block_is_a_usage_error():
    with pytest.raises(ValueError, match="block: got 0; allowed: an integer ≥ 1"):
        block_fake_quantize(torch.ones(4), numerics.CFLOAT8_1_4_3, 0, 0)
