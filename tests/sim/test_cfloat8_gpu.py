import numpy as np
import pytest

from opendojo.hw.system import load_system
from opendojo.nn import FP8_GPU_GEMMS
from opendojo.sim.catalog import load_workload
from opendojo.sim.device_time import gemm_peak, table_time
from opendojo.sim.ops import GEMM_ROLES, KIND


@pytest.fixture(scope="module")
def gpt_ops():
    return load_workload("gpt-125m").at(8)


def test_every_linear_gemm_of_a_gpt_step_has_a_role(gpt_ops):
    mm = gpt_ops["kind"] == KIND["matmul"]
    roles = {GEMM_ROLES[r] for r in gpt_ops["role"][mm]}
    assert {"linear.forward", "linear.dgrad", "linear.wgrad"} <= roles


def test_cfloat8_on_h100_prices_exactly_the_gemms_opendojo_nn_runs_in_fp8(gpt_ops):
    """The simulator's CFloat8-on-H100 rate and opendojo.nn's FP8 path move together: a GEMM gets the FP8
    peak if and only if its role is in nn.FP8_GPU_GEMMS; convolutions and attention stay at BF16."""
    d = load_system("h100-dgx").device
    peak = gemm_peak(gpt_ops, d, "cfloat8", "opendojo.nn")
    for i, role in enumerate(GEMM_ROLES):
        rows = gpt_ops["role"] == i
        if not rows.any():
            continue
        expected = d.peak_flops["cfloat8"] if role and role in FP8_GPU_GEMMS else d.peak_flops["bf16"]
        assert np.all(peak[rows] == expected), role
    assert d.peak_flops["cfloat8"] == pytest.approx(2 * d.peak_flops["bf16"], rel=0.01)


def test_cfloat8_speeds_up_the_forward_matmuls_only_while_nn_runs_only_the_forward_in_fp8(gpt_ops):
    s = load_system("h100-dgx")
    mm = gpt_ops["kind"] == KIND["matmul"]
    for phase in (0, 1):
        mask = mm & (gpt_ops["phase"] == phase)
        bf16 = table_time(gpt_ops, s.device, "bf16", s.caps, mask=mask).compute
        fp8 = table_time(gpt_ops, s.device, "cfloat8", s.caps, mask=mask).compute
        roles = {GEMM_ROLES[r] for r in gpt_ops["role"][mask]}
        if roles & set(FP8_GPU_GEMMS):
            assert fp8 < 0.75 * bf16
        else:
            assert fp8 == pytest.approx(bf16)


def test_dojo_runs_every_gemm_in_cfloat8(gpt_ops):
    d = load_system("dojo-tile").device
    assert np.all(gemm_peak(gpt_ops, d, "cfloat8", "native") == d.peak_flops["cfloat8"])
