"""`dojo demo` end to end in a tiny configuration: every summary section, every plot in the report."""

import base64
import io
import json
import os
import re

import pytest
from PIL import Image

from opendojo.cli import main
from opendojo.demo import SUMMARY_SECTIONS, SYSTEMS, DemoFolderError, DemoSettings
from opendojo.demo.stages import DemoFolder

TINY = ["--clips", "8", "--cameras", "2", "--steps", "2", "--quiet"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--out", str(out), *TINY]) == 0
    return out


def test_demo_summary_has_every_section_and_both_runs(demo_run):
    summary = json.loads((demo_run / "summary.json").read_text())
    assert set(SUMMARY_SECTIONS) <= set(summary)
    runs = summary["training"]["runs"]
    assert set(runs) == {"fp32", "dojo"}
    steps = summary["training"]["steps"]
    # on two or more cores the two runs train side by side, one spawned process each
    assert summary["training"]["plan"]["parallel"] == (len(os.sched_getaffinity(0)) >= 2)
    for run in runs.values():
        # the rate is the steps' samples over the training wall time (global batch 8)
        assert run["samples_per_s"] * run["train_wall_s"] == pytest.approx(steps * 8, rel=1e-6)
        assert {"occupancy_iou", "ade_m", "speed_mae_mps"} <= set(run["final_metrics"])
        named = ("baseline_speed_mae_mps_mean", "baseline_ade_m_mean_speed")
        judged = {k: run["final_metrics"][k] for k in named}
        assert judged == {k: summary["training"]["baselines"][k] for k in judged}
        # the untrained network predicts exactly the training mean speed, straight on: the named baselines
        first = next(r for r in map(json.loads, open(run["metrics_path"])) if r["kind"] == "eval")
        assert first["step"] == 0
        assert first["speed_mae_mps"] == pytest.approx(first["baseline_speed_mae_mps_mean"], rel=1e-5)
        assert first["ade_m"] == pytest.approx(first["baseline_ade_m_mean_speed"], rel=1e-5)
    assert set(summary["simulation"]["systems"]) == set(SYSTEMS)
    for result in summary["simulation"]["systems"].values():
        assert result["step_time_s"] > 0 and "definition" in result["h100_equivalents"]
    assert summary["cfloat_biases"]["final"], "the CFloat run must log its per-layer biases"


def test_demo_report_embeds_every_figure_it_lists(demo_run):
    summary = json.loads((demo_run / "summary.json").read_text())
    page = (demo_run / "report.html").read_text()
    names = summary["report"]["figures"]
    expected = {"sample", "speed-trace", "trajectories", "occupancy", "curves", "bias-weight", "value-grid",
                "sim-breakdown"}
    assert expected <= set(names)
    for name in names:
        m = re.search(
            rf'<figure id="fig-{re.escape(name)}"><img alt="[^"]*" src="data:image/png;base64,([^"]+)"', page
        )
        assert m, f"figure {name} is not embedded"
        with Image.open(io.BytesIO(base64.b64decode(m.group(1)))) as image:
            image.load()  # every pixel decodes
            assert image.format == "PNG" and 200 <= image.width <= 2000 and 150 <= image.height <= 1200
    assert page.count("<figcaption>") == len(names)


def test_speed_plot_follows_one_held_out_drive_frame_by_frame(demo_run):
    summary = json.loads((demo_run / "summary.json").read_text())
    drive = summary["training"]["held_out_drive"]
    frames = len(drive["true_mps"])
    assert frames >= 32 and len(drive["time_s"]) == len(drive["fp32_mps"]) == len(drive["dojo_mps"]) == frames
    assert drive["time_s"][1] - drive["time_s"][0] == pytest.approx(1 / 30)
    assert all(5.0 <= v <= 35.0 for v in drive["true_mps"])  # the scene's speed limits


def test_demo_rerun_with_same_settings_resumes_every_stage(demo_run, capsys):
    assert main(["demo", "--out", str(demo_run), *TINY]) == 0
    summary = json.loads((demo_run / "summary.json").read_text())
    stages = json.loads((demo_run / "stages" / "train-fp32.json").read_text())
    assert stages["final_loss"] == summary["training"]["runs"]["fp32"]["final_loss"]


def test_demo_rerun_with_other_settings_is_refused_naming_the_setting(demo_run, capsys):
    before = (demo_run / "summary.json").read_bytes()
    assert main(["demo", "--out", str(demo_run), *TINY[:-2], "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "steps: 2 -> 3" in err and "another --out" in err
    assert (demo_run / "summary.json").read_bytes() == before


def test_demo_refuses_a_folder_that_is_not_a_demo_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DemoFolderError, match="not a demo folder"):
        DemoFolder(tmp_path, DemoSettings())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("minutes", 0, "minutes must be in"),
        ("clips", 0, "clips must be a positive integer"),
        ("steps", -1, "steps must be a positive integer"),
    ],
)
def test_demo_settings_reject_impossible_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        DemoSettings(**{field: value})
