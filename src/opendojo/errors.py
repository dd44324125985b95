"""Argument checks, the error a caller's mistake raises, and the exit codes of every ``dojo`` command.

A leaf module (standard library only) beneath every layer, so numerics, data, train, sim and service
all state their checks one way: the message names the argument, the value and what is allowed.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")

# Exit codes, one meaning each, shared by the CLI, the trainer and the service that runs it.
EXIT_OK = 0
EXIT_FAILURE = 1  # the work failed at run time (I/O error, divergence, a dead worker)
EXIT_USAGE = 2  # the caller's mistake: a bad argument, path or config value
# Stopped on request (SIGTERM) after saving a checkpoint; resume with --resume. BSD's EX_TEMPFAIL.
EXIT_PREEMPTED = 75


class UsageError(ValueError):
    """A caller's mistake. The CLI prints it as one line and exits with ``EXIT_USAGE``."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_choice(argument: str, value: T, allowed: Iterable[T]) -> T:
    """``value`` if it is one of ``allowed``; otherwise a UsageError listing them."""
    allowed = tuple(allowed)
    if value not in allowed:
        names = ", ".join(str(a) for a in allowed)
        raise UsageError(f"{argument}: got {_show(value)}; allowed: {names}")
    return value


def check_int(argument: str, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within ``[low, high]`` (either bound optional); bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # numpy ints pass; 3.0 does not
        raise UsageError(f"{argument}: got {_show(value)}; allowed: an integer{_range_text(low, high)}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise UsageError(f"{argument}: got {value}; allowed: an integer{_range_text(low, high)}")
    return value


def check_positive(argument: str, value: object) -> int:
    """``value`` as an int ≥ 1."""
    return check_int(argument, value, low=1)


def check_seed(argument: str, value: object) -> int:
    """A seed: an int in 0 .. 2**63 - 1, the range torch and numpy generators accept."""
    return check_int(argument, value, low=0, high=2**63 - 1)


def printable(text: object) -> str:
    """``text`` safe to print to a terminal: control characters (ANSI escapes, carriage returns, bells)
    and undecodable bytes of file names are shown as escapes instead of being obeyed."""
    out = []
    for ch in str(text):
        if ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return "".join(out)


def _range_text(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" in {low}..{high}"
    if low is not None:
        return f" ≥ {low}"
    if high is not None:
        return f" ≤ {high}"
    return ""
