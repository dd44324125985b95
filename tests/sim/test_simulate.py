import math

import pytest

from opendojo.hw import load_system
from opendojo.sim import Layout, simulate
from opendojo.sim.catalog import load_workload
from opendojo.sim.simulate import best_step

REQUIRED = {"step_time_s", "breakdown", "mfu", "memory_per_device_bytes", "fits", "power_w",
            "energy_per_step_j", "samples_per_s", "h100_equivalents"}


def test_json_object_has_the_documented_keys_and_breakdown_adds_up():
    d = simulate("gpt-125m", "h100-dgx", batch=64).to_dict()
    assert REQUIRED <= set(d)
    parts = ("compute", "memory", "overhead", "exposed_communication", "bubble")
    assert sum(d["breakdown"][k] for k in parts) == pytest.approx(d["step_time_s"], rel=1e-9)
    assert d["breakdown"]["communication"] >= d["breakdown"]["exposed_communication"]
    assert {"value", "definition"} <= set(d["h100_equivalents"])
    assert 0 < d["mfu"] < 1 and d["fits"]
    assert d["energy_per_step_j"] == pytest.approx(d["power_w"] * d["step_time_s"])


def test_175b_runs_on_a_full_exapod_and_a_16k_gpu_cluster():
    for system in ("dojo-exapod", "h100-cluster-16k"):
        r = simulate("gpt-175b", system)
        assert r.fits and r.step_time_s > 0 and 0.05 < r.mfu < 0.8, (system, r.mfu)


def test_peak_h100_equivalents_of_an_exapod():
    r = simulate("gpt-125m", "dojo-exapod", batch=480)
    assert r.h100_equivalents["all"]["peak"]["value"] == pytest.approx(1098, rel=0.01)
    assert r.h100_equivalents["definition"].startswith("delivered")


def test_delivered_h100_equivalents_of_an_h100_cluster_is_at_most_its_size():
    # The reference is the H100 at its best among nearby cluster sizes, so a cluster scores <= its size,
    # and exactly its size when it is itself the best setup.
    r = simulate("gpt-13b", "h100-cluster-1k", batch=1024)
    assert 0.5 * 1024 < r.h100_equivalents["value"] <= 1024 * 1.001
    r = simulate("gpt-125m", "h100-dgx", batch=64)
    assert r.h100_equivalents["value"] <= 8 * 1.001


def test_more_gpus_are_faster_but_less_efficient():
    small = simulate("gpt-1.3b", "h100-cluster-1k", nodes=64, batch=512)
    big = simulate("gpt-1.3b", "h100-cluster-1k", nodes=512, batch=512)
    assert big.step_time_s < small.step_time_s
    assert big.mfu < small.mfu


def test_dojo_spills_to_dip_hbm_when_sram_is_too_small():
    w = load_workload("gpt-1.3b")
    s = load_system("dojo-tile")
    est = best_step(w, s, 8, "bf16", Layout(microbatch=1))
    assert est.fits and est.spilled_bytes > 0
    assert est.communication["spill_streaming"] > 0


def test_fp32_is_slower_than_bf16_on_gpus():
    assert simulate("gpt-125m", "h100-dgx", batch=64, precision="fp32").step_time_s > \
        simulate("gpt-125m", "h100-dgx", batch=64).step_time_s


def test_model_that_fits_nowhere_explains_what_needed_how_much_where():
    with pytest.raises(ValueError, match=r"'gpt-175b' fits nowhere on 'h100-dgx'.*needs .* GB per device.*"
                                         r"optimizer.*80 GB|76 GB of HBM"):
        simulate("gpt-175b", "h100-dgx")


def test_layout_that_does_not_divide_the_devices_is_explained():
    with pytest.raises(ValueError, match=r"dp\*tp\*pp = 3\*2\*1 = 6 does not divide .* the 8 devices"):
        simulate("gpt-125m", "h100-dgx", batch=48, parallel="dp=3,tp=2,pp=1")
    with pytest.raises(ValueError, match="tensor parallelism .* transformer workloads only"):
        simulate("fsd-tiny", "h100-dgx", parallel="tp=2")
    with pytest.raises(ValueError, match="parallel: unknown key 'xp'"):
        simulate("gpt-125m", "h100-dgx", parallel="xp=2")


def test_bad_names_and_precision_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown system 'tpu-v4'; valid systems: .*dojo-exapod"):
        simulate("gpt-125m", "tpu-v4")
    with pytest.raises(ValueError, match="precision='fp16': allowed bf16, cfloat8, fp32"):
        simulate("gpt-125m", "h100-dgx", precision="fp16")
    with pytest.raises(ValueError, match="batch=0"):
        simulate("gpt-125m", "h100-dgx", batch=0)


def test_fsd_workload_runs_on_dojo_and_h100():
    for system in ("dojo-tray", "h100-dgx"):
        r = simulate("fsd-tiny", system)
        assert r.fits and math.isfinite(r.step_time_s)


def test_pointwise_fusion_only_removes_memory_traffic_and_launches_on_gpus():
    eager = simulate("fsd-tiny", "h100-dgx", batch=64, fusion=False, h100_eq="peak")
    fused = simulate("fsd-tiny", "h100-dgx", batch=64, h100_eq="peak")  # GPUs default to fusion
    assert fused.breakdown["compute"] == pytest.approx(eager.breakdown["compute"])
    assert fused.breakdown["memory"] + fused.breakdown["overhead"] < \
        eager.breakdown["memory"] + eager.breakdown["overhead"]
