"""Human-readable description of a part or system: its numbers, their sources, and derived totals."""

from __future__ import annotations

from opendojo.hw.quantity import CONFIDENCES, Quantity
from opendojo.hw.system import ADDITIVE, has, list_systems, load_system, read_part, total

_UNITS = {"FLOP/s": [(1e18, "EFLOP/s"), (1e15, "PFLOP/s"), (1e12, "TFLOP/s"), (1e9, "GFLOP/s")],
          "B": [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")],
          "B/s": [(1e15, "PB/s"), (1e12, "TB/s"), (1e9, "GB/s"), (1e6, "MB/s")],
          "W": [(1e6, "MW"), (1e3, "kW")], "Hz": [(1e9, "GHz"), (1e6, "MHz")],
          "s": [(1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")]}
_FIELD_UNITS = {"peak_flops": "FLOP/s", "bytes": "B", "_bw": "B/s", "power": "W"}


def fmt(value: float, unit: str) -> str:
    """``fmt(9.05e15, "FLOP/s") == "9.05 PFLOP/s"``."""
    for scale, name in _UNITS.get(unit, []):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {name}"
    return f"{value:.3g} {unit}".strip()


def _unit_of(field: str) -> str:
    return next((u for k, u in _FIELD_UNITS.items() if k in field), "")


def _line(field: str, q: Quantity) -> str:
    rng = f"  range {fmt(q.low, q.unit)} .. {fmt(q.high, q.unit)}" if q.is_range else ""
    return f"    {field:<22} {fmt(q.value, q.unit):>16}  [{q.confidence}]{rng}  {q.source}"


def describe(name: str) -> str:
    """A multi-line description of part or system ``name``: the tree, each number's source, totals."""
    lines: list[str] = []
    _describe_tree(name, 1, lines, set())
    lines.append("  derived totals (summed over parts, never typed):")
    for f in ADDITIVE:
        if has(name, f):
            lines.append(f"    {f:<22} {fmt(total(name, f), _unit_of(f)):>16}")
    if name in list_systems():
        s = load_system(name)
        d = s.device
        lines.append(f"  as a simulator system ({s.family}{', HYPOTHETICAL' if s.hypothetical else ''}):")
        lines.append(f"    devices                {s.devices} x {d.name}")
        lines.append("    peak per device        " + ", ".join(f"{p} {fmt(v, 'FLOP/s')}"
                                                           for p, v in d.peak_flops.items()))
        lines.append(f"    device memory          {fmt(d.mem_bytes, 'B')} at {fmt(d.mem_bw, 'B/s')}")
        if d.spill_bytes:
            lines.append(f"    spill memory (HBM)     {fmt(d.spill_bytes, 'B')} at {fmt(d.spill_bw, 'B/s')}")
        if s.topology == "mesh2d":
            lines.append(f"    tile mesh              {s.mesh_shape[0]} x {s.mesh_shape[1]}, "
                         f"{fmt(s.link_bw, 'B/s')} per edge and direction")
        if s.topology == "nvlink+ib":
            lines.append(f"    NVLink domain          {s.scale_up_size} GPUs, "
                         f"{fmt(s.scale_up_bw, 'B/s')} per GPU; "
                         f"InfiniBand {fmt(s.scale_out_bw, 'B/s')} per GPU")
        lines.append(f"    power                  {fmt(s.power_w, 'W')} ({fmt(d.power_w, 'W')} per device)")
    lines.append("  confidence: " + ", ".join(f"{k} {v}" for k, v in CONFIDENCES.items()))
    return "\n".join(lines)


def _describe_tree(name: str, depth: int, lines: list[str], seen: set[str]) -> None:
    part = read_part(name)
    pad = "  " * (depth - 1)
    flag = "  [HYPOTHETICAL]" if part.hypothetical else ""
    lines.append(f"{pad}{part.name} ({part.kind}){flag}: {part.description}")
    if name in seen:
        return
    seen.add(name)
    for field, q in part.quantities.items():
        lines.append(pad + _line(field, q))
    for key, v in (part.system or {}).items():
        text = _line(f"system.{key}", v) if isinstance(v, Quantity) else f"    system.{key:<15} {v}"
        lines.append(pad + text)
    for child, count in part.parts.items():
        lines.append(f"{pad}  {count} x")
        _describe_tree(child, depth + 1, lines, seen)
