import base64
import re

import numpy as np
import pytest

from opendojo.report import Section, figure_names, plots, render, write_atomic


def test_report_inlines_every_figure_as_png_and_escapes_text():
    png = plots.bars({"tile": 2.0, "h100": 1.0}, "samples/s", "demo")
    s = Section("Throughput <fast>").text("a < b").figure(png, "bars of samples/s", "tp")
    s.table(["system", "value"], [["tile", 1.5], ["exapod", 1.2e6]])
    page = render("OpenDojo", "sub", [s])
    assert "Throughput &lt;fast&gt;" in page and "a &lt; b" in page
    blobs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(blobs) == 1 and base64.b64decode(blobs[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing to fetch
    assert figure_names([s]) == ["tp"]


def test_figure_without_caption_is_refused():
    with pytest.raises(ValueError, match="caption"):
        Section("x").figure(b"png", "  ", "nameless")


def test_write_atomic_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "r" / "report.html"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_plots_return_png_for_each_figure_kind():
    grid = {7: np.linspace(0, 480, 256), 10: np.linspace(0, 60, 256)}
    frames = np.zeros((3, 16, 16, 3), dtype=np.uint8)
    occ = np.eye(8)
    pngs = [
        plots.value_grid(grid, "CFloat8_1_4_3"),
        plots.curves({"fp32": {"loss": [(0, 1.0), (1, 0.5)]}}, [("loss", "loss")]),
        plots.bias_timeline({"fc1.weight": [(0, 7), (5, 8)]}, "biases"),
        plots.camera_strip(frames, ["front", "left", "right"], occ, {"fp32": occ}),
        plots.stacked_breakdown({"tile": {"compute": 0.01, "communication": 0.002}}, "step"),
    ]
    assert all(p[:4] == b"\x89PNG" for p in pngs)
