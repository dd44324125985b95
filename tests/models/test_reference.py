import pytest
import torch

from opendojo.models.reference_gpt import GPT_PRESETS, gpt, gpt_inputs
from opendojo.models.reference_unet import unet_inputs, unet_sd
from opendojo.models.reference_vision import resnet50, vit_b16


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_published_parameter_counts_on_meta():
    assert _params(resnet50(device="meta")) == 25_557_032
    assert _params(vit_b16(device="meta")) == 86_567_656
    assert _params(unet_sd(device="meta")) == pytest.approx(859.5e6, rel=1e-3)
    assert _params(gpt("gpt-125m", device="meta")) == GPT_PRESETS["gpt-125m"].params


def test_gpt_config_param_formula_matches_module_for_every_preset():
    for name in GPT_PRESETS:
        m = gpt(name, device="meta", n_layer=1)
        assert _params(m) == m.config.params, name
    assert GPT_PRESETS["gpt-175b"].params == pytest.approx(175e9, rel=0.01)
    assert GPT_PRESETS["llama3-405b"].params == pytest.approx(405e9, rel=0.01)


def test_small_models_run_forward_and_backward_on_cpu():
    g = gpt("gpt-125m", n_layer=1, d_model=32, n_head=4, seq=16, vocab=50)
    out = g(gpt_inputs(g.config, 2))
    assert out.shape == (2, 16, 50)
    out.sum().backward()
    assert g.tok.weight.grad is not None
    assert resnet50(width=8, classes=10)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    v = vit_b16(image=32, patch=8, d=32, depth=1, heads=2, mlp=64, classes=7)
    assert v(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    u = unet_sd(channels=(32, 64), ctx_dim=16, heads=2, layers=1)
    assert u(*unet_inputs(2, latent=8, ctx_dim=16)).shape == (2, 4, 8, 8)


def test_bad_gpt_name_and_shape_are_rejected():
    with pytest.raises(ValueError, match="unknown GPT preset 'gpt-9t'.*gpt-175b"):
        gpt("gpt-9t", device="meta")
    with pytest.raises(ValueError, match="d_model=100 is not divisible by n_head=3"):
        gpt("gpt-125m", device="meta", d_model=100, n_head=3)
