import pytest

from opendojo.hw import describe, list_systems, load_system, total, uncertain_quantities
from opendojo.hw.quantity import parse_quantity
from opendojo.hw.system import parse_part


def test_tile_and_d1_peaks_match_teslas_published_figures():
    # Published: D1 362 TFLOP/s BF16 (AI Day 2021), training tile 9 PFLOP/s (AI Day 2021: "9 PFLOPS").
    # The files state only a node's rate and the part counts; the totals are derived.
    assert total("d1", "peak_flops_bf16") == pytest.approx(362e12, rel=0.01)
    assert total("training-tile", "peak_flops_bf16") == pytest.approx(9.05e15, rel=0.01)
    assert total("dojo-exapod", "power_w") > 120 * total("training-tile", "power_w")  # cabinets draw more


def test_exapod_totals_match_published_capacities():
    assert total("dojo-exapod", "peak_flops_bf16") == pytest.approx(1.1e18, rel=0.02)
    assert total("dojo-exapod", "sram_bytes") == pytest.approx(1.3e12, rel=0.03)
    assert total("dojo-exapod", "hbm_bytes") == pytest.approx(13e12, rel=0.03)
    assert load_system("dojo-exapod").devices == 120


def test_gpu_cluster_device_count_and_nvlink_domain():
    s = load_system("h100-cluster-16k")
    assert s.devices == 16384 and s.scale_up_size == 8
    assert s.device.peak_flops["bf16"] == pytest.approx(989.4e12)


def test_unknown_system_lists_valid_names():
    with pytest.raises(ValueError, match="unknown system 'dojo-megapod'.*dojo-exapod"):
        load_system("dojo-megapod")


def test_every_system_loads_and_describes():
    for name in list_systems():
        s = load_system(name)
        assert s.devices >= 1 and s.power_w > 0
        assert name in describe(name)


def test_negative_field_names_file_and_field():
    raw = {"name": "x", "kind": "gpu", "description": "d",
           "quantities": {"hbm_bw": {"value": -1.0, "source": "s", "confidence": "P"}}}
    with pytest.raises(ValueError, match=r"x\.toml: field 'hbm_bw' is negative"):
        parse_part(raw, "x.toml")


def test_missing_field_names_file_and_field():
    with pytest.raises(ValueError, match=r"y\.toml: missing or empty field 'description'"):
        parse_part({"name": "y", "kind": "gpu"}, "y.toml")
    with pytest.raises(ValueError, match="field 'nic_bw' is missing 'source'"):
        parse_quantity({"value": 1.0, "confidence": "P"}, where="y.toml", field="nic_bw")


def test_uncertain_number_requires_a_range():
    with pytest.raises(ValueError, match="uncertain .* no range"):
        parse_quantity({"value": 1.0, "source": "s", "confidence": "U"}, where="f", field="edge_bw")


def test_override_moves_a_ranged_quantity_and_rejects_others():
    base = load_system("dojo-tray")
    fast = load_system("dojo-tray", {"training-tile.edge_bw": 9e12})
    assert fast.link_bw == 9e12 and base.link_bw == 4.5e12
    assert "training-tile.edge_bw" in uncertain_quantities("dojo-tray")
    with pytest.raises(ValueError, match="outside its range"):
        load_system("dojo-tray", {"training-tile.edge_bw": 1e15})
    with pytest.raises(ValueError, match="not a ranged quantity"):
        load_system("dojo-tray", {"dip.hbm_bw": 1e12})


def test_with_devices_rejects_nonpositive():
    with pytest.raises(ValueError, match="nodes=0"):
        load_system("h100-dgx").with_devices(0)
    assert load_system("h100-dgx").with_devices(4).scale_up_size == 4


def test_every_trainer_recipe_maps_to_a_priced_precision():
    from opendojo.hw.system import PRECISIONS, RECIPE_PRECISION
    from opendojo.train.config import PRECISIONS as RECIPES

    assert set(RECIPE_PRECISION) == set(RECIPES)
    assert set(RECIPE_PRECISION.values()) <= set(PRECISIONS)


def test_capabilities_come_from_the_device_file():
    host, h100 = load_system("host"), load_system("h100-dgx")
    assert host.caps.dispatch == "serial" and host.caps.precisions == ("fp32",) and host.caps.max_devices == 1
    assert h100.caps.dispatch == "launch-floor" and h100.caps.cfloat8_gemms == "opendojo.nn"
    assert h100.capacity_bytes == pytest.approx(0.95 * 80e9)
    with pytest.raises(ValueError, match="at most 1 device"):
        host.with_devices(2)


def test_a_device_without_capabilities_is_refused_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"\[capabilities\] usable_memory = 2 must be in \(0, 1\]"):
        parse_part({"name": "x", "kind": "gpu", "description": "d",
                    "capabilities": {"usable_memory": 2, "memory_name": "HBM", "dispatch": "serial",
                                     "optimizer_dispatch": "foreach", "tensor_parallel": [1],
                                     "pipeline": True, "overlap_communication": True,
                                     "precisions": ["bf16"]}}, "x.toml")
