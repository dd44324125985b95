"""The rounding modes of CFloat conversion: one vocabulary for the kernels, the recipes and the CLI.

A :class:`RoundMode` is a ``str`` enum (like gfloat's ``RoundMode``), so ``"nearest"`` and
``RoundMode.NEAREST`` are interchangeable wherever a mode is accepted. docs/cfloat-spec.md states
what each mode does to the bits.
"""

from __future__ import annotations

import enum

from opendojo.errors import check_choice


class RoundMode(enum.StrEnum):
    """How a value between two neighbouring codes picks one of them."""

    NEAREST = "nearest"  # the nearer code; a tie goes to the code with an even mantissa
    STOCHASTIC = "stochastic"  # up with probability (distance to the lower code) / (code spacing)
    TOWARD_ZERO = "toward_zero"  # the code of smaller magnitude (truncation)


#: The mode names, in declaration order (for argparse choices and error messages).
ROUNDINGS: tuple[str, ...] = tuple(mode.value for mode in RoundMode)


def check_rounding(value: object, argument: str = "rounding") -> RoundMode:
    """``value`` (a name or a :class:`RoundMode`) as a RoundMode; a UsageError listing the modes otherwise."""
    return RoundMode(check_choice(argument, value, ROUNDINGS))
