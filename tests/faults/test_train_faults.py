"""Faults injected into real training runs: a torn metrics line, damaged checkpoints, NaN gradients, an
overflowing update, a full disk, a run folder under a file. Each test checks the message, the exit code
(or exception) and what is left on disk."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from opendojo.cli import main
from opendojo.models import FSDNet
from opendojo.train import NonFiniteLossError, load_checkpoint, load_config, read_metrics, train
from opendojo.train.checkpoint import NonFiniteStateError, list_checkpoints, save_checkpoint


@pytest.fixture
def tiny(tiny_overrides):
    """The trainer tests' tiny synthetic data (tests/conftest.py), without periodic evaluation."""
    return [*tiny_overrides, "train.eval_every=0"]


@pytest.fixture
def dojo_train(tmp_path, tiny, capsys):
    """``dojo train OUT ARGS`` on the tiny data through the real entry point: (exit code, stdout, stderr)."""
    config = tmp_path / "empty.toml"
    config.write_text("# everything comes from --set\n")

    def run(out, *args):
        code = main(train_argv(config, tiny, out, *args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def train_argv(config, tiny, out, *args):
    sets = [f"--set={o}" for o in tiny]
    return ["train", "--config", str(config), "--out", str(out), "--no-progress", *sets, *args]


def _train_losses(path):
    return [(r["step"], r["loss"]) for r in read_metrics(path) if r["kind"] == "train"]


def test_a_torn_last_metrics_line_is_dropped_on_resume_with_a_warning(tmp_path, dojo_train):
    run = tmp_path / "run"
    assert dojo_train(run, "--steps", "2", "--checkpoint-every", "1")[0] == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 3, "lo')  # power cut mid-append
    code, _, err = dojo_train(run, "--steps", "3", "--resume")
    assert code == 0, err
    assert f"{run / 'metrics.jsonl'}: dropped its torn last line" in err
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line parses again
    assert [s for s, _ in _train_losses(run / "metrics.jsonl")] == [1, 2, 3]


def test_a_torn_line_in_the_middle_is_an_error_naming_the_file_and_line(tmp_path):
    from opendojo.train.metrics import read_metrics as read

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "train", "step": 1}\n{"kind": "tr\n{"kind": "train", "step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl', line 2: not JSON"):
        read(path)


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_resume_falls_back_past_a_corrupt_newest_checkpoint_and_ends_bit_identical(
    tmp_path, tiny, dojo_train
):
    reference = train(load_config(None, [*tiny, "train.steps=4"]), tmp_path / "reference", progress=False)
    run = tmp_path / "run"
    assert dojo_train(run, "--steps", "3", "--checkpoint-every", "1")[0] == 0
    bad = run / "checkpoints" / "step_00000003"
    _corrupt(bad / "model.safetensors")
    code, _, err = dojo_train(run, "--steps", "4", "--checkpoint-every", "1", "--resume")
    assert code == 0, err
    assert f"checkpoint '{bad}' is corrupt: model.safetensors does not match its SHA-256" in err
    assert "trying the checkpoint before it" in err
    # resumed from step 2: step 3 was trained again and its checkpoint rewritten whole
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == [f"step_{s:08d}" for s in (2, 3, 4)]
    assert load_checkpoint(bad).step == 3
    final = load_checkpoint(run / "checkpoints" / "step_00000004").model_state
    expected = load_checkpoint(reference.checkpoint).model_state
    assert all(torch.equal(final[k], v) for k, v in expected.items())
    assert _train_losses(run / "metrics.jsonl") == _train_losses(reference.metrics_path)


def test_checkpoint_picks_the_checkpoint_to_continue_from(tmp_path, dojo_train):
    run = tmp_path / "run"
    assert dojo_train(run, "--steps", "3", "--checkpoint-every", "1")[0] == 0
    before = _train_losses(run / "metrics.jsonl")
    first = run / "checkpoints" / "step_00000001"
    code, _, err = dojo_train(run, "--steps", "3", "--checkpoint", str(first))
    assert code == 0, err
    assert _train_losses(run / "metrics.jsonl") == before  # steps 2 and 3 again, the same losses
    code, _, err = dojo_train(run, "--steps", "3", "--checkpoint", str(tmp_path / "nope"))
    assert code == 2
    assert err.strip().splitlines() == [
        f"dojo train: error: checkpoint '{tmp_path / 'nope'}' does not exist or is not a folder"
    ]


def test_when_every_checkpoint_is_damaged_resume_refuses_and_writes_nothing(tmp_path, dojo_train):
    run = tmp_path / "run"
    assert dojo_train(run, "--steps", "2", "--checkpoint-every", "1")[0] == 0
    for ckpt in list_checkpoints(run / "checkpoints"):
        (ckpt / "manifest.json").write_text('{"format": ')
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, _, err = dojo_train(run, "--steps", "3", "--resume")
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"dojo train: error: no usable checkpoint in '{run / 'checkpoints'}'")
    assert "step_00000001' is corrupt: manifest.json is not JSON" in last
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@contextlib.contextmanager
def _nan_gradients_from_training_step(step: int):
    """From the ``step``-th (1-based) training forward on, every LayerNorm's output gradient is NaN: the
    loss stays finite, the gradients do not. Uses torch's global module hooks on the real loop."""
    seen = {"forwards": 0}

    def count(module, args):
        if isinstance(module, FSDNet) and torch.is_grad_enabled():
            seen["forwards"] += 1

    def poison(module, args, output):
        if isinstance(module, nn.LayerNorm) and output.requires_grad and seen["forwards"] >= step:
            output.register_hook(lambda g: torch.full_like(g, math.nan))

    handles = [
        nn.modules.module.register_module_forward_pre_hook(count),
        nn.modules.module.register_module_forward_hook(poison),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("precision", ["fp32", "dojo_lean"])
def test_a_nan_gradient_with_a_finite_loss_stops_like_a_nan_loss(tmp_path, tiny, precision):
    config = load_config(
        None, [*tiny, "train.steps=4", "train.checkpoint_every=1", f"train.precision={precision}"]
    )
    with (
        _nan_gradients_from_training_step(2),
        pytest.raises(
            NonFiniteLossError,
            match=r"gradient norm became nan at step 2; training stopped before applying it; "
            r"the last good checkpoint is .*step_00000001",
        ),
    ):
        train(config, tmp_path / "run", progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step_00000001"]
    good = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000001")
    assert all(t.isfinite().all() for t in good.model_state.values() if t.is_floating_point())
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert records[-1]["kind"] == "error" and records[-1]["what"] == "gradient norm"
    assert [r["step"] for r in records if r["kind"] == "train"] == [1]


@contextlib.contextmanager
def _overflowing_update_at_step(step: int):
    """After the ``step``-th optimizer step, one weight is +Inf, as if the update had overflowed (torch's
    global optimizer hook on the real loop)."""
    seen = {"steps": 0}

    def overflow(optimizer, args, kwargs):
        seen["steps"] += 1
        if seen["steps"] == step:
            with torch.no_grad():
                optimizer.param_groups[0]["params"][0].view(-1)[0] = math.inf

    handle = register_optimizer_step_post_hook(overflow)
    try:
        yield
    finally:
        handle.remove()


@pytest.mark.parametrize("precision", ["fp32", "dojo_lean"])
def test_an_update_that_overflows_the_weights_stops_before_the_recipe_can_hide_it(tmp_path, tiny, precision):
    # dojo_lean rounds the weights to CFloat16 after every step, which would turn the Inf into the format's
    # largest value and carry on: the check has to come before that.
    config = load_config(
        None, [*tiny, "train.steps=3", "train.checkpoint_every=1", f"train.precision={precision}"]
    )
    with (
        _overflowing_update_at_step(2),
        pytest.raises(
            NonFiniteLossError, match=r"weights became NaN/Inf in the update of step 2 .*step_00000001"
        ),
    ):
        train(config, tmp_path / "run", progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step_00000001"]
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert (records[-1]["kind"], records[-1]["step"], records[-1]["what"]) == ("error", 2, "weights")


def test_a_learning_rate_that_would_overflow_adamw_is_a_usage_error(tmp_path, dojo_train):
    code, _, err = dojo_train(tmp_path / "run", "--set=train.lr=1e39")
    assert code == 2
    assert err.strip().splitlines() == [
        "dojo train: error: config key train.lr: got 1e+39; allowed: a finite number > 0.0 and ≤ 1e+30"
    ]
    assert not (tmp_path / "run").exists()


def test_a_state_with_nan_is_never_checkpointed(tmp_path):
    model = nn.Linear(2, 2)
    state = model.state_dict()
    state["weight"][0, 0] = math.nan
    with pytest.raises(NonFiniteStateError, match=r"refusing to checkpoint step 1: NaN/Inf in weight"):
        save_checkpoint(
            tmp_path,
            1,
            model_state=state,
            optimizer_state={"state": {}, "param_groups": []},
            rng_states=[],
            trainer_state={},
            signature={},
            keep=1,
        )
    assert list(tmp_path.iterdir()) == []


def test_a_run_folder_under_a_file_is_one_line_naming_the_path_and_exit_1(tmp_path, dojo_train):
    (tmp_path / "afile").write_text("not a folder")
    code, _, err = dojo_train(tmp_path / "afile" / "run", "--steps", "1")
    assert code == 1
    run = tmp_path / "afile" / "run"
    assert err.strip().splitlines() == [
        f"dojo train: error: Not a directory (ENOTDIR): '{run}' (--debug shows the traceback)"
    ]
    assert (tmp_path / "afile").read_text() == "not a folder"


def _can_mount_tmpfs() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and unshare to mount a small tmpfs")
def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_partial_checkpoint(tmp_path, tiny):
    # A 1 MiB tmpfs holds the config, the metrics and the plots, but not a 2 MB checkpoint.
    mount = tmp_path / "small"
    mount.mkdir()
    config = tmp_path / "empty.toml"
    config.write_text("")
    argv = train_argv(config, tiny, mount / "run", "--steps", "2", "--checkpoint-every", "1")
    script = (
        'mount -t tmpfs -o size=1m tmpfs "$1" || exit 99; shift; "$@"; echo "rc=$?"; '
        'cd "$OLDPWD"; find "$MNT" -mindepth 1 | sort; cat "$MNT/run/metrics.jsonl"'
    )
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(mount), sys.executable, "-m", "opendojo.cli", *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MNT": str(mount)},
    )
    assert "rc=1" in out.stdout, out.stderr[-2000:]
    ckpt = mount / "run" / "checkpoints" / "step_00000001"
    assert out.stderr.strip().splitlines()[-1] == (
        f"dojo train: error: No space left on device (ENOSPC): '{ckpt}' (--debug shows the traceback)"
    )
    listing = [line for line in out.stdout.splitlines() if line.startswith(str(mount))]
    assert not [p for p in listing if "step_" in p]  # no checkpoint, no temporary folder
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1]


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and unshare to mount a small tmpfs")
def test_a_file_written_whole_keeps_its_old_content_when_the_disk_fills(tmp_path):
    # result.json, config.json and the plots go through write_durable: on a full disk the old file stays.
    mount = tmp_path / "small"
    mount.mkdir()
    code = (
        "import sys; from pathlib import Path; from opendojo.train.durable import write_durable\n"
        "p = Path(sys.argv[1]) / 'result.json'; write_durable(p, '{\"steps\": 1}')\n"
        "try:\n    write_durable(p, 'x' * 200_000)\nexcept OSError as e:\n    print(e.errno, e.filename)\n"
        "print(p.read_text()); print(sorted(f.name for f in p.parent.iterdir()))\n"
    )
    script = 'mount -t tmpfs -o size=64k tmpfs "$1" || exit 99; "$2" -c "$3" "$1"'
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(mount), sys.executable, code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"28 {mount / 'result.json'}", '{"steps": 1}', "['result.json']"]
