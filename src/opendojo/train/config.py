"""Training configuration: TOML in, a frozen, validated dataclass out, before anything runs.

A config file has four tables, ``[model]``, ``[data]``, ``[train]`` and ``[loss]``; every key is optional
(defaults below) and every key is checked: an unknown key, a wrong type or an impossible value raises
``opendojo.errors.UsageError`` (a ValueError) naming the key, the value and what is allowed. Overrides
(``--set train.lr=3e-4``) use the same dotted names and the same checks; their values are read as TOML
values, and a bare word is a string.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from opendojo.errors import UsageError, check_choice, check_float, check_int, check_seed
from opendojo.hw.system import RECIPE_PRECISION

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

#: The numeric recipes of training: plain FP32, BF16 autocast, and the CFloat recipes of ``opendojo.nn``
#: (``dojo`` with FP32 master weights, ``dojo_lean`` without). Named once, with the precision the
#: simulator prices each at, in ``hw.system.RECIPE_PRECISION``.
PRECISIONS = tuple(RECIPE_PRECISION)
DEVICES = ("auto", "cpu", "cuda")


def _ints(low: int | None = None, high: int | None = None) -> dict:
    return {"check": partial(check_int, low=low, high=high)}


def _floats(low: float | None = None, high: float | None = None, above: float | None = None) -> dict:
    return {"check": partial(check_float, low=low, high=high, above=above)}


def _one_of(choices: tuple[str, ...]) -> dict:
    return {"check": lambda argument, value: check_choice(argument, value, choices)}


def _preset(argument: str, value: str) -> str:
    from opendojo.models import PRESETS  # imports torch: only when a config is checked

    return check_choice(argument, value, tuple(PRESETS))


_SEED = {"check": check_seed}


@dataclass(frozen=True)
class ModelConfig:
    """Which network: a preset of :mod:`opendojo.models.fsd`. Camera count, frames, image size,
    occupancy grid and trajectory horizon come from the data, so they are not set here."""

    preset: str = field(default="tiny", metadata={"check": _preset})
    dim: int = field(default=0, metadata=_ints(low=0))  # 0 = the preset's width


@dataclass(frozen=True)
class DataConfig:
    """Where clips come from. ``source = "synthetic"`` generates the embedded procedural driving data on
    first use into ``cache_dir`` (default ``$OPENDOJO_CACHE`` or ``~/.cache/opendojo``); any other value is
    the path of a dataset ingested by ``opendojo.data``."""

    source: str = "synthetic"
    cache_dir: str = ""
    synthetic_clips: int = field(default=48, metadata=_ints(low=2))
    synthetic_frames: int = field(default=32, metadata=_ints(low=1))
    cameras: int = field(default=3, metadata=_ints(low=1))
    frames_per_clip: int = field(default=4, metadata=_ints(low=1))
    image_size: int = field(default=64, metadata=_ints(low=8))
    seed: int = field(default=0, metadata=_SEED)
    num_workers: int = field(default=0, metadata=_ints(low=0))


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation: AdamW, linear warm-up then cosine decay to ``min_lr``, global-norm clipping.
    ``batch_size`` is the global batch (split evenly over ranks). Steps count optimizer updates."""

    steps: int = field(default=300, metadata=_ints(low=1))
    batch_size: int = field(default=8, metadata=_ints(low=1))
    # AdamW's first step is lr / (1 - beta1); with beta1 up to 0.999999 it must still fit a float32 (3.4e38).
    lr: float = field(default=2e-3, metadata=_floats(above=0.0, high=1e30))
    min_lr: float = field(default=1e-4, metadata=_floats(low=0.0))
    warmup_steps: int = field(default=20, metadata=_ints(low=0))
    weight_decay: float = field(default=0.05, metadata=_floats(low=0.0))
    beta1: float = field(default=0.9, metadata=_floats(low=0.0, high=0.999999))
    beta2: float = field(default=0.95, metadata=_floats(low=0.0, high=0.999999))
    grad_clip: float = field(default=1.0, metadata=_floats(low=0.0))  # 0 disables clipping
    seed: int = field(default=0, metadata=_SEED)
    precision: str = field(default="fp32", metadata=_one_of(PRECISIONS))
    device: str = field(default="auto", metadata=_one_of(DEVICES))
    fsdp: bool = False
    log_every: int = field(default=10, metadata=_ints(low=1))
    eval_every: int = field(default=100, metadata=_ints(low=0))  # 0: only at the end
    eval_batches: int = field(default=4, metadata=_ints(low=1))
    checkpoint_every: int = field(default=100, metadata=_ints(low=0))  # 0: only at the end
    keep_checkpoints: int = field(default=3, metadata=_ints(low=1))
    threads: int = field(default=0, metadata=_ints(low=0))  # CPU threads per rank; 0 = torch's default


