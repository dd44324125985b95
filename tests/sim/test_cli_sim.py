import json

import pytest

from opendojo.cli import main


def test_hw_show_prints_sources_and_derived_totals(capsys):
    assert main(["hw", "show", "dojo-tray"]) == 0
    out = capsys.readouterr().out
    assert "derived totals" in out and "AI Day" in out and "[U]" in out


def test_hw_show_unknown_name_lists_valid_ones(capsys):
    assert main(["hw", "show", "dojo-9000"]) == 2
    assert "valid names:" in capsys.readouterr().err


def test_simulate_json_is_the_documented_object(capsys):
    assert main(["simulate", "--model", "gpt-125m", "--system", "h100-dgx", "--batch", "32", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["fits"] and d["h100_equivalents"]["definition"].startswith("delivered")
    assert set(d["breakdown"]) >= {"compute", "memory", "communication", "bubble", "exposed_communication"}


def test_simulate_bad_layout_exits_2_with_explanation(capsys):
    args = ["simulate", "--model", "gpt-125m", "--system", "h100-dgx", "--parallel", "dp=3,tp=1,pp=1"]
    assert main(args) == 2
    assert "does not divide" in capsys.readouterr().err


def test_sweep_writes_png_and_csv(tmp_path, capsys):
    out = tmp_path / "scaling"
    assert main(["simulate", "--model", "gpt-125m", "--system", "dojo-exapod,h100-cluster-1k",
                 "--batch", "256", "--sweep", "nodes=4:16", "--out", str(out)]) == 0
    assert (tmp_path / "scaling.png").stat().st_size > 1000
    lines = (tmp_path / "scaling.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 3 and lines[0].startswith("system,devices")


def test_simulate_accepts_a_factory_file(tmp_path, capsys):
    f = tmp_path / "mymodel.py"
    f.write_text("import torch\n\n"
                 "def make():\n"
                 "    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU())\n"
                 "    return model, torch.randn(16, 64)\n")
    assert main(["simulate", "--model", f"{f}:make", "--system", "h100-dgx", "--batch", "128", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["workload"].endswith("mymodel.py:make")
    parts = ("compute", "memory", "overhead", "exposed_communication", "bubble")
    assert sum(d["breakdown"][k] for k in parts) == pytest.approx(d["step_time_s"])
    assert d["samples_per_s"] == pytest.approx(128 / d["step_time_s"])
    assert d["memory_detail"]["weights"] == pytest.approx((64 * 64 + 64) * 2)  # bf16 weights of the Linear
    assert main(["simulate", "--model", f"{f}:nothere", "--system", "h100-dgx"]) == 2
    assert "has no function 'nothere'" in capsys.readouterr().err


@pytest.mark.slow
def test_hw_calibrate_stores_measurements(tmp_path, capsys):
    assert main(["hw", "calibrate", "--dir", str(tmp_path), "--quiet"]) == 0
    text = (tmp_path / "host-cpu.toml").read_text()
    assert "peak_flops_fp32" in text and "conv_bwd_flops" in text and "rate_native_batch_norm" in text


@pytest.mark.parametrize("parallel, message", [
    ("dp=1,tp=8,pp=1,mb=1", "tp=8 does not divide the 12 attention heads of 'gpt-125m'"),
    ("dp=1,tp=1,pp=16,mb=1", "pp=16 exceeds the 12 blocks of 'gpt-125m'"),
    ("dp=2,tp=1,pp=1,mb=3", "is not divisible by microbatch=3"),
])
def test_simulate_impossible_parallel_names_the_constraint(capsys, parallel, message):
    dp, tp, pp = (int(kv.split("=")[1]) for kv in parallel.split(",")[:3])
    nodes = dp * tp * pp
    args = ["simulate", "--model", "gpt-125m", "--system", "h100-cluster-1k", "--nodes", str(nodes),
            "--batch", "8", "--parallel", parallel]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_factory_that_fails_is_one_line_naming_it(tmp_path, capsys):
    f = tmp_path / "bad.py"
    f.write_text("import torch\n\n"
                 "def cuda_only():\n    return torch.nn.Linear(4, 4).cuda(), torch.randn(2, 4)\n\n"
                 "def not_a_pair():\n    return torch.nn.Linear(4, 4)\n\n"
                 "def not_a_module():\n    return 3, torch.randn(2, 4)\n")
    for fn, message in [("cuda_only", "cuda_only() raised"), ("not_a_pair", "must return (nn.Module, "),
                        ("not_a_module", "got (int, Tensor)")]:
        assert main(["simulate", "--model", f"{f}:{fn}", "--system", "h100-dgx"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_damaged_workload_cache_is_rebuilt_with_a_warning(tmp_path, monkeypatch, caplog):
    from opendojo.sim import catalog

    monkeypatch.setenv("OPENDOJO_CACHE", str(tmp_path))
    catalog.load_workload.cache_clear()
    path = catalog._cache_path("gpt-125m")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with caplog.at_level("WARNING", logger="opendojo.sim.catalog"):
        w = catalog.load_workload("gpt-125m")
    catalog.load_workload.cache_clear()
    assert w.params > 100e6 and "damaged" in caplog.text
    assert path.stat().st_size > 1000  # written again, whole


def test_simulate_validate_refuses_a_negative_held_out_count(capsys):
    assert main(["simulate", "validate", "--held-out", "-1"]) == 2
    assert "--held-out: got -1; allowed: an integer in 0..1000" in capsys.readouterr().err
