"""Converted models under real torch.distributed (gloo on CPU, 2 processes): DDP and FSDP2, each
compared with a 1-process reference trained on the union of the ranks' batches."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("_dist_worker.py")


def _run(tmp_path: Path, wrap: str, world: int) -> list[dict]:
    out = tmp_path / wrap
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(r), str(world), str(tmp_path / f"init-{wrap}"),
                          wrap, str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for r in range(world)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    return [torch.load(f"{out}.{r}") for r in range(world)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    return _run(tmp_path_factory.mktemp("ref"), "none", 1)[0]


@pytest.mark.slow
@pytest.mark.parametrize("wrap", ["ddp", "fsdp"])
def test_data_parallel_training_matches_one_process_on_the_whole_batch(wrap, tmp_path, reference):
    ranks = _run(tmp_path, wrap, 2)
    want = {k: w for k, w in reference["fixed"]["weights"].items() if ".cfloat." not in k}
    for result in ranks:
        got = result["fixed"]["weights"]
        for key, w in want.items():
            # Fixed biases make every rounding elementwise; only the FP32 gradient sum order differs,
            # which may move a weight by one CFloat16 SHP step (2**-10 relative) at most.
            torch.testing.assert_close(got[key], w, rtol=2e-3, atol=1e-5, msg=key)
    lean0, lean1 = (r["dojo_lean"] for r in ranks)
    for key, w in lean0["weights"].items():
        if ".cfloat." not in key:  # gradient-side biases may differ per rank (local gradients)
            assert torch.equal(w, lean1["weights"][key]), key
    assert lean0["report"]["2"]["step"] == 3 and lean0["report"]["2"]["weight_storage"]["bias"] >= 0


@pytest.mark.slow
def test_the_reference_moved_far_beyond_the_tolerance(reference):
    """Training moved the weights by much more than the tolerance above, so its agreement means something."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(*shape) for shape in ((8, 32), (32, 32), (32, 32), (32, 2))]
    for i, layer in zip((0, 2, 4, 6), layers, strict=True):
        trained = reference["fixed"]["weights"][f"{i}.weight"]
        moved = (trained - layer.weight.detach()).abs().max()
        assert moved > 5 * (2e-3 * layer.weight.detach().abs().max() + 1e-5), i
