"""Accuracy of the simulator: runs `dojo simulate validate` (host in-sample models and 11 held-out models on
one thread, published GPU runs in-sample and held-out, the Dojo consistency check) and prints the error
table with date and machine. A few minutes; `--no-host` skips the host sections.

    .venv/bin/python benchmarks/sim_validate.py [--no-host] [--seed 2026]
"""

from __future__ import annotations

import datetime
import os
import platform
import sys

import torch


def _seed() -> int:
    return int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 2026


def main() -> int:
    from opendojo.sim.validate import format_table, validate

    torch.set_num_threads(1)  # as the command's default: CPU-time measurements on a shared machine
    print(f"# sim_validate  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}  "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}  "
          f"torch {torch.__version__} (1 thread)\n")
    host = "--no-host" not in sys.argv  # skips both host sections (in-sample and held-out)
    print(format_table(validate(host=host, progress=False, held_out=11 if host else 0, seed=_seed())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
