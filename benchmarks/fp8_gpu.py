"""CFloat8 on FP8 tensor cores vs BF16: training step time on an H100/H200 (issue 16, item 4).

Two workloads: the FSD ``base`` network (``opendojo.models``, one GPU preset) and one GPT block (width
4096, 2,048 tokens, the GPT-6.7B shape). Methods, interleaved round by round so clock and thermal drift
hit all alike:

- ``bf16 autocast`` (the anchor): the unconverted model under ``torch.autocast("cuda", torch.bfloat16)``;
- ``cfloat8, FP8 tensor cores``: ``Recipe.dojo()``; Linear layers run forward, dgrad and wgrad on
  ``torch._scaled_mm`` (``nn.FP8_GPU_GEMMS``), convolutions and attention stay in FP32;
- ``cfloat8, emulated``: the same recipe with ``fp8_matmul="never"`` (rounding without FP8 GEMMs).

Prints the median step time (forward, backward, AdamW) and its ratio to BF16 in the same round, with
the GPU, torch version and date. Without an FP8-capable GPU it says so and exits 0.

    .venv/bin/python benchmarks/fp8_gpu.py [--repeats 20] [--fsd-batch 2] [--gpt-batch 4]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import statistics
from dataclasses import replace

import torch
from tqdm import tqdm

from opendojo.nn import Recipe, convert
from opendojo.nn.fp8_matmul import fp8_hardware_available

METHODS = {
    "bf16 autocast": None,
    "cfloat8, FP8 tensor cores": Recipe.dojo(),
    "cfloat8, emulated": replace(Recipe.dojo(), fp8_matmul="never"),
}
ANCHOR = "bf16 autocast"


def _workloads(fsd_batch: int, gpt_batch: int) -> dict:
    """name -> (model factory, input, loss of the output)."""
    from opendojo.models import example_inputs, fsd_net
    from opendojo.models.reference_gpt import GPTConfig, gpt, gpt_inputs

    block = GPTConfig(n_layer=1, d_model=4096, n_head=32, seq=2048, vocab=256)  # one GPT-6.7B block
    return {
        "fsd-base": (lambda: fsd_net("base", device="cuda"), example_inputs("base", fsd_batch, device="cuda"),
                     lambda out: sum(v.float().square().mean() for v in out.values())),
        "GPT block (d 4096, 2k tokens)": (lambda: gpt(block, device="cuda"),
                                          gpt_inputs(block, gpt_batch, device="cuda"),
                                          lambda out: out.float().logsumexp(-1).mean()),
    }


def _step_fn(make, x, loss_fn, recipe):
    """A timed training step for one method (the model converted if ``recipe``), warmed up."""
    torch.manual_seed(0)
    model = make()
    if recipe is not None:
        convert(model, recipe)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = (lambda: torch.autocast("cuda", torch.bfloat16)) if recipe is None else contextlib.nullcontext

    def step() -> None:
        with autocast():
            loss = loss_fn(model(x))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    return step


def _time(step) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    step()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)  # ms


def bench(name: str, workload, repeats: int) -> None:
    make, x, loss_fn = workload
    steps = {m: _step_fn(make, x, loss_fn, r) for m, r in METHODS.items()}
    times = {m: [] for m in steps}
    for _ in tqdm(range(repeats), desc=name, unit="round"):
        for m, step in steps.items():
            times[m].append(_time(step))
    for m in steps:
        paired = statistics.median(t / a for t, a in zip(times[m], times[ANCHOR], strict=True))
        print(f"| {name} | {m} | {statistics.median(times[m]):.2f} | {paired:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--fsd-batch", type=int, default=2)
    parser.add_argument("--gpt-batch", type=int, default=4)
    args = parser.parse_args()
    if not (torch.cuda.is_available() and fp8_hardware_available(torch.device("cuda"))):
        print("fp8_gpu.py: skipped: needs a CUDA GPU with FP8 tensor cores (compute capability >= 8.9)")
        return
    torch.backends.cuda.matmul.allow_tf32 = True  # the FP32 parts run as a GPU user would run them
    now = datetime.datetime.now(datetime.UTC)
    print(f"date {now:%Y-%m-%d %H:%M} UTC; GPU {torch.cuda.get_device_name()}; torch {torch.__version__}; "
          f"median of {args.repeats} interleaved rounds\n")
    print("| workload | method | step (ms) | × BF16 (paired rounds) |")
    print("|---|---|---:|---:|")
    for name, workload in _workloads(args.fsd_batch, args.gpt_batch).items():
        bench(name, workload, args.repeats)


if __name__ == "__main__":
    main()
