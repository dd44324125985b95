import pytest
import torch

from opendojo.sim.layout import parse_parallel
from opendojo.sim.validate import (
    format_table,
    measure_step_time,
    published_layouts,
    references,
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


def test_published_runs_use_their_own_settings_unsearched():
    runs = {r["case"]: r for r in references("gpu")}
    rows = validate_gpu(groups=("in-sample",))
    assert {"Megatron 1T", "Llama 3 405B"} <= {r.case.split(",")[0] for r in rows}
    for row in rows:
        run = runs[row.case]
        central = published_layouts(run)[0]
        fixed = parse_parallel(run["layout"])
        assert (central.dp, central.tp, central.pp) == (fixed["dp"], fixed["tp"], fixed["pp"])
        assert central.recompute == bool(fixed["recompute"]) and central.zero == fixed["zero"]
        assert central.describe() in row.note  # predicted at the paper's layout, not a searched one
        assert "arXiv" in row.source and row.section == "gpu in-sample"
    table = format_table(rows + validate_dojo())
    assert "gpu in-sample: MAPE" in table and "dojo check: MAPE" in table and "worst" in table


def test_open_settings_are_enumerated_with_the_first_values_first():
    run = {"layout": "dp=4,tp=2,pp=2,recompute=1,sp=0,zero=0", "open": {"mb": [1, 2], "vp": [1, 2]}}
    layouts = published_layouts(run)
    assert [(x.microbatch, x.vp) for x in layouts] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all((x.dp, x.tp, x.pp, x.recompute) == (4, 2, 2, True) for x in layouts)


def test_reference_files_mark_every_gpu_run_in_sample_or_held_out_from_three_independent_sources():
    runs = references("gpu")
    assert {r["group"] for r in runs} == {"in-sample", "held-out"}
    assert len(runs) >= 12 and all(r["value"] > 0 and ("arXiv" in r["source"] or "github.com" in r["source"])
                                   for r in runs)
    authors = {r["source"].split(",")[0].split(" (")[0] for r in runs}
    assert len(authors) >= 3, authors
    assert any(r["metric"] == "samples_s" and r["group"] == "held-out" for r in runs)  # a non-LLM workload


def test_a_throughput_row_is_the_batch_over_the_predicted_step_at_the_published_layout():
    run = next(r for r in references("gpu") if r["metric"] == "samples_s" and r["gpus"] > 1)
    row = next(r for r in validate_gpu(groups=("held-out",)) if r.case == run["case"])
    assert row.unit == "samples/s" and row.reference == run["value"]
    assert published_layouts(run)[0].describe() in row.note and "microbatch=256" in row.note


@pytest.mark.slow
def test_held_out_gpu_runs_are_scored_apart_from_in_sample_ones():
    rows = validate_gpu()
    assert {r.section for r in rows} == {"gpu in-sample", "gpu held-out"}
    assert sum(r.section == "gpu held-out" for r in rows) >= 9


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
