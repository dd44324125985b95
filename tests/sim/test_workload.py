import numpy as np
import pytest
import torch
from torch import nn

from opendojo.models.reference_gpt import GPT_PRESETS, gpt, gpt_inputs
from opendojo.sim import capture_module, load_workload
from opendojo.sim.ops import KIND
from opendojo.sim.workload import capture_scalable


def test_mlp_matmul_flops_are_exact():
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    w = capture_module(model, torch.randn(8, 32))
    ops = w.at(8)
    mm = (ops["kind"] == KIND["matmul"]) & (ops["phase"] < 2)
    # forward 2·B·in·out per layer; backward weight-grad for both, input-grad only for the second layer
    expected = 2 * 8 * (32 * 64 + 64 * 16) + 2 * 8 * (32 * 64 + 64 * 16) + 2 * 8 * 64 * 16
    assert np.sum(ops["flops"][mm] * ops["count"][mm]) == expected
    assert w.params == 32 * 64 + 64 + 64 * 16 + 16


def test_capture_allocates_nothing_for_a_175b_model():
    w = load_workload("gpt-175b")
    assert w.params == GPT_PRESETS["gpt-175b"].params
    assert w.optimizer_bytes == pytest.approx(8 * w.params, rel=1e-6)  # AdamW: two fp32 moments


def test_gpt_flops_match_6nd_plus_causal_attention():
    c = GPT_PRESETS["gpt-125m"]
    w = load_workload("gpt-125m")
    per_seq = w.flops(2) - w.flops(1)
    # 6·N·tokens for the weights, plus flash attention: forward 2 and backward 5 matmuls of s²·d, causal half
    attention = c.n_layer * 7 * 2 * c.seq**2 * c.d_model * 0.5
    assert per_seq == pytest.approx(6 * c.params * c.seq + attention, rel=0.03)


def test_cpu_flash_attention_flops_are_counted():
    q = torch.randn(2, 4, 16, 8)

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Linear(8, 8)

        def forward(self, x):
            x = self.p(x)
            return torch.nn.functional.scaled_dot_product_attention(x, x, x)

    w = capture_module(Attn(), q)
    ops = w.at(2)
    attn = ops["kind"] == KIND["attention"]
    assert attn.sum() == 2  # forward and backward kernels
    assert np.sum(ops["flops"][attn]) == pytest.approx((2 + 5) * 2 * 2 * 4 * 16 * 16 * 8)


def test_depth_extrapolation_equals_full_capture():
    c = GPT_PRESETS["gpt-125m"]

    def build(batch, depth):
        m = gpt(c, device="meta", n_layer=depth, seq=64, d_model=64, n_head=4, vocab=100)
        return m, gpt_inputs(m.config, batch, device="meta")

    extrapolated = capture_scalable("x", build, layers=5, depth_scaled=True)
    full = capture_scalable("x", build, layers=5, depth_scaled=False)
    for b in (1, 3, 8):
        assert extrapolated.flops(b) == pytest.approx(full.flops(b), rel=1e-9)
        assert extrapolated.activation_bytes(b) == pytest.approx(full.activation_bytes(b), rel=1e-9)
    assert extrapolated.params == full.params


def test_batch_interpolation_matches_direct_capture_at_another_batch():
    def build(batch, depth):
        with torch.device("meta"):
            m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                              nn.Linear(8 * 14 * 14, 10))
        return m, torch.empty(batch, 3, 16, 16, device="meta")

    scaled = capture_scalable("x", build)
    m, x = build(3, 1)
    direct = capture_module(m, x)
    assert scaled.flops(3) == pytest.approx(direct.flops(3), rel=1e-9)


def test_unknown_workload_lists_valid_names():
    with pytest.raises(ValueError, match="unknown workload .gpt-9t.; valid: .*resnet50.*gpt-175b"):
        load_workload("gpt-9t")
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        capture_module("not a module", torch.randn(2, 2))


@pytest.mark.parametrize("groups", [1, 2, 24])
def test_conv_backward_flops_are_two_forwards_at_any_groups(groups):
    # FlopCounterMode counts a grouped conv's weight gradient as ungrouped; the capture must not
    conv = nn.Conv2d(24, 24, 3, padding=1, groups=groups, bias=False)
    ops = capture_module(conv, torch.randn(4, 24, 12, 12)).at(4)
    fwd = ops["flops"][(ops["kind"] == KIND["conv"]) & (ops["phase"] == 0)]
    bwd = ops["flops"][(ops["kind"] == KIND["conv"]) & (ops["phase"] == 1)]
    assert fwd.tolist() == [2.0 * 4 * 24 * 144 * (24 // groups) * 9]
    assert bwd.tolist() == fwd.tolist()  # the input needs no gradient: the weight gradient alone


def test_onednn_convolutions_pay_the_call_cost_and_native_ones_do_not():
    from dataclasses import replace

    from opendojo.hw.system import load_system
    from opendojo.sim.device_time import table_time
    from opendojo.sim.ops import GEMM_ROLES

    onednn = GEMM_ROLES.index("conv.onednn")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the backend's choice for 1x1 convolutions depends on the thread count
    try:
        roles = {}
        for name, conv, batch in (("1x1", nn.Conv2d(16, 16, 1), 4), ("1x1 b16", nn.Conv2d(16, 16, 1), 16),
                                  ("3x3", nn.Conv2d(16, 16, 3, padding=1), 4)):
            ops = capture_module(conv, torch.randn(batch, 16, 8, 8)).at(batch)
            roles[name] = set(ops["role"][ops["kind"] == KIND["conv"]].tolist())
    finally:
        torch.set_num_threads(threads)
    assert roles == {"1x1": {0}, "1x1 b16": {onednn}, "3x3": {onednn}}
    host = load_system("host")
    untimed = replace(host.device, conv_call_s=None, conv_bwd_call_s=None)
    timed = replace(host.device, conv_call_s=1e-3, conv_bwd_call_s=3e-3)
    ops = capture_module(nn.Conv2d(16, 16, 3, padding=1), torch.randn(4, 16, 8, 8)).at(4)
    conv = ops["kind"] == KIND["conv"]
    base = table_time(ops, untimed, "fp32", host.caps, mask=conv).compute
    assert table_time(ops, timed, "fp32", host.caps, mask=conv).compute == pytest.approx(base + 4e-3)
