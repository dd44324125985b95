"""The simulator's answer: :class:`SimResult` and its documented JSON object."""

from __future__ import annotations

from dataclasses import dataclass, field

from opendojo.hw.show import fmt


@dataclass(frozen=True)
class SimResult:
    """One simulated training step. Times in s, memory in B per device, power in W, energy in J.

    ``breakdown`` holds the components that add up to ``step_time_s`` (compute, memory, overhead,
    exposed_communication, bubble) plus ``communication``: all communication time, hidden or not.
    """

    workload: str
    system: str
    devices: int
    device: str
    precision: str
    batch: int
    layout: str
    step_time_s: float
    breakdown: dict[str, float]
    communication: dict[str, float]
    achieved_flops: float
    mfu: float
    hfu: float
    memory_per_device_bytes: float
    memory_detail: dict[str, float]
    capacity_per_device_bytes: float
    fits: bool
    power_w: float
    energy_per_step_j: float
    samples_per_s: float
    sample: str
    h100_equivalents: dict[str, object]
    hypothetical: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The ``dojo simulate --json`` object (documented in docs/simulator.md)."""
        return {
            "workload": self.workload, "system": self.system, "devices": self.devices, "device": self.device,
            "precision": self.precision, "batch": self.batch, "sample": self.sample, "layout": self.layout,
            "step_time_s": self.step_time_s,
            "breakdown": {**self.breakdown, "communication": self.communication["total"]},
            "communication": self.communication,
            "achieved_flops": self.achieved_flops, "mfu": self.mfu, "hfu": self.hfu,
            "memory_per_device_bytes": self.memory_per_device_bytes, "memory_detail": self.memory_detail,
            "capacity_per_device_bytes": self.capacity_per_device_bytes, "fits": self.fits,
            "power_w": self.power_w, "energy_per_step_j": self.energy_per_step_j,
            "samples_per_s": self.samples_per_s, "h100_equivalents": self.h100_equivalents,
            "hypothetical": self.hypothetical, "notes": self.notes,
        }

    def summary(self) -> str:
        """A human-readable multi-line report."""
        b = self.breakdown
        lines = [f"{self.workload} on {self.system} ({self.devices} x {self.device}), {self.precision}, "
                 f"batch {self.batch} ({self.sample})"
                 f"{'  [HYPOTHETICAL HARDWARE]' if self.hypothetical else ''}",
                 f"  layout              {self.layout}",
                 f"  step time           {fmt(self.step_time_s, 's')}",
                 "  breakdown           " + ", ".join(f"{k} {fmt(v, 's')}" for k, v in b.items()),
                 f"  communication       {fmt(self.communication['total'], 's')} total, "
                 f"{fmt(self.communication['hidden'], 's')} hidden under backward",
                 f"  achieved            {fmt(self.achieved_flops, 'FLOP/s')}  MFU {100 * self.mfu:.1f} % "
                 f"(hardware FLOPs incl. recompute: {100 * self.hfu:.1f} %)",
                 f"  memory per device   {fmt(self.memory_per_device_bytes, 'B')} of "
                 f"{fmt(self.capacity_per_device_bytes, 'B')}  fits: {'yes' if self.fits else 'NO'}  ("
                 + ", ".join(f"{k} {fmt(v, 'B')}" for k, v in self.memory_detail.items() if v) + ")",
                 f"  power               {fmt(self.power_w, 'W')}, "
                 f"{self.energy_per_step_j / 1e3:.4g} kJ per step",
                 f"  throughput          {self.samples_per_s:.4g} samples/s",
                 f"  H100-equivalents    {self.h100_equivalents['value']:.4g} "
                 f"({self.h100_equivalents['definition']})"]
        for k, v in self.h100_equivalents.get("all", {}).items():
            lines.append(f"      {k:<9} {v['value']:.4g}  {v['definition']}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)
