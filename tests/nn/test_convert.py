"""convert(): what gets swapped, what is kept, and the warnings when nothing is."""

import pytest
import torch
from torch import nn

from opendojo.nn import CFloatConv2d, CFloatLinear, Recipe, cfloat_layers, convert, convertible_layers


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), nn.ReLU())
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.mid = nn.Linear(8, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h = self.body(self.stem(x)).mean((2, 3))[:, None, :]
        h, _ = self.attn(h, h, h)
        return self.head(torch.relu(self.mid(h[:, 0])))


def test_default_filter_keeps_first_and_last_layer_fp32_and_skips_attention_internals():
    net = _Net()
    assert convertible_layers(net) == ["stem", "body.0", "mid", "head"]
    params_before = {n: p for n, p in net.named_parameters()}
    convert(net, Recipe.dojo())
    assert sorted(cfloat_layers(net)) == ["body.0", "mid"]
    assert type(net.stem) is nn.Conv2d and type(net.head) is nn.Linear
    assert isinstance(net.body[0], CFloatConv2d) and isinstance(net.body[0], nn.Conv2d)
    assert isinstance(net.mid, CFloatLinear) and isinstance(net.mid, nn.Linear)
    assert type(net.attn.out_proj) is not CFloatLinear
    # same Parameter objects: an optimizer created before conversion still updates the model
    assert all(p is params_before[n] for n, p in net.named_parameters())
    out = net(torch.randn(2, 3, 6, 6))
    assert out.shape == (2, 4) and torch.isfinite(out).all()


def test_state_dict_keeps_original_keys_and_adds_cfloat_state():
    plain = _Net()
    keys = set(plain.state_dict())
    net = convert(_Net(), Recipe.dojo())
    new = set(net.state_dict()) - keys
    assert keys <= set(net.state_dict())
    assert "mid.cfloat.step" in new and "mid.cfloat.grad_output.amax_history" in new
    assert all(".cfloat." in k for k in new)


def test_fp32_checkpoint_loads_strictly_into_converted_model():
    plain = _Net()
    net = convert(_Net(), Recipe.dojo())
    result = net.load_state_dict(plain.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(net.mid.weight, plain.mid.weight)


def test_fp32_recipe_computes_exactly_like_the_original_model():
    torch.manual_seed(0)
    plain = _Net()
    net = _Net()
    net.load_state_dict(plain.state_dict())
    convert(net, Recipe.fp32(), module_filter=lambda fqn, m: True)
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(net(x), plain(x))


def test_model_without_convertible_layer_warns():
    model = nn.Sequential(nn.ReLU(), nn.LayerNorm(4))
    with pytest.warns(UserWarning, match="Sequential has no convertible layer .* nothing was converted"):
        assert convert(model) is model


def test_filter_that_excludes_everything_warns():
    with pytest.warns(UserWarning, match="the module filter excluded all 1 convertible layers of Linear"):
        convert(nn.Linear(4, 4), Recipe.dojo())


def test_convert_twice_is_idempotent_and_bad_recipe_is_a_type_error():
    net = convert(_Net(), Recipe.dojo())
    net.mid.cfloat.step.fill_(5)
    convert(net, Recipe.dojo())
    assert int(net.mid.cfloat.step) == 5
    with pytest.raises(TypeError, match="recipe='dojo' is not allowed; pass an opendojo.nn.Recipe"):
        convert(_Net(), "dojo")
