"""The numeric recipe of a run: ``fp32``, ``bf16`` (autocast) or the CFloat recipes of ``opendojo.nn``.

``dojo`` and ``dojo_lean`` convert the model's Linear/Conv layers with ``opendojo.nn.convert`` (first and
last layer kept in FP32, as FP8 recipes do); their bias-policy state lives in module buffers, so it is
saved and restored with the weights. ``dojo_lean`` keeps no FP32 master copy: after every optimizer step
the weights are rounded back to CFloat16 (``requantize_weights_``). On a GPU with FP8 tensor cores the
converted layers use them by themselves (``opendojo.nn``'s FP8 matmul route).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Precision", "apply_precision"]


@dataclass
class Precision:
    """What the loop needs from a recipe: a forward context, a post-step hook and a numerics report."""

    name: str
    autocast: Callable[[], contextlib.AbstractContextManager]
    after_step: Callable[[nn.Module], None]
    report: Callable[[nn.Module], dict]


def _no_report(model: nn.Module) -> dict:
    return {}


def apply_precision(model: nn.Module, name: str, device: torch.device) -> tuple[nn.Module, Precision]:
    """Prepare ``model`` (in place) for the recipe ``name``; call before DDP/FSDP and the optimizer."""
    if name == "fp32":
        return model, Precision(name, contextlib.nullcontext, lambda m: None, _no_report)
    if name == "bf16":

        def autocast() -> contextlib.AbstractContextManager:
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

        return model, Precision(name, autocast, lambda m: None, _no_report)
    if name in ("dojo", "dojo_lean"):
        from opendojo.nn import Recipe, bias_report, convert, requantize_weights_

        recipe = Recipe.dojo() if name == "dojo" else Recipe.dojo_lean()
        convert(model, recipe)
        return model, Precision(name, contextlib.nullcontext, requantize_weights_, bias_report)
    from opendojo.errors import check_choice
    from opendojo.train.config import PRECISIONS

    check_choice("precision", name, PRECISIONS)  # raises: every name in PRECISIONS is handled above
    raise AssertionError(f"precision {name!r} is in PRECISIONS but has no recipe here")
