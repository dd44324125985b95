"""Does the FSD network learn ego-motion? One short training run, scored beside its baselines (issue 12).

Trains ``configs/tiny.toml`` with the given overrides and prints the held-out metrics next to the
baselines they are judged against, measured in the same run on the same clips: speed MAE vs predicting
the training mean speed (target ratio <= 0.5), ADE vs driving straight on at that speed (<= 0.6), and
occupancy IoU vs calling every cell occupied (target >= 0.22 absolute). Also prints the machine load,
since samples/s on a shared machine says more about the neighbours than about the code.

    .venv/bin/python benchmarks/learning_run.py --out runs/levers-e train.steps=300 loss.speed=0.5
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from opendojo.train import load_config, train

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="run folder (must not hold checkpoints)")
    parser.add_argument("overrides", nargs="*", help="config overrides, table.key=value")
    args = parser.parse_args()
    config = load_config(CONFIG, ["train.checkpoint_every=0", *args.overrides])
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = train(config, args.out, progress=True)
    m = result.final_metrics
    rows = [
        ("speed MAE, m/s", m["speed_mae_mps"], "predict training mean", m["baseline_speed_mae_mps_mean"]),
        ("ADE, m", m["ade_m"], "straight on at training mean", m["baseline_ade_m_mean_speed"]),
        ("ADE, m", m["ade_m"], "straight on at TRUE speed", m["baseline_ade_m_constant_velocity"]),
        ("occupancy IoU", m["occupancy_iou"], "all cells occupied", m["baseline_occupancy_iou_all"]),
    ]
    print(f"\n{'metric':16s} {'network':>9s}  {'baseline':30s} {'value':>8s} {'ratio':>7s}")
    for name, value, base_name, base in rows:
        print(f"{name:16s} {value:9.3f}  {base_name:30s} {base:8.3f} {value / base:7.3f}")
    print(json.dumps({
        "overrides": args.overrides, "steps": result.steps, "wall_s": round(time.perf_counter() - t0),
        "samples_per_s": round(result.samples_per_s, 1), "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
