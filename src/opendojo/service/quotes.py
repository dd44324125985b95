"""Quotes and metering in Dojo terms, from the simulator (``opendojo.sim``) and a price table (data).

A quote predicts one job on one system: the step time, the total time, device-hours (tile-hours on
Dojo, GPU-hours on GPU systems), H100-equivalent-hours and a price. The job is a data-parallel run of
its global batch, so it uses the largest number of the system's devices that divides the batch.
The simulator models the FSD preset's standard shape (``fsd-<preset>``), not the job's exact data shape.
Metering prices the work a job did as simulated seconds on one Dojo training tile.
"""

from __future__ import annotations

import functools
import math
import tomllib
from pathlib import Path

from opendojo.errors import UsageError
from opendojo.hw.system import RECIPE_PRECISION

PRICES = Path(__file__).parent / "prices.toml"
METERING_SYSTEM = "dojo-tile"  # one training tile: metered usage is in tile-hours
DEFAULT_SYSTEMS = ("dojo-exapod", "h100-cluster-1k")
H100_EQ_KIND = "delivered"  # the simulator's H100-equivalent definition quotes use (named in each quote)


@functools.cache
def prices() -> dict[str, dict]:
    """The price table: system → {usd_per_hour, source, assumption}."""
    return tomllib.loads(PRICES.read_text())["systems"]


def _devices_used(system_devices: int, batch: int) -> int:
    return max(d for d in range(1, min(system_devices, batch) + 1) if batch % d == 0)


@functools.cache
def _simulated(preset: str, system: str, batch: int, precision: str, nodes: int):
    from opendojo.sim import simulate

    return simulate(f"fsd-{preset}", system, nodes=nodes, batch=batch, precision=precision,
                    h100_eq=H100_EQ_KIND)


def quote_one(preset: str, batch: int, precision: str, steps: int, system: str) -> dict:
    """A quote for ``steps`` steps of ``fsd-<preset>`` at global ``batch`` on ``system`` (times in s)."""
    from opendojo.hw import list_systems, load_system

    if system not in list_systems():
        raise UsageError(f"systems: got {system!r}; allowed: {', '.join(list_systems())}")
    full = load_system(system)
    nodes = _devices_used(full.devices, batch)
    r = _simulated(preset, system, batch, RECIPE_PRECISION[precision], nodes)
    total_s = steps * r.step_time_s
    hours = total_s / 3600
    eq = r.h100_equivalents
    price = prices().get(system)
    return {
        "system": system, "devices": nodes, "device": r.device, "layout": r.layout,
        "step_time_s": r.step_time_s, "total_s": total_s,
        "device_hours": nodes * hours,
        "device_hours_unit": "tile-hours" if "tile" in r.device else f"{r.device}-hours",
        "h100_equivalent_hours": eq["value"] * hours if math.isfinite(eq["value"]) else None,
        "h100_equivalent_definition": eq["definition"],
        "price_usd": price["usd_per_hour"] * hours * nodes / full.devices if price else None,
        "price_source": price["source"] if price else "no price in the table for this system",
        "price_is_assumption": bool(price["assumption"]) if price else None,
    }


def tile_step_seconds(preset: str, batch: int, precision: str) -> float:
    """Simulated seconds of one training step on one Dojo training tile (the metering unit)."""
    return _simulated(preset, METERING_SYSTEM, batch, RECIPE_PRECISION[precision], 1).step_time_s
