import pytest
import torch
from torch import nn

from opendojo.models import PRESETS, FSDConfig, example_inputs, fsd_net


def _with_random_heads(model):
    # The heads start at zero (the untrained net predicts its base rates); give them weights so that
    # structural properties (gradient flow, causality) are visible.
    for head in (model.occupancy_head, model.ego_head):
        nn.init.normal_(head.weight, std=0.1)
    return model


def test_tiny_forward_gives_every_head_with_documented_shapes():
    torch.manual_seed(0)
    model = fsd_net("tiny")
    out = model(example_inputs("tiny", batch=2))
    c = PRESETS["tiny"]
    assert out["occupancy"].shape == (2, c.frames, c.occupancy_grid, c.occupancy_grid)
    assert out["trajectory"].shape == (2, c.frames, c.horizon, 2)
    assert out["speed"].shape == (2, c.frames)
    assert out["steering"].shape == (2, c.frames)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = _with_random_heads(fsd_net("tiny", cameras=2, frames=2))
    out = model(example_inputs("tiny", batch=1, cameras=2, frames=2))
    sum(v.square().mean() for v in out.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_and_runs_on_the_meta_device(preset):
    model = fsd_net(preset, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    out = model(example_inputs(preset, batch=1, device="meta"))
    assert out["occupancy"].shape[-1] == PRESETS[preset].occupancy_grid


def test_outputs_at_a_frame_do_not_depend_on_later_frames():
    torch.manual_seed(0)
    model = _with_random_heads(fsd_net("tiny", cameras=2)).eval()
    x = example_inputs("tiny", batch=1, cameras=2)
    y = x.clone()
    y[:, :, -1] = torch.randn_like(y[:, :, -1])  # change only the last frame
    a, b = model(x), model(y)
    torch.testing.assert_close(a["occupancy"][:, :-1], b["occupancy"][:, :-1])
    torch.testing.assert_close(a["trajectory"][:, :-1], b["trajectory"][:, :-1])
    assert not torch.allclose(a["trajectory"][:, -1], b["trajectory"][:, -1])
    assert not torch.allclose(a["occupancy"][:, -1], b["occupancy"][:, -1])


def test_the_untrained_network_predicts_its_output_priors():
    model = fsd_net("tiny")
    model.set_output_priors(occupancy_rate=0.25, speed_mps=12.0)
    out = model(example_inputs("tiny", batch=1))
    torch.testing.assert_close(torch.sigmoid(out["occupancy"]), torch.full_like(out["occupancy"], 0.25))
    torch.testing.assert_close(out["speed"], torch.full_like(out["speed"], 12.0))
    assert out["trajectory"][0, 0, -1].tolist() == pytest.approx([12.0 * 0.5 * 8, 0.0])  # straight on
    rates = torch.full((32, 32), 0.01)
    rates[15:17, 15:17] = 0.99  # e.g. the ego footprint
    model.set_output_priors(occupancy_rate=rates, speed_mps=12.0)
    probs = torch.sigmoid(model(example_inputs("tiny", batch=1))["occupancy"][0, 0])
    torch.testing.assert_close(probs, rates)
    with pytest.raises(
        ValueError, match=r"occupancy_rate must be a float or a \[32, 32\] tensor, got shape \(4,\)"
    ):
        model.set_output_priors(occupancy_rate=torch.zeros(4), speed_mps=1.0)
    with pytest.raises(ValueError, match=r"occupancy_rate must be in \(0, 1\), got 1.5"):
        model.set_output_priors(occupancy_rate=1.5, speed_mps=1.0)


def test_bad_preset_and_fields_are_refused_with_the_allowed_values():
    with pytest.raises(ValueError, match=r"preset must be one of \['base', 'large', 'tiny'\]"):
        fsd_net("huge")
    with pytest.raises(ValueError, match="unknown FSDConfig field.*'colour'"):
        fsd_net("tiny", colour=3)
    with pytest.raises(ValueError, match="image_size=60 must be divisible by 2\\*\\*len"):
        FSDConfig(image_size=60)
    with pytest.raises(ValueError, match="occupancy_grid=30 must be a multiple of bev_grid=8"):
        FSDConfig(occupancy_grid=30)
    with pytest.raises(ValueError, match="FSDConfig.cameras must be a positive int, got 0"):
        FSDConfig(cameras=0)


def test_wrong_input_shape_names_the_expected_one():
    model = fsd_net("tiny")
    with pytest.raises(ValueError, match=r"frames must have shape \[B, 3, 4, 3, 64, 64\]"):
        model(torch.zeros(1, 2, 4, 3, 64, 64))
