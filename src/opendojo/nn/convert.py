"""``convert``: turn any PyTorch model into a CFloat-trained one, in place; and the helpers a trainer calls.

What a training loop must do with a converted model (see docs/nn.md):

    model = convert(model, Recipe.dojo())          # before creating the optimizer, DDP or FSDP
    ...
    loss.backward(); optimizer.step()
    requantize_weights_(model)                     # after every optimizer.step(); no-op unless dojo_lean
    log(bias_report(model))                        # optional: biases and flag counts per layer
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

from opendojo.nn.bias_state import COUNT_NAMES
from opendojo.nn.layers import CFLOAT_CLASSES, TENSOR_CLASSES, _CFloatLayer
from opendojo.nn.recipe import Recipe

ModuleFilter = Callable[[str, nn.Module], bool]


def convertible_layers(model: nn.Module) -> list[str]:
    """Dotted names of the layers ``convert`` could swap (or already did), in registration order.

    Exact ``nn.Linear``/``nn.Conv2d``/``nn.Conv3d`` only (a subclass may override ``forward``), and not the
    projections inside ``nn.MultiheadAttention``, whose forward reads their weights directly.
    """
    inside_attention = {
        f"{name}.{child}" if name else child
        for name, module in model.named_modules()
        if isinstance(module, nn.MultiheadAttention)
        for child, _ in module.named_modules()
        if child
    }
    swappable = (type(module) in CFLOAT_CLASSES or isinstance(module, _CFloatLayer) for _, module in
                 model.named_modules())
    return [name for (name, _), ok in zip(model.named_modules(), swappable, strict=True)
            if ok and name not in inside_attention]


def keep_ends_fp32(model: nn.Module) -> ModuleFilter:
    """The default filter: converts every convertible layer except the first and the last (in registration
    order, which in most models is execution order), as FP8 training recipes do for the stem and head."""
    names = convertible_layers(model)
    ends = {names[0], names[-1]} if names else set()
    return lambda fqn, module: fqn not in ends


def convert(
    model: nn.Module, recipe: Recipe | None = None, module_filter: ModuleFilter | None = None
) -> nn.Module:
    """Swap the model's Linear/Conv2d/Conv3d layers for CFloat versions, in place, and return the model.

    Args:
        model: any ``nn.Module``; call before wrapping it in DDP/FSDP and before creating the optimizer.
        recipe: formats and policies; default ``Recipe.dojo()``.
        module_filter: ``module_filter(fqn, module) -> bool``, True to convert; default
            :func:`keep_ends_fp32` (first and last convertible layers stay FP32).
    Returns:
        ``model`` itself. Parameters are the same objects; each converted layer gains a ``cfloat`` child
        holding its policy state. Layers already converted are left as they are.
    """
    recipe = Recipe.dojo() if recipe is None else recipe
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe={recipe!r} is not allowed; pass an opendojo.nn.Recipe")
    names = convertible_layers(model)
    if not names:
        warnings.warn(
            f"convert: {type(model).__name__} has no convertible layer (nn.Linear, nn.Conv2d, nn.Conv3d); "
            "nothing was converted", stacklevel=2,
        )
        return model
    module_filter = keep_ends_fp32(model) if module_filter is None else module_filter
    modules = dict(model.named_modules())
    converted = 0
    for name in names:
        module = modules[name]
        if isinstance(module, _CFloatLayer):
            converted += 1
            continue
        if not module_filter(name, module):
            continue
        module.__class__ = CFLOAT_CLASSES[type(module)]
        module._init_cfloat(recipe, name)
        module.round_stored_weight_()  # dojo_lean: the stored weight is SHP from the start
        converted += 1
    if converted == 0:
        warnings.warn(
            f"convert: the module filter excluded all {len(names)} convertible layers of "
            f"{type(model).__name__} (the default keeps the first and last FP32); nothing was converted",
            stacklevel=2,
        )
    return model


def cfloat_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The converted layers of ``model`` by dotted name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, _CFloatLayer)}


@torch.no_grad()
def requantize_weights_(model: nn.Module) -> None:
    """Round every converted layer's stored weight into its recipe's ``weight_storage`` format.

    Call after each ``optimizer.step()``. With ``Recipe.dojo_lean()`` this stochastically rounds the
    freshly updated weights to CFloat16 SHP, so no FP32 master copy survives the step; for recipes without
    ``weight_storage`` it does nothing. Under DDP every rank computes the same seeds and the same
    weights, so the ranks stay in sync.
    """
    for layer in cfloat_layers(model).values():
        layer.round_stored_weight_()


def bias_report(model: nn.Module) -> dict[str, dict]:
    """The CFloat state of every converted layer, for logs and plots.

    Returns ``{layer_name: {"step": int, tensor_class: {"format", "bias", "amax", "overflow", "underflow",
    "invalid", "denormal", "infinite"}}}`` for the tensor classes ``input``, ``weight``, ``grad_output``,
    ``grad_input`` (and ``weight_storage`` for dojo_lean) that are rounded. ``bias`` is the last one used
    in training (−1 before the first training step), ``amax`` the last training amax (finite values only),
    the counts are cumulative element counts since conversion.
    """
    report: dict[str, dict] = {}
    for name, layer in cfloat_layers(model).items():
        state = layer.cfloat
        entry: dict = {"step": int(state.step)}
        for tensor_class in TENSOR_CLASSES:
            tb = getattr(state, tensor_class)
            if tb is None or tb.format is None:
                continue
            entry[tensor_class] = {
                "format": tb.policy.format,
                "bias": int(tb.bias),
                "amax": float(tb.amax_history[0]),
                **{count: int(getattr(tb, count)) for count in COUNT_NAMES},
            }
        report[name] = entry
    return report
