import base64
import io
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


def _decoded_size(png: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image.load()  # decodes every pixel: a truncated or corrupt PNG raises here
        return image.size


# (figure, its figsize in inches): plots save at 110 dpi and crop to the drawn area ("tight").
_DPI = 110


def _figures():
    grid = {7: np.linspace(0, 480, 256), 10: np.linspace(0, 60, 256)}
    frames = np.zeros((3, 16, 16, 3), dtype=np.uint8)
    occ = np.eye(8)
    path = np.stack([np.arange(1, 9) * 10.0, np.zeros(8)], axis=1)
    return [
        (plots.value_grid(grid, "CFloat8_1_4_3"), (11.2, 3.9)),
        (plots.curves({"fp32": {"loss": [(0, 1.0), (1, 0.5)]}}, [("loss", "loss")]), (4.2, 3.3)),
        (plots.bias_timeline({"fc1.weight": [(0, 7), (5, 8)]}, "biases"), (9, 3.6)),
        (plots.camera_strip(frames, ["front", "left", "right"], occ, {"fp32": occ}), (11.5, 2.6)),
        (plots.stacked_breakdown({"tile": {"compute": 0.01, "communication": 0.002}}, "step"), (8.5, 2.15)),
        (plots.speed_trace(np.arange(8) / 30, np.full(8, 20.0), {"fp32": np.full(8, 19.0)}, 18.0),
         (8.5, 3.4)),
        (plots.bev_trajectories([{"title": "a", "truth": path, "predicted": {"fp32": path}}], 20.0, 0.5),
         (2.6, 4.2)),
        (plots.occupancy_compare(occ, {"fp32": occ * 0.9}, 2.0, (4.7, 1.9)), (6.4, 3.5)),
    ]


def test_every_figure_kind_decodes_to_about_its_figure_size():
    for png, (width_in, height_in) in _figures():
        width, height = _decoded_size(png)
        # tight cropping trims margins (or adds a legend placed outside), never more than this
        assert 0.5 * width_in * _DPI <= width <= 1.3 * width_in * _DPI, (width, width_in)
        assert 0.5 * height_in * _DPI <= height <= 1.3 * height_in * _DPI, (height, height_in)
