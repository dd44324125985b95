"""Argument checks, the error a caller's mistake raises, and the exit codes of every ``dojo`` command.

A leaf module (standard library only) beneath every layer, so numerics, data, train, sim and service
all state their checks one way: the message names the argument, the value and what is allowed.
:func:`run_command` is the other half: every ``dojo`` command runs inside it, and whatever escapes the
command becomes one escaped line on stderr and one of the exit codes below.
"""

from __future__ import annotations

import errno
import logging
import math
import numbers
import os
import sys
import traceback
from collections.abc import Callable, Iterable
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


def check_float(
    argument: str, value: object, *, low: float | None = None, high: float | None = None,
    above: float | None = None,
) -> float:
    """``value`` as a finite float within ``[low, high]`` and ``> above`` (each optional); ints pass, bools
    and NaN/Inf are refused."""
    allowed = "a finite number" + (f" > {above} and" if above is not None else "") + _range_text(low, high)
    allowed = allowed.removesuffix(" and")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise UsageError(f"{argument}: got {_show(value)}; allowed: {allowed}")
    value = float(value)
    if (low is not None and value < low) or (high is not None and value > high) or (
        above is not None and value <= above
    ):
        raise UsageError(f"{argument}: got {value}; allowed: {allowed}")
    return value


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


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" in {low}..{high}"
    if low is not None:
        return f" ≥ {low}"
    if high is not None:
        return f" ≤ {high}"
    return ""


# --- failures of a command: one line and an exit code ----------------------------------------------------
def exit_code(error: BaseException) -> int:
    """The exit status a command ends with when ``error`` escapes it: ``EXIT_USAGE`` for a caller's mistake
    (``UsageError`` and every other ``ValueError``), ``EXIT_FAILURE`` for anything that failed at run time
    (I/O errors, DuckDB errors, divergence)."""
    if _is_duckdb_error(error) or isinstance(error, OSError):
        return EXIT_FAILURE
    return EXIT_USAGE if isinstance(error, ValueError) else EXIT_FAILURE


def describe(error: BaseException) -> str:
    """``error`` as one printable line: an OSError names its path and errno, a DuckDB error keeps its first
    line, any other error that is not a ``ValueError`` is prefixed with its type."""
    if isinstance(error, OSError) and error.strerror:
        code = errno.errorcode.get(error.errno or 0, "")
        where = "".join(f" {os.fsdecode(f)!r}" for f in (error.filename, error.filename2) if f is not None)
        text = f"{error.strerror}{f' ({code})' if code else ''}:{where}" if where else error.strerror
    elif _is_duckdb_error(error):
        text = f"DuckDB {type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
    elif isinstance(error, ValueError):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}"
    return printable(" / ".join(line.strip() for line in text.splitlines() if line.strip()))


def run_command(prog: str, call: Callable[[], int | None], *, debug: bool = False) -> int:
    """Run one command; what escapes it becomes one line on stderr (the traceback too with ``debug``) and
    its exit code. Output piped into a closed pipe (``dojo ... | head``) ends quietly, as Unix tools do.
    The project's log records (``logging.getLogger("opendojo...")``) are shown on stderr, escaped."""
    _show_log(prog, debug)
    try:
        return int(call() or 0)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - this is the one place that turns failures into exit codes
        if debug:
            traceback.print_exc()
        hint = "" if debug or isinstance(error, ValueError) else " (--debug shows the traceback)"
        print(f"{prog}: error: {describe(error)}{hint}", file=sys.stderr)
        return exit_code(error)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record arrives (tests swap it), escaping control
    characters: log messages carry paths and names that came from files."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def _show_log(prog: str, debug: bool) -> None:
    log = logging.getLogger("opendojo")
    handler = next((h for h in log.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        log.addHandler(handler)
    handler.setFormatter(logging.Formatter(f"{prog}: %(levelname)s: %(message)s"))
    log.setLevel(logging.DEBUG if debug else logging.INFO)


def _is_duckdb_error(error: BaseException) -> bool:
    # DuckDB is imported only by the commands that use it; a failure elsewhere cannot be one of its errors.
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(error, duckdb.Error)
