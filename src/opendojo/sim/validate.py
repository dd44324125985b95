"""``dojo simulate validate``: predictions against measurements and published results, as one table.

(a) **host in-sample**: this machine is calibrated (``dojo hw calibrate``'s op-class microbenchmarks)
    and the small models the cost mechanisms were built with are trained for a few steps (forward +
    backward + AdamW, fp32: the step ``dojo train`` runs, without data loading); each measured best step
    is compared with the prediction from the same run's calibration. Target ±20 %.
(b) **host held-out**: the same for models drawn from families the calibration and the mechanisms never
    saw (``sim.families``; ``--held-out N --seed S``). Target: MAPE ≤ 15 %, every model within ±30 %.
(c) **GPU**: published runs at their papers' own layouts (``references/gpu.toml``), in-sample and
    held-out rows scored apart. Target ±15 %.
(d) **Dojo consistency check**: Tesla's published totals against the totals derived from the part files
    (``references/dojo.toml``); a check of the files, not of the simulator.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass, replace
from functools import cache

from opendojo.hw.system import PRECISIONS, System, load_system, measured_device, total
from opendojo.sim.layout import Layout, parse_parallel
from opendojo.sim.step import StepEstimate, estimate_step


@dataclass(frozen=True)
class Row:
    """One line of the validation table: ``predicted`` vs ``reference`` in ``unit``."""

    section: str
    case: str
    predicted: float
    reference: float
    unit: str
    target: float  # allowed |relative error|
    source: str
    note: str = ""

    @property
    def error(self) -> float:
        return self.predicted / self.reference - 1.0

    @property
    def ok(self) -> bool:
        return abs(self.error) <= self.target


# --- (a) host -------------------------------------------------------------------------------
def _host_cases():
    """(name, factory(batch) -> (model, inputs), batches) of small CPU models, fp32."""
    import torch
    from torch import nn

    from opendojo.models.fsd import example_inputs, fsd_net
    from opendojo.models.reference_gpt import gpt, gpt_inputs
    from opendojo.models.reference_vision import resnet50, vit_b16

    def mlp(b):
        m = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Dropout(0.1), nn.Linear(1024, 1024), nn.ReLU(),
                          nn.Linear(1024, 10))
        return m, (torch.randn(b, 784),)

    def cnn(b):
        return resnet50(layers=(1, 1, 1, 1), width=16, classes=10), (torch.randn(b, 3, 64, 64),)

    def vit(b):
        m = vit_b16(image=64, patch=8, d=192, depth=4, heads=3, mlp=768, classes=10)
        return m, (torch.randn(b, 3, 64, 64),)

    def gpt_mini(b):
        m = gpt("gpt-125m", n_layer=2, d_model=128, n_head=4, seq=128, vocab=1000)
        return m, (gpt_inputs(m.config, b),)

    cases = [("mlp-2x1024", mlp, (64, 256)), ("resnet-tiny 64px", cnn, (4, 16)),
             ("vit-tiny 64px", vit, (4, 16)), ("gpt-mini 2x128", gpt_mini, (4, 16))]
    cases.append(("fsd-tiny", lambda b: (fsd_net("tiny"), (example_inputs("tiny", b),)), (1, 2)))
    return cases


def measure_step_time(model, inputs: tuple, steps: int = 5) -> float:
    """Best wall seconds of one training step (zero_grad, forward, mean loss, backward, AdamW step).

    The minimum, like the calibration: contention from other processes only ever adds time."""
    import torch

    from opendojo.hw.calibrate import step_clock
    from opendojo.sim.workload import scalar_loss

    clock = step_clock()  # CPU time with one thread: what other processes' load cannot inflate
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(steps + 2):
        t0 = clock()
        opt.zero_grad(set_to_none=True)
        scalar_loss(model(*inputs)).backward()
        opt.step()
        if i >= 2:  # the first two steps allocate the optimizer state and warm caches
            times.append(clock() - t0)
    return min(times)


def _fastest(calibrations: list[dict[str, float]]) -> dict[str, float]:
    """Per quantity, the best of several calibrations: highest rates, lowest times; the matmul curve's
    shape (``eff_matmul_half_dim``) is taken from the calibration with the highest peak."""
    best = {}
    for key in calibrations[0]:
        values = [c[key] for c in calibrations]
        best[key] = min(values) if key.endswith("_s") else max(values)
    top = max(calibrations, key=lambda c: c["peak_flops_fp32"])
    best["eff_matmul_half_dim"] = top["eff_matmul_half_dim"]
    best["peak_flops_fp32"] = top["peak_flops_fp32"]
    return best


def host_system(measured: dict[str, float]) -> System:
    """The ``host`` system with its device numbers replaced by a calibration measured in this run."""
    s = load_system("host")
    d = s.device
    peak = measured["peak_flops_fp32"]
    device = measured_device(
        d.name, {"hbm_bytes": d.mem_bytes, **measured}, peak_flops=dict.fromkeys(PRECISIONS, peak),
        vector_flops=peak, power_w=d.power_w, eff_matmul_max=d.eff_matmul_max,
        eff_matmul_half_dim=measured["eff_matmul_half_dim"], eff_conv_max=d.eff_conv_max,
        eff_mem_bw=d.eff_mem_bw, op_overhead_s=measured["op_overhead_s"])
    return replace(s, device=device)


@dataclass(frozen=True)
class HostResult:
    """One host configuration: its measured best step (s), the prediction, the captured workload and the
    system built from the same run's calibration."""

    name: str
    batch: int
    measured_s: float
    estimate: StepEstimate
    workload: object
    system: System


