"""One rank of tests/nn/test_distributed.py, run as ``python _dist_worker.py RANK WORLD INIT WRAP OUT``.

Trains a dojo_lean-converted MLP for 3 steps on rank-specific data under DDP or FSDP2 (gloo, CPU) and
saves the full weights and the bias report to ``OUT.RANK``.
"""

import sys

import torch
import torch.distributed as dist
from torch import nn

from opendojo.nn import Recipe, bias_report, convert, requantize_weights_


def main(rank: int, world: int, init_file: str, wrap: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32),
                            nn.ReLU(), nn.Linear(32, 2))
        convert(net, Recipe.dojo_lean())
        if wrap == "ddp":
            model = nn.parallel.DistributedDataParallel(net)
        else:
            from torch.distributed.fsdp import fully_shard

            for layer in net:
                if isinstance(layer, nn.Linear):
                    fully_shard(layer)
            model = fully_shard(net)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for step in range(3):
            g = torch.Generator().manual_seed(100 * step + rank)  # each rank its own data
            loss = model(torch.randn(16, 8, generator=g)).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            requantize_weights_(model)
        weights = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
                   for k, v in net.state_dict().items()}
        torch.save({"weights": weights, "report": bias_report(net)}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
