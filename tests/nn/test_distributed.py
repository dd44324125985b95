"""Converted models under real torch.distributed (gloo on CPU, 2 processes): DDP and FSDP2."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("_dist_worker.py")


@pytest.mark.slow
@pytest.mark.parametrize("wrap", ["ddp", "fsdp"])
def test_ranks_stay_identical_under_data_parallel_training(wrap, tmp_path):
    out = tmp_path / "result"
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(r), "2", str(tmp_path / "init"), wrap, str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for r in range(2)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    r0, r1 = (torch.load(f"{out}.{r}") for r in range(2))
    for key, w in r0["weights"].items():
        if ".cfloat." not in key:  # gradient-side biases may differ per rank (local gradients)
            assert torch.equal(w, r1["weights"][key]), key
    assert r0["report"]["2"]["step"] == 3 and r0["report"]["2"]["weight_storage"]["bias"] >= 0