def measure_and_predict(configs: list[tuple[str, object, int]], progress: bool = True) -> list[HostResult]:
    """Calibrate this host, train each ``(name, factory, batch)`` a few steps, predict each from the same
    run's calibration.

    Two passes, each a calibration followed by every configuration: a burst of load from other processes
    during one pass decides neither the calibration nor a step time. Both keep their best (fastest)
    values over the two passes, so they are the same statistic over the same windows."""
    import torch
    from tqdm import tqdm

    from opendojo.hw.calibrate import measure_host
    from opendojo.sim.workload import capture_module

    bar = tqdm(total=2 * len(configs), desc="host steps", disable=not progress)
    best: dict[int, float] = {}
    calibrations = []
    for _ in range(2):
        calibrations.append(measure_host(progress=False))
        for i, (_name, factory, b) in enumerate(configs):
            torch.manual_seed(0)
            model, inputs = factory(b)
            best[i] = min(best.get(i, float("inf")), measure_step_time(model, inputs, steps=4))
            bar.update()
    bar.close()
    system = host_system(_fastest(calibrations))
    out = []
    for i, (name, factory, b) in enumerate(configs):
        w = capture_module(*factory(b), name=name)
        est = estimate_step(w, system, Layout(microbatch=b), b, "fp32")
        out.append(HostResult(name, b, best[i], est, w, system))
    return out


def _host_rows(section: str, results, target: float, families: list[str] | None = None) -> list[Row]:
    import torch

    threads = torch.get_num_threads()
    source = (f"measured here, same run, {threads} thread(s), {'CPU' if threads == 1 else 'wall'} time, "
              f"best of 2 x 4 steps")
    rows = []
    for i, r in enumerate(results):
        family = f"{families[i]}: " if families else ""
        rows.append(Row(section, f"{r.name}, batch {r.batch}", r.estimate.step_time_s, r.measured_s, "s",
                        target, source, note=family + _dominant(r.estimate.breakdown)))
    return rows


def validate_host(progress: bool = True) -> list[Row]:
    """In-sample: the small models the cost mechanisms were built with, each at two batch sizes."""
    configs = [(name, factory, b) for name, factory, batches in _host_cases() for b in batches]
    return _host_rows("host in-sample", measure_and_predict(configs, progress), 0.20)


def validate_held_out(n: int, seed: int, progress: bool = True) -> list[Row]:
    """Held-out: ``n`` models drawn from families the calibration never runs (``sim.families``)."""
    from opendojo.sim.families import draw

    drawn = draw(n, seed)
    results = measure_and_predict([(h.name, h.factory, h.batch) for h in drawn], progress)
    return _host_rows("host held-out", results, 0.30, [h.family for h in drawn])


def _dominant(breakdown: dict[str, float]) -> str:
    k = max(breakdown, key=breakdown.get)
    share = breakdown[k] / max(sum(breakdown.values()), 1e-30)
    return f"{k} {100 * share:.0f} % of predicted step"


# --- (b) published GPU runs -----------------------------------------------------------------
def references(kind: str) -> list[dict]:
    """The rows of ``sim/references/<kind>.toml``: ``gpu`` its ``[[run]]``s, ``dojo`` its ``[[total]]``s."""
    import tomllib
    from importlib import resources

    text = (resources.files("opendojo.sim") / "references" / f"{kind}.toml").read_text()
    return tomllib.loads(text)["run" if kind == "gpu" else "total"]


@cache
def _reference_workload(model: str | tuple) -> object:
    """A built-in workload by name, or a GPT of the shape ``(layers, d_model, heads, seq, vocab)``."""
    from opendojo.sim.catalog import gpt_workload, load_workload

    if isinstance(model, str):
        return load_workload(model)
    from opendojo.models.reference_gpt import GPTConfig

    layers, d_model, heads, seq, vocab = model
    return gpt_workload(f"gpt {layers}x{d_model}", GPTConfig(layers, d_model, heads, seq=seq, vocab=vocab))


def published_layouts(run: dict) -> list[Layout]:
    """The run's layout at every combination of its ``open`` settings (first values first); combinations
    the run's batch or depth rules out are dropped."""
    fixed = parse_parallel(run["layout"])
    open_ = run.get("open", {})
    keys = list(open_)
    out = []
    for values in itertools.product(*(open_[k] for k in keys)):
        chosen = dict(fixed, **{("microbatch" if k == "mb" else k): v
                                for k, v in zip(keys, values, strict=True)})
        out.append(Layout(chosen["dp"], chosen["tp"], chosen["pp"], chosen.get("microbatch", 1),
                          chosen.get("zero", 0), bool(chosen.get("recompute", 0)), chosen.get("vp", 1),
                          bool(chosen.get("sp", 0))))
    return out


