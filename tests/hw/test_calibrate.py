import pytest

from opendojo.hw import load_system
from opendojo.hw.calibrate import fit_matmul_curve, store
from opendojo.hw.system import clear_caches


def test_fit_recovers_a_known_matmul_curve():
    peak, half = 2e11, 48.0
    shapes = [(64, 64, 64), (256, 256, 256), (1024, 1024, 1024), (4096, 64, 64), (64, 4096, 256)]
    rates = [peak * (m / (m + half)) * (n / (n + half)) * (k / (k + half)) for m, n, k in shapes]
    p, h = fit_matmul_curve(shapes, rates)
    assert p == pytest.approx(peak, rel=0.03) and h == pytest.approx(half, rel=0.05)


def test_stored_calibration_overrides_the_shipped_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENDOJO_CACHE", str(tmp_path))
    clear_caches()
    try:
        assert load_system("host").device.peak_flops["fp32"] == 198e9  # shipped default
        path = store({"peak_flops_fp32": 1.5e11, "hbm_bw": 2e10, "op_overhead_s": 5e-6}, tmp_path)
        assert path == tmp_path / "host-cpu.toml" and path.read_text().startswith("# Written by")
        host = load_system("host")
        assert host.device.peak_flops["fp32"] == 1.5e11 and host.device.mem_bw == 2e10
    finally:
        clear_caches()


def test_invalid_measurement_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="invalid hbm_bw = -1.0; nothing was written"):
        store({"peak_flops_fp32": 1e11, "hbm_bw": -1.0}, tmp_path)
    assert not (tmp_path / "host-cpu.toml").exists()
