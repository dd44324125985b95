import json

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