@dataclass(frozen=True)
class LossConfig:
    """Weights of the task losses in the total (occupancy BCE, trajectory L1 in metres, speed L1 in m/s,
    steering L1 in radians), the weight of an occupied cell in the occupancy BCE, and the weight of the
    soft-IoU term added to the occupancy loss (0: BCE alone)."""

    occupancy: float = field(default=1.0, metadata=_floats(low=0.0))
    trajectory: float = field(default=0.2, metadata=_floats(low=0.0))
    speed: float = field(default=0.1, metadata=_floats(low=0.0))
    steering: float = field(default=1.0, metadata=_floats(low=0.0))
    occupancy_pos_weight: float = field(default=2.0, metadata=_floats(above=0.0))  # docs/training.md
    occupancy_soft_iou: float = field(default=0.0, metadata=_floats(low=0.0))


@dataclass(frozen=True)
class Config:
    """A whole training run's configuration."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    loss: LossConfig = LossConfig()

    def __post_init__(self) -> None:
        if self.train.min_lr > self.train.lr:
            raise UsageError(
                f"config key train.min_lr: got {self.train.min_lr}; allowed: at most train.lr={self.train.lr}"
            )


_SECTION_TYPES = typing.get_type_hints(Config)
_TYPE_NAMES = {bool: "true or false", str: "a string"}


def _coerce(key: str, value: Any, tp: type, meta: dict) -> Any:
    """``value`` of config key ``key`` checked against its type and its field's ``check``."""
    argument = f"config key {key}"
    if tp in _TYPE_NAMES and not isinstance(value, tp):
        raise UsageError(f"{argument}: got {value!r}; allowed: {_TYPE_NAMES[tp]}")
    check: Callable[[str, Any], Any] | None = meta.get("check")
    return check(argument, value) if check else value


def _section(name: str, section_type: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise UsageError(f"config key {name}: got {values!r}; allowed: a table")
    hints = typing.get_type_hints(section_type)
    fields = {f.name: f for f in dataclasses.fields(section_type)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UsageError(
            f"unknown config key(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
            f"allowed in [{name}]: {', '.join(fields)}"
        )
    checked = {k: _coerce(f"{name}.{k}", v, hints[k], dict(fields[k].metadata)) for k, v in values.items()}
    return section_type(**checked)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Validate a nested dict (as read from TOML) into a :class:`Config`; a bad value raises
    :class:`opendojo.errors.UsageError` naming the key, the value and what is allowed."""
    if not isinstance(raw, dict):
        raise UsageError(f"config: got {type(raw).__name__}; allowed: a table (dict)")
    unknown = sorted(set(raw) - set(_SECTION_TYPES))
    if unknown:
        raise UsageError(f"unknown config table(s) {unknown}; allowed tables: {', '.join(_SECTION_TYPES)}")
    return Config(**{name: _section(name, tp, raw.get(name, {})) for name, tp in _SECTION_TYPES.items()})


def config_to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """The nested-dict (TOML/JSON-able) form of a config; ``config_from_dict`` inverts it."""
    return dataclasses.asdict(config)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise UsageError(f"--set: got {item!r}; allowed: table.key=value (e.g. train.lr=3e-4)")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        tables = ", ".join(_SECTION_TYPES)
        raise UsageError(f"--set: got key {key!r}; allowed: table.key, the table one of {tables}")
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
    Raises :class:`opendojo.errors.UsageError` (a ValueError) for a missing file or anything invalid, and
    ``OSError`` (naming the path) for a file that exists but cannot be read.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"--config: got {str(path)!r}; allowed: a TOML file (it does not exist)")
        try:
            raw = tomllib.loads(path.read_bytes().decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    items = (
        overrides.items() if isinstance(overrides, dict) else [_parse_override(o) for o in overrides or []]
    )
    for key, value in items:
        table, name = key.split(".") if isinstance(key, str) else key
        raw.setdefault(table, {})
        if not isinstance(raw[table], dict):
            raise UsageError(f"config key {table}: got {raw[table]!r}; allowed: a table")
        raw[table][name] = value
    return config_from_dict(raw)
