import subprocess
import sys

import pytest

from opendojo.train import load_config, read_metrics, train


def _losses(path):
    return [r["loss"] for r in read_metrics(path) if r["kind"] == "train"]


# FSDP2 gives the same curve too; it is marked slow to keep `make test` inside its time budget.
@pytest.mark.parametrize("fsdp", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["ddp", "fsdp2"])
def test_two_processes_give_the_loss_curve_of_one_with_the_same_global_batch(tmp_path, tiny_overrides, fsdp):
    overrides = [*tiny_overrides, "train.steps=5", "train.eval_every=0", "train.checkpoint_every=0"]
    one = train(load_config(None, overrides), tmp_path / "one", progress=False)
    config_file = tmp_path / "tiny.toml"
    config_file.write_text("# everything comes from --set\n")
    cmd = [
        sys.executable,
        "-m",
        "opendojo.cli",
        "train",
        "--config",
        str(config_file),
        "--out",
        str(tmp_path / "two"),
        "--nproc",
        "2",
        "--no-progress",
        *[f"--set={o}" for o in overrides],
    ]
    if fsdp:
        cmd.append("--fsdp")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _losses(tmp_path / "two" / "metrics.jsonl") == pytest.approx(_losses(one.metrics_path), rel=1e-4)
    assert '"world_size": 2' in (tmp_path / "two" / "result.json").read_text()
    two = read_metrics(tmp_path / "two" / "metrics.jsonl")
    assert [r["step"] for r in two if r["kind"] == "train"] == [1, 2, 3, 4, 5]
    evals = [r for r in two if r["kind"] == "eval"]
    ref = [r for r in read_metrics(one.metrics_path) if r["kind"] == "eval"]
    assert evals[-1]["ade_m"] == pytest.approx(ref[-1]["ade_m"], rel=1e-3)