def _run_row(run: dict) -> Row:
    """Predict one published run at its own layout (and the spread over its open settings)."""
    model = run["model"]
    key = model if isinstance(model, str) else tuple(model[k] for k in ("layers", "d_model", "heads", "seq",
                                                                        "vocab"))
    w = _reference_workload(key)
    s = load_system(run["system"]).with_devices(run["gpus"])
    estimates = []
    for layout in published_layouts(run):
        try:
            estimates.append(estimate_step(w, s, layout, run["batch"], run.get("precision", "bf16")))
        except ValueError:  # an open setting the batch or depth does not allow
            continue
    if not estimates:
        raise ValueError(f"published run {run['case']!r}: no open setting fits its batch and depth")
    values = [_metric(e, s, run) for e in estimates]
    est = estimates[0]
    note = f"{run['group']}; {est.layout.describe()}; {_dominant(est.breakdown)}"
    if len(values) > 1:
        note += f"; open settings {run['open']} give {min(values):.4g}..{max(values):.4g}"
    need = sum(est.memory.values())
    note += f"; model memory {need / 1e9:.0f} GB of {est.capacity_bytes / 1e9:.0f} GB usable"
    return Row(f"gpu {run['group']}", run["case"], values[0], run["value"], _UNITS[run["metric"]], 0.15,
               run["source"],
               note=note)


def validate_gpu(groups: tuple[str, ...] = ("in-sample", "held-out")) -> list[Row]:
    """Published runs vs the model, each at its paper's own layout: nothing is searched. The step is timed
    even where the model's memory estimate says it would not fit (the run did fit: the paper says so);
    the note gives the model's estimate."""
    return [_run_row(run) for run in references("gpu") if run["group"] in groups]


#: What a published run reports: hardware TFLOP/s per GPU (Megatron), model FLOPs utilisation (Llama 3), or
#: samples per second over all the run's GPUs (vendor throughput tables: images/s, sequences/s).
_UNITS = {"tflops_hw": "TF/GPU", "mfu": "% MFU", "samples_s": "samples/s"}


def _metric(est, s: System, run: dict) -> float:
    metric, gpus = run["metric"], run["gpus"]
    if metric == "mfu":
        return 100.0 * est.model_flops / est.step_time_s / (gpus * s.device.peak_flops["bf16"])
    if metric == "samples_s":
        return run["batch"] / est.step_time_s
    return est.hardware_flops / est.step_time_s / gpus / 1e12


# --- (c) Dojo: consistency of the hardware files with Tesla's totals ------------------------
def validate_dojo() -> list[Row]:
    """Derived totals vs Tesla's published (rounded) figures: a consistency check of the part files, not
    a validation of the simulator (see ``references/dojo.toml``). Tolerance ±5 %."""
    return [Row("dojo check", r["case"], total(r["part"], r["field"]), r["value"], r["unit"], 0.05,
                r["source"], note=f"consistency check: sum over parts of {r['part']}")
            for r in references("dojo")]


def validate(host: bool = True, progress: bool = True, held_out: int = 0, seed: int = 0) -> list[Row]:
    """Every section: host in-sample (``host``), host held-out (``held_out`` drawn models, ``seed``),
    published GPU runs, Dojo consistency. The host sections measure this machine (about a minute each)."""
    rows = validate_host(progress) if host else []
    if held_out:
        rows += validate_held_out(held_out, seed, progress)
    return rows + validate_gpu() + validate_dojo()


def format_table(rows: list[Row]) -> str:
    """The error table, one line per case, with a summary per section."""
    from opendojo.hw.show import fmt

    out = [f"{'section':<13} {'case':<52} {'predicted':>12} {'reference':>12} {'error':>8} "
           f"{'target':>7}  ok  note / source"]
    for r in rows:
        p, ref = (fmt(r.predicted, r.unit), fmt(r.reference, r.unit)) if r.unit in ("s", "B", "FLOP/s") else (
            f"{r.predicted:.4g}", f"{r.reference:.4g}")
        tail = f"{r.note}; {r.source}" if r.note else r.source
        target = "±" + format(100 * r.target, ".0f") + "%"
        out.append(f"{r.section:<13} {r.case:<52} {p:>12} {ref:>12} {100 * r.error:>+7.1f}% "
                   f"{target:>7}  {'yes' if r.ok else 'NO ':<3} {tail}")
    for section in dict.fromkeys(r.section for r in rows):
        errs = [abs(r.error) for r in rows if r.section == section]
        hits = sum(r.ok for r in rows if r.section == section)
        worst = max((r for r in rows if r.section == section), key=lambda r: abs(r.error))
        out.append(f"{section}: MAPE {100 * statistics.mean(errs):.1f} %, "
                   f"worst {100 * worst.error:+.1f} % ({worst.case}), "
                   f"{hits}/{len(errs)} within ±{100 * worst.target:.0f} %")
    return "\n".join(out)
