import pytest
import torch

from opendojo.sim.validate import (
    format_table,
    measure_step_time,
    validate_dojo,
    validate_gpu,
    validate_held_out,
)


def test_dojo_consistency_rows_reproduce_teslas_published_totals():
    rows = {r.case: r for r in validate_dojo()}
    assert rows["D1 peak BF16"].predicted == pytest.approx(362e12, rel=0.01)
    assert rows["training tile peak BF16"].predicted == pytest.approx(9.05e15, rel=0.01)
    assert rows["ExaPOD peak BF16 (1.1 EF)"].predicted == pytest.approx(1.1e18, rel=0.02)
    assert rows["ExaPOD HBM (13 TB)"].predicted == pytest.approx(13e12, rel=0.02)
    assert all(r.ok for r in rows.values()), [c for c, r in rows.items() if not r.ok]


def test_gpu_rows_cite_sources_and_table_reports_each_section():
    rows = validate_gpu()
    assert {"Megatron 1T", "Llama 3 405B"} <= {r.case.split(",")[0] for r in rows}
    assert all("arXiv" in r.source for r in rows)
    table = format_table(rows + validate_dojo())
    assert "gpu: MAPE" in table and "dojo: MAPE" in table and "worst" in table


def test_step_time_grows_with_the_work_of_the_step():
    small = measure_step_time(torch.nn.Linear(8, 8), (torch.randn(4, 8),), steps=2)
    big = measure_step_time(torch.nn.Linear(512, 512), (torch.randn(512, 512),), steps=2)
    assert 0 < small < 0.05 and big > 5 * small


@pytest.mark.slow
def test_held_out_section_measures_and_predicts_each_drawn_model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = validate_held_out(2, seed=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert [r.section for r in rows] == ["host held-out"] * 2
    assert all(0.2 < r.predicted / r.reference < 5 for r in rows), format_table(rows)
