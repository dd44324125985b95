import pytest
import torch
from torch import nn

from opendojo.models import PRESETS, FSDConfig, example_inputs, fsd_net


def _with_random_heads(model):
    # The heads start at zero (the untrained net predicts its base rates); give them weights so that
    # structural properties (gradient flow, causality) are visible.
    for head in (model.occupancy_head, model.ego_head):
        nn.init.normal_(head.weight, std=0.1)
    if model.ground_lift is not None:  # and let every cell see some pixel
        nn.init.normal_(model.ground_lift.out.weight, std=0.1)
        model.set_ground_grid(torch.rand_like(model.ground_lift.grid) * 2 - 1)
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


def test_ground_grid_points_at_the_vehicles_that_occupy_a_cell():
    """For an occupied cell the ground lift reads a pixel that shows a vehicle (its own or one nearer)."""
    import numpy as np

    from opendojo.data.render import Camera, camera_names, ground_grid, render_frame
    from opendojo.data.scene import make_scene, scene_labels

    size, hits, total = 64, 0, 0
    grid = ground_grid(3, size)
    assert grid.shape == (3, 32, 32, 2)
    assert (grid[0, 20:, 14:18] == -2).all()  # the front camera sees no cell behind the car
    for seed in range(4):
        scene = make_scene(np.random.default_rng(seed), 2, 30.0)
        occupied = scene_labels(scene)["occupancy"][0] > 0
        cams = [Camera(n, size, size) for n in camera_names(3)]
        vx, vy, vyaw = scene.vehicles_in_ego_frame()
        luma = [img[:size] for img in render_frame(scene, 0, cams, scene.ego_pose(), (vx, vy, vyaw))]
        gone = (vx - 1e4, vy, vyaw)  # the same frame with every vehicle far behind the rig
        empty = [img[:size] for img in render_frame(scene, 0, cams, scene.ego_pose(), gone)]
        for cam in range(3):
            seen = occupied & (grid[cam, ..., 0] > -2)
            u = ((grid[cam, ..., 0][seen] + 1) * size / 2).astype(int)
            v = ((grid[cam, ..., 1][seen] + 1) * size / 2).astype(int)
            hits += int((luma[cam][v, u] != empty[cam][v, u]).sum())
            total += int(seen.sum())
    assert total > 20 and hits >= 0.8 * total, (hits, total)


def test_set_ground_grid_refuses_a_wrong_shape_and_a_net_without_the_lift():
    with pytest.raises(ValueError, match=r"ground grid must have shape \(3, 32, 32, 2\)"):
        fsd_net("tiny").set_ground_grid(torch.zeros(2, 32, 32, 2))
    with pytest.raises(ValueError, match="ground_lift=True"):
        fsd_net("tiny", ground_lift=False).set_ground_grid(torch.zeros(3, 32, 32, 2))
