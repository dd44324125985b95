import os
import signal
import subprocess
import sys
import time

import torch

from opendojo.train import load_checkpoint, load_config, read_metrics, train

STEPS = 30


def _cli(config_file, run, overrides, *extra):
    sets = [f"--set={o}" for o in overrides]
    return [
        sys.executable,
        "-m",
        "opendojo.train",
        "--config",
        str(config_file),
        "--out",
        str(run),
        "--steps",
        str(STEPS),
        "--checkpoint-every",
        "2",
        "--no-progress",
        *sets,
        *extra,
    ]


def test_resume_after_kill_is_bit_identical(tmp_path, tiny_overrides):
    config_file = tmp_path / "tiny.toml"
    config_file.write_text("# everything comes from --set\n")
    overrides = [*tiny_overrides, "train.eval_every=10"]
    reference = train(
        load_config(config_file, [*overrides, f"train.steps={STEPS}", "train.checkpoint_every=2"]),
        tmp_path / "reference",
        progress=False,
    )

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(config_file, run, overrides), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "step_00000004").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the run never wrote its step-4 checkpoint"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "checkpoints" / f"step_{STEPS:08d}").exists(), "the run finished before the kill"

    resumed = subprocess.run(_cli(config_file, run, overrides, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    final = load_checkpoint(run / "checkpoints" / f"step_{STEPS:08d}")
    expected = load_checkpoint(reference.checkpoint)
    assert final.model_state.keys() == expected.model_state.keys()
    for name, tensor in expected.model_state.items():
        assert torch.equal(final.model_state[name], tensor), name
    for name, entries in expected.optimizer_state["state"].items():
        for key, value in entries.items():
            assert torch.equal(final.optimizer_state["state"][name][key], value), (name, key)
    # the metrics log reads as one run: every step once, same losses
    losses = [(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    assert losses == [
        (r["step"], r["loss"]) for r in read_metrics(reference.metrics_path) if r["kind"] == "train"
    ]
