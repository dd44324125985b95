import numpy as np
import pytest
import torch

from opendojo.errors import UsageError
from opendojo.hw.system import load_system
from opendojo.sim.families import FAMILIES, draw
from opendojo.sim.layout import Layout
from opendojo.sim.ops import KIND, RATED_OPS
from opendojo.sim.step import estimate_step
from opendojo.sim.workload import capture_module


def test_draw_is_a_pure_function_of_n_and_seed_and_covers_every_family():
    a, b = draw(len(FAMILIES), 7), draw(len(FAMILIES), 7)
    assert [(h.name, h.batch) for h in a] == [(h.name, h.batch) for h in b]
    assert {h.family for h in a} == set(FAMILIES)
    assert [h.name for h in draw(len(FAMILIES), 8)] != [h.name for h in a]


def test_draw_refuses_a_bad_count_naming_the_argument():
    with pytest.raises(UsageError, match="--held-out"):
        draw(0, 1)


def test_every_family_captures_with_no_unknown_op():
    for h in draw(len(FAMILIES), 3):
        w = capture_module(*h.factory(h.batch), name=h.name)
        unknown = [n for n, k in zip(w.op_names, w.ops["kind"], strict=True) if k == KIND["unknown"]]
        assert not unknown, (h.name, unknown)


def test_cpu_lstm_is_captured_as_the_fused_kernel_it_runs():
    lstm = torch.nn.LSTM(32, 64, 2, batch_first=True)
    w = capture_module(lstm, (torch.randn(8, 16, 32),))
    names = list(w.op_names)
    assert names.count("mkldnn_rnn_layer") == 1 and names.count("mkldnn_rnn_layer_backward") == 1
    assert "mm" not in names and "addmm" not in names  # not the per-time-step decomposition
    fwd = w.at(8)["flops"][names.index("mkldnn_rnn_layer")]
    gemm = 2 * 16 * 8 * 4 * 64 * ((32 + 64) + (64 + 64))  # two layers: [B, in + h] x [in + h, 4h] per step
    assert fwd == pytest.approx(gemm, rel=0.1)


def test_depthwise_conv_backward_has_the_forward_gemm_shape():
    conv = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16)
    w = capture_module(conv, (torch.randn(4, 16, 8, 8),))
    ops = w.at(4)
    shapes = {(ops["n"][i], ops["k"][i]) for i in np.flatnonzero(ops["kind"] == KIND["conv"])}
    assert shapes == {(16.0, 9.0)}  # all output channels, 1 input channel x 3x3 per group
    rated = {RATED_OPS[r - 1] for r in ops["rated"][ops["kind"] == KIND["conv"]]}
    assert rated == {"conv_depthwise", "conv_depthwise_backward"}  # priced as its own class on the host


def test_an_op_without_a_cost_model_is_named_in_notes_with_its_count_and_share():
    class Svd(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.svd(x)[0].sum() + x.sum()

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), Svd())
    w = capture_module(model, (torch.randn(4, 8, 8),))
    est = estimate_step(w, load_system("host"), Layout(microbatch=4), 4, "fp32")
    notes = [n for n in est.notes if "_linalg_svd" in n]
    assert len(notes) == 1 and ": 1 per step" in notes[0] and "% of the step" in notes[0]
    share = float(notes[0].split("estimated ")[1].split(" %")[0])
    assert 0 < share < 100


def test_attention_ops_carry_their_sequence_head_dim_and_causal_mask():
    from opendojo.sim.ops import GEMM_ROLES

    q = torch.randn(2, 4, 128, 32)

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(32, 32)

        def forward(self, x):
            x = self.proj(x)
            return torch.nn.functional.scaled_dot_product_attention(x, x, x, is_causal=True)

    w = capture_module(Attn(), (q,))
    ops = w.at(2)
    rows = np.flatnonzero(ops["kind"] == KIND["attention"])
    assert len(rows) == 2  # forward and backward kernels
    assert {(ops["m"][i], ops["n"][i], ops["k"][i]) for i in rows} == {(128.0, 128.0, 32.0)}
    assert {GEMM_ROLES[r] for r in ops["role"][rows]} == {"attention.causal"}


def test_a_rated_class_the_calibration_lacks_keeps_its_curve_time_instead_of_costing_nothing():
    from dataclasses import replace

    w = capture_module(torch.nn.Conv2d(32, 64, 1, stride=2), (torch.randn(4, 32, 16, 16),))
    host = load_system("host")
    rates = dict(host.device.op_rates)
    without = {k: v for k, v in rates.items() if not k.startswith("conv_1x1_strided")}
    lacking = replace(host, device=replace(host.device, op_rates=without or {"sort": 1e9}))
    est = estimate_step(w, lacking, Layout(microbatch=4), 4, "fp32")
    ops = w.at(4)
    conv_flops = ops["flops"][ops["kind"] == KIND["conv"]].sum()
    assert est.breakdown["compute"] >= conv_flops / host.device.peak_flops["fp32"]  # at most the peak rate
