"""One rank of tests/nn/test_distributed.py, run as ``python _dist_worker.py RANK WORLD INIT WRAP OUT``.

Trains a converted MLP for 3 steps under DDP or FSDP2 (gloo, CPU) and saves the full weights and the
bias report to ``OUT.RANK``, once per recipe: ``dojo_lean`` (the real recipe) and ``fixed`` (fixed
biases, round to nearest: every rounding is elementwise, so the result cannot depend on how the batch
is split). ``WRAP=none`` with ``WORLD=1`` is the 1-process reference: one model, no wrapper, trained on
the union of every rank's batch, whose mean loss has the gradient data parallelism averages.
"""

import sys

import torch
import torch.distributed as dist
from torch import nn

from opendojo.nn import Recipe, TensorPolicy, bias_report, convert, requantize_weights_

RANKS = 2  # the data of this many ranks is drawn every step, whatever the world size
FIXED = Recipe(
    name="fixed",
    activation=TensorPolicy("cfloat8_1_4_3", "nearest", "fixed", fixed_bias=7),
    weight=TensorPolicy("cfloat8_1_4_3", "nearest", "fixed", fixed_bias=7),
    gradient=TensorPolicy("cfloat8_1_5_2", "nearest", "fixed", fixed_bias=20),
    weight_storage=TensorPolicy("cfloat16_shp", "nearest", "fixed", fixed_bias=15),
)


def _wrapped(net: nn.Module, wrap: str) -> nn.Module:
    if wrap == "ddp":
        return nn.parallel.DistributedDataParallel(net)
    if wrap == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in net:
            if isinstance(layer, nn.Linear):
                fully_shard(layer)
        return fully_shard(net)
    return net


def train(recipe: Recipe, rank: int, world: int, wrap: str) -> dict:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32),
                        nn.ReLU(), nn.Linear(32, 2))
    convert(net, recipe)
    model = _wrapped(net, wrap)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(3):
        batches = [torch.randn(16, 8, generator=torch.Generator().manual_seed(100 * step + r))
                   for r in range(RANKS)]
        x = batches[rank] if world > 1 else torch.cat(batches)
        loss = (model(x) - 1).square().mean()  # a target away from the start: weights move
        opt.zero_grad()
        loss.backward()
        opt.step()
        requantize_weights_(model)
    weights = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
               for k, v in net.state_dict().items()}
    return {"weights": weights, "report": bias_report(net)}


def main(rank: int, world: int, init_file: str, wrap: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = {r.name: train(r, rank, world, wrap) for r in (Recipe.dojo_lean(), FIXED)}
        torch.save(result, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
