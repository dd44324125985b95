import json

import pytest
import torch

from opendojo.errors import UsageError
from opendojo.train import (
    CheckpointError,
    NonFiniteLossError,
    load_checkpoint,
    load_config,
    load_model,
    predict,
    read_metrics,
    train,
)


def test_a_short_run_writes_metrics_checkpoints_plots_and_a_result(tmp_path, tiny_overrides):
    config = load_config(
        None,
        [
            *tiny_overrides,
            "train.steps=4",
            "train.eval_every=2",
            "train.checkpoint_every=2",
            "train.keep_checkpoints=1",
        ],
    )
    result = train(config, tmp_path / "run", progress=False)
    assert result.steps == 4 and result.world_size == 1
    assert {p.name for p in result.plots} == {"loss.png", "metrics.png"}
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_00000004"]
    records = read_metrics(result.metrics_path)
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [0, 2, 4]  # 0: the untrained net
    for key in ("occupancy_iou", "ade_m", "fde_m", "speed_mae_mps", "baseline_ade_m_zero"):
        assert key in result.final_metrics
    assert 0.0 <= result.final_metrics["occupancy_iou"] <= 1.0
    assert json.loads((tmp_path / "run" / "result.json").read_text())["steps"] == 4
    assert load_checkpoint(result.checkpoint).step == 4


def test_load_model_predicts_every_head_for_a_batch_of_clips(tmp_path, tiny_overrides):
    config = load_config(None, [*tiny_overrides, "train.steps=1"])
    train(config, tmp_path / "run", progress=False)
    model = load_model(tmp_path / "run")
    c = model.config
    frames = torch.randint(0, 256, (2, c.cameras, c.frames, c.image_size, c.image_size, 3), dtype=torch.uint8)
    out = predict(model, frames)
    assert out["occupancy"].shape == (2, c.frames, c.occupancy_grid, c.occupancy_grid)
    assert 0.0 <= out["occupancy"].min() and out["occupancy"].max() <= 1.0
    assert out["trajectory"].shape == (2, c.frames, c.horizon, 2)


def test_a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny_overrides):
    # A learning rate of 1e30 sends the weights to ~1e31 after one step; the next forward overflows.
    config = load_config(
        None,
        [
            *tiny_overrides,
            "train.steps=6",
            "train.checkpoint_every=1",
            "train.lr=1e30",
            "train.warmup_steps=0",
            "train.grad_clip=0.0",
        ],
    )
    with pytest.raises(
        NonFiniteLossError,
        match=r"loss became (nan|inf) at step 2; .*last good checkpoint "
        r"is .*step_00000001",
    ):
        train(config, tmp_path / "run", progress=False)
    names = [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()]
    assert names == ["step_00000001"]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000001").step == 1


def test_a_missing_dataset_is_named(tmp_path, tiny_overrides):
    config = load_config(None, [*tiny_overrides, f'data.source="{tmp_path / "nope"}"'])
    with pytest.raises(UsageError, match=r"data.source: dataset '.*nope' does not exist"):
        train(config, tmp_path / "run", progress=False)


def test_an_empty_dataset_folder_is_named(tmp_path, tiny_overrides):
    (tmp_path / "empty").mkdir()
    config = load_config(None, [*tiny_overrides, f'data.source="{tmp_path / "empty"}"'])
    with pytest.raises(UsageError, match=r"data.source: dataset '.*empty' has no index/ folder"):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_run_folder_with_checkpoints_is_not_overwritten_without_resume(tmp_path, tiny_overrides):
    config = load_config(None, [*tiny_overrides, "train.steps=1"])
    train(config, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="already holds checkpoints .*pass --resume"):
        train(config, tmp_path / "run", progress=False)


def test_resuming_from_a_corrupt_or_foreign_checkpoint_is_refused_and_writes_nothing(
    tmp_path, tiny_overrides
):
    config = load_config(None, [*tiny_overrides, "train.steps=1"])
    run = tmp_path / "run"
    train(config, run, progress=False)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    longer = load_config(None, [*tiny_overrides, "train.steps=2"])
    wider = load_config(None, [*tiny_overrides, "train.steps=2", "model.dim=32"])
    with pytest.raises(CheckpointError, match="written for another model or recipe"):
        train(wider, run, resume=True, progress=False)
    weights = run / "checkpoints" / "step_00000001" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    before[weights] = bytes(data)
    with pytest.raises(CheckpointError, match="is corrupt: model.safetensors does not match its SHA-256"):
        train(longer, run, resume=True, progress=False)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_resuming_a_finished_run_changes_nothing_and_a_shorter_run_is_refused(tmp_path, tiny_overrides):
    config = load_config(None, [*tiny_overrides, "train.steps=2"])
    first = train(config, tmp_path / "run", progress=False)
    recorded = (tmp_path / "run" / "result.json").read_bytes()
    again = train(config, tmp_path / "run", resume=True, progress=False)
    assert again.final_loss == first.final_loss and again.final_metrics == first.final_metrics
    assert (tmp_path / "run" / "result.json").read_bytes() == recorded
    shorter = load_config(None, [*tiny_overrides, "train.steps=1"])
    with pytest.raises(ValueError, match="is at step 2, past train.steps=1"):
        train(shorter, tmp_path / "run", resume=True, progress=False)
    assert (tmp_path / "run" / "result.json").read_bytes() == recorded
