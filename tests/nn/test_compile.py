"""Converted models under torch.compile give the eager results (the rounding runs eagerly between graphs)."""

import pytest
import torch
from torch import nn

from opendojo.nn import Recipe, convert


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 36, 32), nn.ReLU(), nn.Linear(32, 4))
    return convert(net, Recipe.dojo())


@pytest.mark.slow
def test_compiled_converted_model_matches_eager_bit_for_bit():
    eager, compiled = _net(), _net()
    run = torch.compile(compiled)
    x = torch.randn(4, 3, 6, 6)
    for _ in range(2):
        y_eager, y_compiled = eager(x), run(x)
        y_eager.square().sum().backward()
        y_compiled.square().sum().backward()
        assert torch.equal(y_eager, y_compiled)
        for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
            assert torch.equal(a.grad, b.grad), name
    assert eager.state_dict().keys() == compiled.state_dict().keys()
    assert all(torch.equal(v, compiled.state_dict()[k]) for k, v in eager.state_dict().items())
