"""`dojo train` on SIGTERM: checkpoint at the end of the current step, exit 75, resume with --resume."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from opendojo.errors import EXIT_PREEMPTED

from .conftest import DOJO, TINY_TOML


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_75_then_resume_finishes(tmp_path):
    out, config = tmp_path / "run", tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    common = ["--config", str(config), "--out", str(out), "--no-progress", "--set=train.threads=1",
              f"--set=data.cache_dir={json.dumps(str(tmp_path / 'cache'))}"]
    proc = subprocess.Popen([*DOJO, "train", *common, "--steps", "200"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err
    step = int(sorted((out / "checkpoints").glob("step_*"))[-1].name.split("_")[1])
    assert 1 <= step < 200 and f"after step {step}" in err
    done = subprocess.run([*DOJO, "train", *common, "--steps", str(step + 2), "--resume"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "result.json").read_text())["steps"] == step + 2
