"""Training configuration: TOML in, a frozen, validated dataclass out, before anything runs.

A config file has four tables, ``[model]``, ``[data]``, ``[train]`` and ``[loss]``; every key is optional
(defaults below) and every key is checked: an unknown key, a wrong type or an impossible value raises a
``ValueError`` naming the key and what is allowed. Overrides (``--set train.lr=3e-4``) use the same
dotted names and the same checks; their values are read as TOML values, and a bare word is a string.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PRECISIONS",
    "Config",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "TrainConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
]

#: Numeric recipes the trainer knows: plain FP32, BF16 autocast, and the CFloat recipes of ``opendojo.nn``.
PRECISIONS = ("fp32", "bf16", "dojo", "dojo_lean")
DEVICES = ("auto", "cpu", "cuda")


def _check(
    min: float | None = None,
    max: float | None = None,
    choices: tuple | None = None,
    above: float | None = None,
) -> dict:
    return {"min": min, "max": max, "choices": choices, "above": above}


@dataclass(frozen=True)
class ModelConfig:
    """Which network: a preset of :mod:`opendojo.models.fsd`. Camera count, frames, image size,
    occupancy grid and trajectory horizon come from the data, so they are not set here."""

    preset: str = field(default="tiny", metadata=_check(choices=("tiny", "base", "large")))
    dim: int = field(default=0, metadata=_check(min=0))  # 0 = the preset's width


@dataclass(frozen=True)
class DataConfig:
    """Where clips come from. ``source = "synthetic"`` generates the embedded procedural driving data on
    first use into ``cache_dir`` (default ``$OPENDOJO_CACHE`` or ``~/.cache/opendojo``); any other value is
    the path of a dataset ingested by ``opendojo.data``."""

    source: str = "synthetic"
    cache_dir: str = ""
    synthetic_clips: int = field(default=48, metadata=_check(min=2))
    synthetic_frames: int = field(default=32, metadata=_check(min=1))
    cameras: int = field(default=3, metadata=_check(min=1))
    frames_per_clip: int = field(default=4, metadata=_check(min=1))
    image_size: int = field(default=64, metadata=_check(min=8))
    seed: int = field(default=0, metadata=_check(min=0))
    num_workers: int = field(default=0, metadata=_check(min=0))


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation: AdamW, linear warm-up then cosine decay to ``min_lr``, global-norm clipping.
    ``batch_size`` is the global batch (split evenly over ranks). Steps count optimizer updates."""

    steps: int = field(default=300, metadata=_check(min=1))
    batch_size: int = field(default=8, metadata=_check(min=1))
    lr: float = field(default=2e-3, metadata=_check(above=0.0))
    min_lr: float = field(default=1e-4, metadata=_check(min=0.0))
    warmup_steps: int = field(default=20, metadata=_check(min=0))
    weight_decay: float = field(default=0.05, metadata=_check(min=0.0))
    beta1: float = field(default=0.9, metadata=_check(min=0.0, max=0.999999))
    beta2: float = field(default=0.95, metadata=_check(min=0.0, max=0.999999))
    grad_clip: float = field(default=1.0, metadata=_check(min=0.0))  # 0 disables clipping
    seed: int = field(default=0, metadata=_check(min=0))
    precision: str = field(default="fp32", metadata=_check(choices=PRECISIONS))
    device: str = field(default="auto", metadata=_check(choices=DEVICES))
    fsdp: bool = False
    log_every: int = field(default=10, metadata=_check(min=1))
    eval_every: int = field(default=100, metadata=_check(min=0))  # 0: only at the end
    eval_batches: int = field(default=4, metadata=_check(min=1))
    checkpoint_every: int = field(default=100, metadata=_check(min=0))  # 0: only at the end
    keep_checkpoints: int = field(default=3, metadata=_check(min=1))
    threads: int = field(default=0, metadata=_check(min=0))  # CPU threads per rank; 0 = torch's default


@dataclass(frozen=True)
class LossConfig:
    """Weights of the task losses in the total (occupancy BCE, trajectory L1 in metres, speed L1 in m/s,
    steering L1 in radians), and the weight of an occupied cell in the occupancy BCE."""

    occupancy: float = field(default=1.0, metadata=_check(min=0.0))
    trajectory: float = field(default=0.2, metadata=_check(min=0.0))
    speed: float = field(default=0.1, metadata=_check(min=0.0))
    steering: float = field(default=1.0, metadata=_check(min=0.0))
    occupancy_pos_weight: float = field(default=10.0, metadata=_check(above=0.0))


@dataclass(frozen=True)
class Config:
    """A whole training run's configuration."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    loss: LossConfig = LossConfig()

    def __post_init__(self) -> None:
        if self.train.min_lr > self.train.lr:
            raise ValueError(
                f"config key train.min_lr={self.train.min_lr} must be <= train.lr={self.train.lr}"
            )


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}
_SECTION_TYPES = typing.get_type_hints(Config)


def _type_name(tp: type) -> str:
    return {bool: "bool (true/false)", int: "int", float: "float", str: "string"}[tp]


def _coerce(key: str, value: Any, tp: type, meta: dict) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise ValueError(
            f"config key {key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})"
        )
    if tp is float and not math.isfinite(value):
        raise ValueError(f"config key {key}: must be a finite float, got {value!r}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ValueError(f"config key {key}: {value!r} is not allowed; allowed: {', '.join(choices)}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ValueError(f"config key {key}: {value!r} is not allowed; must be >= {meta['min']}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ValueError(f"config key {key}: {value!r} is not allowed; must be <= {meta['max']}")
    if meta.get("above") is not None and value <= meta["above"]:
        raise ValueError(f"config key {key}: {value!r} is not allowed; must be > {meta['above']}")
    return value


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Validate a nested dict (as read from TOML) into a :class:`Config`."""
    if not isinstance(raw, dict):
        raise TypeError(f"config must be a table (dict), got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ValueError(f"unknown config table(s) {unknown}; allowed tables: {', '.join(_SECTIONS)}")
    sections = {}
    for name, section_type in _SECTION_TYPES.items():
        values = raw.get(name, {})
        if not isinstance(values, dict):
            raise ValueError(f"config key {name}: expected a table, got {values!r}")
        hints = typing.get_type_hints(section_type)
        fields = {f.name: f for f in dataclasses.fields(section_type)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(
                f"unknown config key(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
                f"allowed in [{name}]: {', '.join(fields)}"
            )
        checked = {
            k: _coerce(f"{name}.{k}", v, hints[k], dict(fields[k].metadata)) for k, v in values.items()
        }
        sections[name] = section_type(**checked)
    return Config(**sections)


def config_to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """The nested-dict (TOML/JSON-able) form of a config; ``config_from_dict`` inverts it."""
    return dataclasses.asdict(config)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like table.key=value (e.g. train.lr=3e-4)")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"override key {key!r} must be table.key, with table one of {', '.join(_SECTIONS)}")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare word, e.g. train.precision=dojo
    return parts, value


def load_config(
    path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> Config:
    """Read a TOML config (or the defaults when ``path`` is None) and apply overrides.

    ``overrides`` is a list of ``"table.key=value"`` strings or a dict ``{"table.key": value}``.
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for anything invalid.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    items = (
        overrides.items() if isinstance(overrides, dict) else [_parse_override(o) for o in overrides or []]
    )
    for key, value in items:
        table, name = key.split(".") if isinstance(key, str) else key
        raw.setdefault(table, {})
        if not isinstance(raw[table], dict):
            raise ValueError(f"config key {table}: expected a table, got {raw[table]!r}")
        raw[table][name] = value
    return config_from_dict(raw)
