"""A published (or measured, or assumed) number with its source and confidence.

Every number in ``hw/specs/*.toml`` is written as an inline table::

    peak_flops_bf16 = { value = 1.024e12, unit = "FLOP/s", source = "Hot Chips 34", confidence = "P" }

Confidence letters (docs/hardware.md): ``P`` primary (vendor / Tesla talk or paper), ``S`` good secondary,
``D`` derived here by arithmetic or measured on this machine, ``U`` uncertain — a ``U`` number must carry a
``range = [low, high]`` so that the simulator can sweep it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

CONFIDENCES = {"P": "primary", "S": "secondary", "D": "derived/measured", "U": "uncertain"}


@dataclass(frozen=True)
class Quantity:
    """One number: ``value`` in ``unit``, where it comes from and how sure we are of it."""

    value: float
    unit: str = ""
    source: str = ""
    confidence: str = "D"
    low: float | None = None
    high: float | None = None

    @property
    def is_range(self) -> bool:
        return self.low is not None and self.high is not None

    def scaled(self, factor: float, source: str | None = None) -> Quantity:
        """The same quantity multiplied by ``factor`` (ranges scale too)."""
        return replace(
            self,
            value=self.value * factor,
            low=None if self.low is None else self.low * factor,
            high=None if self.high is None else self.high * factor,
            source=self.source if source is None else source,
        )

    def at(self, value: float) -> Quantity:
        """This quantity with another value inside its range (a sweep point)."""
        return replace(self, value=float(value))


def parse_quantity(raw: object, *, where: str, field: str) -> Quantity:
    """Parse one inline table from a spec file; errors name the file and the field."""
    if isinstance(raw, bool) or not isinstance(raw, (dict, int, float)):
        raise ValueError(f"{where}: field {field!r} must be a number table {{value=..., source=..., "
                         f"confidence=...}}, got {raw!r}")
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: field {field!r} = {raw!r} has no source and confidence; "
                         f"write {{ value = {raw!r}, source = \"...\", confidence = \"P|S|D|U\" }}")
    for key in ("value", "source", "confidence"):
        if key not in raw:
            raise ValueError(f"{where}: field {field!r} is missing {key!r}")
    value = raw["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: field {field!r} value must be a number, got {value!r}")
    if value < 0:
        raise ValueError(f"{where}: field {field!r} is negative ({value}); hardware quantities are >= 0")
    conf = raw["confidence"]
    if conf not in CONFIDENCES:
        raise ValueError(f"{where}: field {field!r} confidence {conf!r} is not one of {sorted(CONFIDENCES)}")
    low = high = None
    if "range" in raw:
        rng = raw["range"]
        if (not isinstance(rng, list) or len(rng) != 2
                or not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in rng)):
            raise ValueError(f"{where}: field {field!r} range must be [low, high], got {rng!r}")
        low, high = float(rng[0]), float(rng[1])
        if low < 0 or not low <= value <= high:
            raise ValueError(f"{where}: field {field!r} range [{low}, {high}] must be >= 0 and contain "
                             f"the value {value}")
    elif conf == "U":
        raise ValueError(f"{where}: field {field!r} is uncertain (confidence U) but has no "
                         "range = [low, high]")
    unknown = set(raw) - {"value", "source", "confidence", "range", "unit", "note"}
    if unknown:
        raise ValueError(f"{where}: field {field!r} has unknown keys {sorted(unknown)}")
    return Quantity(float(value), str(raw.get("unit", "")), str(raw["source"]), conf, low, high)
