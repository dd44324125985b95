"""Exact resume through a safetensors checkpoint, and dojo_lean's SHP-stored weights."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from opendojo import numerics
from opendojo.nn import Recipe, TensorPolicy, bias_report, convert, requantize_weights_


def _model(recipe: Recipe) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32),
                        nn.ReLU(), nn.Linear(32, 1))
    return convert(net, recipe)


def _train(net, opt, steps: int, start: int) -> None:
    for step in range(start, start + steps):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(16, 6, generator=g)
        loss = (net(x) - x.sum(1, keepdim=True)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        requantize_weights_(net)


@pytest.mark.parametrize("recipe", [Recipe.dojo(), Recipe.dojo_lean()], ids=["dojo", "dojo_lean"])
def test_resume_from_safetensors_checkpoint_is_bit_identical(recipe, tmp_path):
    straight = _model(recipe)
    opt = torch.optim.Adam(straight.parameters(), lr=1e-2)
    _train(straight, opt, 6, 0)

    first = _model(recipe)
    opt1 = torch.optim.Adam(first.parameters(), lr=1e-2)
    _train(first, opt1, 3, 0)
    save_file(first.state_dict(), tmp_path / "model.safetensors")
    torch.save(opt1.state_dict(), tmp_path / "optim.pt")

    resumed = _model(recipe)
    resumed.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=True)
    opt2 = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    opt2.load_state_dict(torch.load(tmp_path / "optim.pt"))
    _train(resumed, opt2, 3, 3)

    want, got = straight.state_dict(), resumed.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    assert bias_report(resumed) == bias_report(straight)


def _representable(w: torch.Tensor, fmt, bias: int) -> bool:
    return torch.equal(numerics.fake_quantize(w, fmt, bias), w)


def test_dojo_lean_keeps_weights_in_cfloat16_shp_after_every_step():
    net = _model(Recipe.dojo_lean())
    layer = net[2]
    shp = numerics.CFLOAT16_SHP
    assert _representable(layer.weight.detach(), shp, int(layer.cfloat.weight_storage.bias))
    opt = torch.optim.SGD(net.parameters(), lr=1e-2)
    before = layer.weight.detach().clone()
    _train(net, opt, 1, 0)
    w = layer.weight.detach()
    assert not torch.equal(w, before)
    assert _representable(w, shp, int(layer.cfloat.weight_storage.bias))
    # the FP32-only layers (first, last) are untouched by requantize_weights_
    assert not _representable(net[0].weight.detach(), shp, int(layer.cfloat.weight_storage.bias))


def test_requantize_weights_is_a_no_op_without_weight_storage():
    net = _model(Recipe.dojo())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    requantize_weights_(net)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_stochastic_weight_storage_keeps_updates_smaller_than_half_an_ulp():
    """The paper's argument: an update below half an ulp survives stochastic rounding on average,
    while round-to-nearest drops it."""
    w0 = torch.full((20000,), 1.0)
    update = 2.0 ** -13  # a quarter of SHP's ulp at 1.0 (2**-10 / 4 is below half an ulp)

    def mean_after_update(rounding: str) -> float:
        layer = nn.Linear(20000, 1, bias=False)
        recipe = Recipe(name="store", weight_storage=TensorPolicy("cfloat16_shp", rounding))
        convert(layer, recipe, module_filter=lambda fqn, m: True)
        with torch.no_grad():
            layer.weight.copy_((w0 + update)[None])
        requantize_weights_(layer)
        return float(layer.weight.detach().mean())

    assert mean_after_update("nearest") == 1.0
    assert abs(mean_after_update("stochastic") - (1.0 + update)) < 0.1 * update
