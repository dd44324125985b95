"""Accuracy of the simulator: runs `dojo simulate validate` (host measurements on one thread, published GPU
runs, Dojo figures) and prints the error table with date and machine. About a minute.

    .venv/bin/python benchmarks/sim_validate.py [--no-host]
"""

from __future__ import annotations

import datetime
import os
import platform
import sys

import torch


def main() -> int:
    from opendojo.sim.validate import format_table, validate

    torch.set_num_threads(1)  # as the command's default: CPU-time measurements on a shared machine
    print(f"# sim_validate  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}  "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}  "
          f"torch {torch.__version__} (1 thread)\n")
    print(format_table(validate(host="--no-host" not in sys.argv, progress=False)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
