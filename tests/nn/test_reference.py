"""A converted layer against a hand-written fake-quantized reference, bit for bit (issue 3, item 4)."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from opendojo import numerics
from opendojo.nn import Recipe, TensorPolicy, convert
from opendojo.nn.seeds import layer_seed, tensor_seed

F143, F152 = numerics.CFLOAT8_1_4_3, numerics.CFLOAT8_1_5_2
DOJO_RTN = replace(Recipe.dojo(), name="dojo-rtn", gradient=TensorPolicy("cfloat8_1_5_2", "nearest"))


def _convert_alone(layer: nn.Module, recipe: Recipe) -> nn.Module:
    return convert(layer, recipe, module_filter=lambda fqn, m: True)


def _fq(x, fmt, rounding="nearest", seed=None):
    """Round x to fmt at the bias choose_bias gives for its amax: the dynamic policy, written out."""
    bias = numerics.choose_bias(x.abs().max(), fmt)
    seed = seed if rounding == "stochastic" else None
    return numerics.fake_quantize(x, fmt, bias, rounding=rounding, seed=seed)


def _reference(op, x, w, b, grad_y, recipe: Recipe, step: int = 0):
    """(y, grad_x, grad_w, grad_b) of ``op`` computed on rounded operands, by hand.

    The layer is the model root, so its name is "" and its base seed is layer_seed(recipe.seed, "").
    """
    base = layer_seed(recipe.seed, "")
    seed = {name: tensor_seed(base, step, name) for name in ("grad_output", "grad_input")}
    xq, wq = _fq(x, F143), _fq(w, F143)
    y = op(xq, wq, b)
    gq = _fq(grad_y, F152, recipe.gradient.rounding, seed["grad_output"])
    # Backward products in FP32 on the rounded operands: autograd of the plain op, fed gq.
    xl, wl, bl = xq.clone().requires_grad_(), wq.clone().requires_grad_(), b.clone().requires_grad_()
    grad_xq, grad_w, grad_b = torch.autograd.grad(op(xl, wl, bl), (xl, wl, bl), gq)
    grad_x = _fq(grad_xq, F152, recipe.gradient.rounding, seed["grad_input"])
    return y, grad_x, grad_w, grad_b


def _run_layer(layer, x, grad_y):
    xl = x.clone().requires_grad_()
    y = layer(xl)
    y.backward(grad_y)
    return y.detach(), xl.grad, layer.weight.grad, layer.bias.grad


CASES = {
    "linear": (lambda: nn.Linear(24, 40), (8, 24), F.linear),
    "conv2d": (lambda: nn.Conv2d(3, 8, 3, padding=1), (2, 3, 9, 9),
               lambda x, w, b: F.conv2d(x, w, b, padding=1)),
    "conv3d": (lambda: nn.Conv3d(2, 4, 3, stride=(1, 2, 2)), (1, 2, 5, 9, 9),
               lambda x, w, b: F.conv3d(x, w, b, stride=(1, 2, 2))),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("recipe", [Recipe.dojo(), DOJO_RTN], ids=["stochastic", "nearest"])
def test_converted_layer_matches_fake_quantized_reference_bit_for_bit(case, recipe):
    make, shape, op = CASES[case]
    torch.manual_seed(1)
    layer = make()
    w, b = layer.weight.detach().clone(), layer.bias.detach().clone()
    x = torch.randn(shape) * 3.0
    layer = _convert_alone(layer, recipe)
    y_probe = layer(x)  # step 0 forward: learn the output shape; then rewind the step counter
    layer.cfloat.step.zero_()
    grad_y = torch.randn_like(y_probe) * 1e-3
    got = _run_layer(layer, x, grad_y)
    want = _reference(op, x, w, b, grad_y, recipe)
    for name, g, r in zip(("y", "grad_x", "grad_w", "grad_b"), got, want, strict=True):
        assert torch.equal(g, r), f"{case}: {name} differs from the reference (max |d| {(g - r).abs().max()})"


def test_operands_really_are_rounded():
    """Guard against a vacuous reference: the CFloat layer differs from the FP32 layer."""
    torch.manual_seed(2)
    fp32 = nn.Linear(24, 40)
    cf = _convert_alone(nn.Linear(24, 40), Recipe.dojo())
    cf.load_state_dict(fp32.state_dict())
    x = torch.randn(8, 24)
    assert not torch.equal(fp32(x), cf(x))
    # ... and its output is exactly the FP32 product of CFloat8 values.
    xq = _fq(x, F143)
    assert torch.equal(cf(x), F.linear(xq, _fq(fp32.weight.detach(), F143), fp32.bias.detach()))
    assert torch.equal(numerics.fake_quantize(xq, F143, numerics.choose_bias(x.abs().max(), F143)), xq)


def test_stochastic_gradient_seeds_change_every_step():
    torch.manual_seed(3)
    layer = _convert_alone(nn.Linear(16, 16), Recipe.dojo())
    x = torch.randn(64, 16, requires_grad=True)
    g = torch.randn(64, 16) * 1e-2
    grads = []
    for _ in range(2):
        x.grad = None
        layer(x).backward(g)
        grads.append(x.grad.clone())
    assert not torch.equal(grads[0], grads[1])
    assert int(layer.cfloat.step) == 2
