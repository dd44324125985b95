import json

import pytest
import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

from opendojo.models import fsd_net
from opendojo.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)

SIG = {"model": "FSDNet", "config": {"dim": 16}, "precision": "fp32"}


def _trained_state(seed=0):
    torch.manual_seed(seed)
    model = fsd_net("tiny", cameras=1, frames=2, dim=16, heads=2, backbone_channels=(8, 8, 8))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = model(torch.randn(1, 1, 2, 3, 64, 64))
    sum(v.float().mean() for v in out.values()).backward()
    opt.step()
    return model, opt, *get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True))


def _save(root, step, msd, osd, keep=3, sig=SIG):
    return save_checkpoint(
        root,
        step,
        model_state=msd,
        optimizer_state=osd,
        rng_states=[{"torch": torch.get_rng_state()}],
        trainer_state={"data": [{"epoch": 1}]},
        signature=sig,
        keep=keep,
    )


def test_round_trip_restores_weights_optimizer_rng_and_state(tmp_path):
    _, _, msd, osd = _trained_state()
    path = _save(tmp_path, 5, msd, osd)
    ck = load_checkpoint(path, SIG)
    assert ck.step == 5 and ck.trainer_state["data"] == [{"epoch": 1}]
    assert ck.model_state.keys() == msd.keys()
    assert all(torch.equal(ck.model_state[k], msd[k]) for k in msd)
    for name, entries in osd["state"].items():
        for key, value in entries.items():
            assert torch.equal(ck.optimizer_state["state"][name][key], value)
    assert ck.optimizer_state["param_groups"][0]["betas"] == osd["param_groups"][0]["betas"]
    assert torch.equal(ck.rng_states[0]["torch"], torch.get_rng_state())
    # the restored optimizer state loads into a fresh optimizer
    model, opt, _, _ = _trained_state(seed=1)
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, opt, ck.optimizer_state, options=StateDictOptions(full_state_dict=True))


def test_only_the_last_k_checkpoints_are_kept_and_temp_folders_are_ignored(tmp_path):
    _, _, msd, osd = _trained_state()
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, msd, osd, keep=2)
    (tmp_path / ".tmp-step_00000009-123").mkdir()  # what a crash mid-write leaves behind
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000003", "step_00000004"]
    assert latest_checkpoint(tmp_path).name == "step_00000004"


def test_a_corrupt_weight_file_is_refused(tmp_path):
    _, _, msd, osd = _trained_state()
    path = _save(tmp_path, 1, msd, osd)
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is corrupt: model.safetensors does not match its SHA-256"):
        load_checkpoint(path, SIG)


def test_a_truncated_or_incomplete_checkpoint_is_refused(tmp_path):
    _, _, msd, osd = _trained_state()
    path = _save(tmp_path, 1, msd, osd)
    (path / "manifest.json").write_text('{"format": ')
    with pytest.raises(CheckpointError, match="is corrupt: manifest.json is not JSON"):
        load_checkpoint(path)
    (path / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="is incomplete: manifest manifest.json is missing"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist or is not a folder"):
        load_checkpoint(tmp_path / "step_00000099")


def test_a_checkpoint_of_another_model_is_refused_naming_the_difference(tmp_path):
    _, _, msd, osd = _trained_state()
    path = _save(tmp_path, 1, msd, osd)
    other = dict(SIG, precision="dojo")
    with pytest.raises(
        CheckpointError,
        match="written for another model or recipe.*precision: checkpoint 'fp32' vs this run 'dojo'",
    ):
        load_checkpoint(path, other)


def test_the_manifest_records_a_hash_per_file(tmp_path):
    _, _, msd, osd = _trained_state()
    manifest = json.loads((_save(tmp_path, 1, msd, osd) / "manifest.json").read_text())
    assert set(manifest["sha256"]) == {"model.safetensors", "trainer.safetensors", "trainer.json"}
