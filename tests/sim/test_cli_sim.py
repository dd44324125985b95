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
    assert d["workload"].endswith("mymodel.py:make") and d["step_time_s"] > 0
    assert main(["simulate", "--model", f"{f}:nothere", "--system", "h100-dgx"]) == 2
    assert "has no function 'nothere'" in capsys.readouterr().err


@pytest.mark.slow
def test_hw_calibrate_stores_measurements(tmp_path, capsys):
    assert main(["hw", "calibrate", "--dir", str(tmp_path), "--quiet"]) == 0
    text = (tmp_path / "host-cpu.toml").read_text()
    assert "peak_flops_fp32" in text and "conv_bwd_flops" in text and "rate_native_batch_norm" in text
