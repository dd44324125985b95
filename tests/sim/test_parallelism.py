"""Sequence parallelism, ZeRO-2, compiled-graph activation memory, recomputation memory; the GPU rows of
the validation table."""

import pytest
import torch
from torch import nn

from opendojo.hw.system import load_system
from opendojo.sim.catalog import load_workload
from opendojo.sim.layout import Layout, parse_parallel
from opendojo.sim.simulate import best_step
from opendojo.sim.step import estimate_step, memory_per_device
from opendojo.sim.validate import validate_gpu
from opendojo.sim.workload import capture_module


def test_parse_parallel_accepts_sp_and_zero_stages_and_rejects_others():
    assert parse_parallel("tp=8,sp=0,zero=2") == {"tp": 8, "sp": 0, "zero": 2}
    with pytest.raises(ValueError, match=r"zero=3; allowed 0, 1, 2"):
        parse_parallel("zero=3")
    with pytest.raises(ValueError, match=r"sp=2; allowed 0, 1"):
        parse_parallel("sp=2")
    assert Layout(2, 8, 1, 1, 2, False, 1, True).describe() == "dp=2, tp=8, pp=1, microbatch=1, zero-2, sp"


def test_compiled_graph_does_not_save_outputs_of_recomputable_elementwise_ops():
    # Linear(8->16) saves its input (8 floats/sample); SiLU saves its input (16); the second Linear
    # saves SiLU's output (16). A compiled graph recomputes SiLU's output from its saved input.
    w = capture_module(nn.Sequential(nn.Linear(8, 16), nn.SiLU(), nn.Linear(16, 4)), (torch.randn(4, 8),))
    assert w.activation_bytes(1) == pytest.approx((8 + 16 + 16) * 4)
    assert w.activation_bytes(1, fused=True) == pytest.approx((8 + 16) * 4)


def test_sequence_parallelism_splits_exactly_the_replicated_norm_activations():
    w = load_workload("gpt-1.3b")
    base = Layout(dp=1, tp=8, pp=1, microbatch=2)
    with_sp = memory_per_device(w, Layout(1, 8, 1, 2, 0, False, 1, True), "bf16")["activations"]
    without = memory_per_device(w, base, "bf16")["activations"]
    # Korthikanti et al. 2022: without SP four [s, h] tensors per block stay whole on every TP rank.
    replicated = w.tp_bytes_per_sample * (1 - 1 / 8) * w.layers * 2 * 0.5
    assert without - with_sp == pytest.approx(replicated, rel=1e-9)


def test_sequence_parallelism_splits_the_norms_and_never_slows_a_step():
    w, s = load_workload("gpt-1.3b"), load_system("h100-dgx")
    off = estimate_step(w, s, Layout(1, 8, 1, 4, 0, False, 1, False), 16, "bf16")
    on = estimate_step(w, s, Layout(1, 8, 1, 4, 0, False, 1, True), 16, "bf16")
    assert on.step_time_s < off.step_time_s
    assert on.communication["tensor_parallel"] == off.communication["tensor_parallel"]  # same volume


def test_zero2_shards_gradients_and_reduce_scatters_every_micro_batch():
    w, s = load_workload("gpt-1.3b"), load_system("h100-cluster-1k").with_devices(64)
    z1 = estimate_step(w, s, Layout(64, 1, 1, 1, 1), 512, "bf16")
    z2 = estimate_step(w, s, Layout(64, 1, 1, 1, 2), 512, "bf16")
    assert z2.memory["grads"] == pytest.approx(z1.memory["grads"] / 64)
    assert z2.communication["data_parallel"] > z1.communication["data_parallel"]  # 8 reduce-scatters


def test_full_recomputation_holds_one_blocks_activations_once_not_per_micro_batch_in_flight():
    w = load_workload("gpt-1.3b")
    one = memory_per_device(w, Layout(1, 1, 4, 1, 0, True), "bf16", microbatches=1)["activations"]
    four = memory_per_device(w, Layout(1, 1, 4, 1, 0, True), "bf16", microbatches=4)["activations"]
    boundary = w.tp_bytes_per_sample / 4 * w.layers / 4 * 0.5  # one block input per block on the stage
    assert four - one == pytest.approx(3 * boundary, rel=1e-9)


def test_llama3_published_layout_fits_without_recomputation_on_gpus_with_a_compiled_graph():
    w, s = load_workload("llama3-405b"), load_system("h100-cluster-16k").with_devices(8192)
    est = best_step(w, s, 2048, "bf16", "tp=8,pp=16,dp=64")
    assert not est.layout.recompute and est.layout.sp and est.fits


def test_in_sample_published_values_lie_within_the_spread_of_their_open_settings():
    rows = validate_gpu(groups=("in-sample",))
    assert len(rows) == 3
    for r in rows:
        low, high = (float(x) for x in r.note.split(" give ")[1].split(";")[0].split(".."))
        assert low <= r.reference <= high, (r.case, low, r.reference, high)


def test_cached_h100_reference_equals_a_fresh_search():
    import importlib

    sim_mod = importlib.import_module("opendojo.sim.simulate")  # the module, not the function
    w = load_workload("gpt-1.3b")
    first = sim_mod._delivered_per_h100(w, 512, "bf16", 64 * 989.4e12)
    sim_mod._PER_H100.clear()
    assert sim_mod._delivered_per_h100_uncached(w, 512, "bf16", 64 * 989.4e12) == first
    assert sim_mod._delivered_per_h100(w, 512, "bf16", 64 * 989.4e12) == first
