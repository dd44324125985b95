"""Stage bookkeeping for ``dojo demo``: settings pinned per output folder, stages that resume.

Decision (issue 7): re-running into the same folder *resumes*. The folder's ``demo.json`` pins the settings
that shape the results; each finished stage leaves ``stages/<name>.json`` with its outputs. A re-run with the
same settings skips the finished stages and redoes the rest; a re-run with other settings is refused, naming
each setting that differs, so two runs are never mixed in one report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from opendojo.report import write_atomic


class DemoFolderError(RuntimeError):
    """The output folder holds another run's results (or something that is not a demo run)."""


@dataclass(frozen=True)
class DemoSettings:
    """Everything that shapes the demo's results. ``minutes`` is the wall-time budget on this machine."""

    seed: int = 0
    minutes: float = 8.0
    clips: int = 192
    cameras: int = 3
    clip_frames: int = 8
    frames_per_clip: int = 4
    image_size: int = 64
    steps: int | None = None  # training steps per run; None: derived from ``minutes``
    simulate_model: str = "fsd-base"

    def __post_init__(self) -> None:
        if not (isinstance(self.minutes, int | float) and 0 < self.minutes <= 600):
            raise ValueError(f"minutes must be in (0, 600], got {self.minutes!r}")
        for name in ("clips", "cameras", "clip_frames", "frames_per_clip", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps must be a positive integer or None, got {self.steps!r}")
        if self.frames_per_clip > self.clip_frames:
            raise ValueError(
                f"frames_per_clip ({self.frames_per_clip}) must be <= clip_frames ({self.clip_frames})"
            )


class DemoFolder:
    """An output folder bound to one set of settings; stages record their results in it."""

    def __init__(self, root: str | Path, settings: DemoSettings):
        self.root = Path(root)
        self.settings = settings
        pinned = self.root / "demo.json"
        if pinned.exists():
            try:
                previous = json.loads(pinned.read_text())["settings"]
            except (ValueError, KeyError, TypeError) as e:
                raise DemoFolderError(
                    f"{pinned} is not a demo settings file ({e}); choose another --out"
                ) from e
            current = asdict(settings)
            diff = [f"{k}: {previous.get(k)!r} -> {v!r}" for k, v in current.items() if previous.get(k) != v]
            if diff:
                raise DemoFolderError(
                    f"{self.root} holds a demo run with other settings ({'; '.join(diff)}). "
                    "Re-running resumes only with the same settings: pass another --out or delete the folder."
                )
        elif self.root.exists() and any(self.root.iterdir()):
            raise DemoFolderError(
                f"{self.root} exists and is not a demo folder; choose an empty or new --out"
            )
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(pinned, json.dumps({"settings": asdict(settings)}, indent=2))

    def stage_path(self, name: str) -> Path:
        return self.root / "stages" / f"{name}.json"

    def done(self, name: str) -> dict[str, Any] | None:
        path = self.stage_path(name)
        return json.loads(path.read_text()) if path.exists() else None

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run a stage unless a previous run of this folder finished it; record its outputs and time."""
        previous = self.done(name)
        if previous is not None:
            previous["resumed"] = True
            return previous
        start = time.perf_counter()
        result = fn()
        result = {**result, "wall_s": time.perf_counter() - start}
        write_atomic(self.stage_path(name), json.dumps(result, indent=2, default=json_value))
        return result


def json_value(value: Any) -> Any:
    """``json.dumps(default=...)`` for the demo's records: paths as strings, numpy values as Python ones."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a demo record")
