"""Bias policies (dynamic, delayed, fixed), flag counts and non-finite inputs."""

import math

import pytest
import torch
from torch import nn

from opendojo import numerics
from opendojo.nn import Recipe, TensorPolicy, bias_report, convert
from opendojo.nn.bias_state import TensorBias

F143 = numerics.CFLOAT8_1_4_3


def _layer(activation: TensorPolicy, flags_every: int = 1) -> nn.Linear:
    recipe = Recipe(name="test", activation=activation, flags_every=flags_every)
    return convert(nn.Linear(8, 8), recipe, module_filter=lambda fqn, m: True)


def test_dynamic_bias_follows_each_tensors_amax():
    layer = _layer(TensorPolicy("cfloat8_1_4_3", bias="dynamic"))
    for scale in (1.0, 100.0, 0.01):
        x = torch.randn(4, 8) * scale
        layer(x)
        assert int(layer.cfloat.input.bias) == numerics.choose_bias(x.abs().max(), F143)
    assert int(layer.cfloat.input.overflow) == 0


def test_delayed_bias_uses_the_window_and_changes_only_when_needed():
    layer = _layer(TensorPolicy("cfloat8_1_4_3", bias="delayed", history=2))
    small = torch.full((4, 8), 1.0)
    spike = torch.full((4, 8), 1000.0)
    layer(small)  # no history yet: chosen from this tensor
    b_small = numerics.choose_bias(1.0, F143)
    assert int(layer.cfloat.input.bias) == b_small
    y = layer(spike)  # chosen from the window (amax 1): the spike saturates and is counted
    assert int(layer.cfloat.input.bias) == b_small
    assert int(layer.cfloat.input.overflow) == spike.numel()
    assert torch.isfinite(y).all()
    layer(small)  # the window now holds the spike: bias lowered
    b_spike = numerics.choose_bias(1000.0, F143)
    assert int(layer.cfloat.input.bias) == b_spike
    layer(small)  # window [small, spike]: unchanged
    assert int(layer.cfloat.input.bias) == b_spike
    layer(small)  # the spike left the window
    assert int(layer.cfloat.input.bias) == b_small


def test_fixed_bias_and_margin():
    fixed = _layer(TensorPolicy("cfloat8_1_4_3", bias="fixed", fixed_bias=7))
    fixed(torch.randn(4, 8) * 1e3)
    assert int(fixed.cfloat.input.bias) == 7 and int(fixed.cfloat.input.overflow) > 0
    margin = _layer(TensorPolicy("cfloat8_1_4_3", margin=2))
    x = torch.randn(4, 8)
    margin(x)
    assert int(margin.cfloat.input.bias) == numerics.choose_bias(x.abs().max(), F143) - 2


def test_eval_mode_leaves_the_policy_state_alone():
    layer = _layer(TensorPolicy("cfloat8_1_4_3", bias="delayed"))
    layer.eval()
    with torch.no_grad():
        layer(torch.randn(4, 8))
    assert int(layer.cfloat.input.bias) == -1 and int(layer.cfloat.step) == 0
    assert float(layer.cfloat.input.amax_history.abs().sum()) == 0.0


def test_inf_and_nan_activations_saturate_and_are_counted():
    layer = _layer(TensorPolicy("cfloat8_1_4_3"))
    x = torch.randn(4, 8)
    x[0, 0], x[1, 1] = float("inf"), float("nan")
    y = layer(x)
    assert torch.isfinite(y).all()
    st = layer.cfloat.input
    finite_amax = x[torch.isfinite(x)].abs().max()
    assert int(st.bias) == numerics.choose_bias(finite_amax, F143)  # Inf does not drag the bias to 0
    report = bias_report(layer)[""]["input"]
    assert report["invalid"] == 1 and report["infinite"] == 1


def test_flags_are_counted_on_every_nth_step_only():
    layer = _layer(TensorPolicy("cfloat8_1_4_3", bias="fixed", fixed_bias=20), flags_every=2)
    big = torch.full((2, 8), 1e6)
    for _ in range(3):  # steps 0, 1, 2: flags counted on 0 and 2
        layer(big)
    assert int(layer.cfloat.input.overflow) == 2 * big.numel()
    never = _layer(TensorPolicy("cfloat8_1_4_3", bias="fixed", fixed_bias=20), flags_every=0)
    never(big)
    assert int(never.cfloat.input.overflow) == 0


def test_bias_report_lists_every_rounded_tensor_class():
    net = convert(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)), Recipe.dojo_lean())
    net(torch.randn(3, 4, requires_grad=True)).sum().backward()
    report = bias_report(net)
    assert list(report) == ["1"]
    entry = report["1"]
    assert entry["step"] == 1
    assert set(entry) == {"step", "input", "weight", "grad_output", "grad_input", "weight_storage"}
    assert entry["grad_output"]["format"] == "cfloat8_1_5_2" and 0 <= entry["grad_output"]["bias"] <= 63


@pytest.mark.parametrize("fmt", ["cfloat8_1_4_3", "cfloat8_1_5_2", "cfloat16_shp"])
@pytest.mark.parametrize("margin", [0, 3])
def test_bias_table_agrees_with_numerics_choose_bias(fmt, margin):
    """The fast bisection in TensorBias against its slow twin, over ±1 ulp of every binade edge."""
    state = TensorBias(TensorPolicy(fmt, margin=margin))
    f = numerics.get_format(fmt)
    amaxes = [0.0, 1e-30, 1e30, float(torch.finfo(torch.float32).max)]
    for b in range(64):
        edge = f.max(b)
        amaxes += [edge, math.nextafter(edge, 0.0), math.nextafter(edge, math.inf)]
    for amax in amaxes:
        assert state._choose_bias(amax) == numerics.choose_bias(amax, f, margin=margin), amax
