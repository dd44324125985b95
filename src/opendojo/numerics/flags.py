"""Sticky exception flags (Invalid, Denormal, Overflow, Underflow) kept as element counts."""

from __future__ import annotations

from dataclasses import dataclass, fields

FLAG_NAMES = ("invalid", "denormal", "overflow", "underflow")


@dataclass
class Flags:
    """Counts of elements that raised each flag since the last :meth:`clear`.

    Pass one to ``encode``/``fake_quantize``/the arithmetic to collect them; ``bool(flags.overflow)``
    is the sticky flag of the paper. Semantics (docs/cfloat-spec.md): ``invalid`` a NaN input or a negative
    input to UHP; ``denormal`` an input denormal in its own format or a denormal result; ``overflow`` a
    finite input whose rounded magnitude exceeds max (it saturated); ``underflow`` a nonzero input whose
    result is zero or denormal and inexact.
    """

    invalid: int = 0
    denormal: int = 0
    overflow: int = 0
    underflow: int = 0

    def clear(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in FLAG_NAMES}

    def _accumulate(self, counts: dict[str, int]) -> None:
        for name in FLAG_NAMES:
            setattr(self, name, getattr(self, name) + int(counts.get(name, 0)))

    def __bool__(self) -> bool:
        """True when any flag is raised."""
        return any(getattr(self, name) for name in FLAG_NAMES)
