"""A job submission: the JSON body of ``POST /v1/jobs`` checked field by field, before anything is stored.

The config is checked by the trainer's own validation (``opendojo.train.config``), so a job the service
accepts is a config ``dojo train`` accepts. A job reads only data the service offers: ``synthetic`` or a
dataset the admin registered by name; the service, not the client, chooses every server path.
"""

from __future__ import annotations

import json
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from opendojo.errors import UsageError, check_choice, check_int, check_positive, printable

MAX_BODY_BYTES = 1 << 20  # 1 MiB: far above any config, far below what could hurt the server
FIELDS = ("config", "overrides", "precision", "steps", "priority", "name")
SYNTHETIC = "synthetic"


class FieldError(UsageError):
    """A bad field of a request body: answered 400 with ``{"field": ..., "error": ...}``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body, or a FieldError naming ``body``."""
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FieldError("body", f"body: not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise FieldError("body", f"body: expected a JSON object, got {type(value).__name__}")
    return value


def _field(name: str, check):
    """``check()``, its UsageError re-raised as a FieldError naming ``name``."""
    try:
        return check()
    except UsageError as e:
        raise FieldError(name, str(e)) from None


def _text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise FieldError(name, f"{name}: expected a string of at most {limit} characters")
    return value


def _overrides(value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > 100:
        raise FieldError("overrides", "overrides: expected a list of at most 100 \"table.key=value\" strings")
    return [_text("overrides", v, 1000) for v in value]


def load_job_config(config_toml: str, overrides: list[str]):
    """The trainer's validated Config for a submitted TOML text plus overrides (FieldError if invalid)."""
    from opendojo.train.config import load_config

    try:
        tomllib.loads(config_toml)
    except tomllib.TOMLDecodeError as e:
        raise FieldError("config", f"config: not valid TOML: {e}") from None
    with tempfile.TemporaryDirectory() as tmp:  # the trainer reads configs from files
        path = Path(tmp) / "config.toml"
        path.write_text(config_toml)
        try:
            return load_config(path, overrides)
        except (ValueError, TypeError) as e:
            raise FieldError("config", f"config: {e}") from None


def check_submission(raw: dict[str, Any], max_priority: int, datasets: dict[str, str]) -> tuple[dict, Any]:
    """The store values and the trainer Config of a valid submission; a FieldError naming the first bad
    field otherwise."""
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise FieldError(unknown[0], f"{unknown[0]}: unknown field; allowed: {', '.join(FIELDS)}")
    if "config" not in raw:
        raise FieldError("config", "config: required (the TOML text of a dojo train config)")
    from opendojo.train.config import PRECISIONS

    config_toml = _text("config", raw["config"], MAX_BODY_BYTES)
    overrides = _overrides(raw.get("overrides", []))
    if raw.get("steps") is not None:
        overrides.append(f"train.steps={_field('steps', lambda: check_positive('steps', raw['steps']))}")
    if raw.get("precision") is not None:
        precision = _field("precision", lambda: check_choice("precision", raw["precision"], PRECISIONS))
        overrides.append(f"train.precision={precision}")
    priority = _field(
        "priority", lambda: check_int("priority", raw.get("priority", 0), low=0, high=max_priority))
    name = printable(_text("name", raw.get("name", ""), 128))
    config = load_job_config(config_toml, overrides)
    if config.data.cache_dir:
        raise FieldError("config", "config: data.cache_dir is chosen by the service; leave it unset")
    allowed = (SYNTHETIC, *sorted(datasets))
    _field("config", lambda: check_choice("config: data.source", config.data.source, allowed))
    return {"name": name or f"fsd-{config.model.preset}", "priority": priority, "steps": config.train.steps,
            "precision": config.train.precision, "config_toml": config_toml,
            "overrides": json.dumps(overrides)}, config
