"""Process identity on Linux: a pid plus its start time, so a recycled pid is never mistaken for ours."""

from __future__ import annotations

from pathlib import Path


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/PID/stat`` field 22), None if gone
    or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_alive(pid: int, start_ticks: int) -> bool:
    """Whether the process that started at ``start_ticks`` with ``pid`` is still running."""
    return process_start_ticks(pid) == start_ticks
