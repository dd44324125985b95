"""opendojo.nn: CFloat mixed-precision training for any PyTorch model.

    from opendojo.nn import Recipe, convert, requantize_weights_, bias_report
    model = convert(model, Recipe.dojo())

See docs/nn.md for what a training loop must call and what each recipe rounds.
"""

from opendojo.nn.convert import (
    bias_report,
    cfloat_layers,
    convert,
    convertible_layers,
    keep_ends_fp32,
    requantize_weights_,
)
from opendojo.nn.fp8_matmul import FP8_GPU_GEMMS
from opendojo.nn.layers import CFloatConv2d, CFloatConv3d, CFloatLinear, LayerState
from opendojo.nn.recipe import Recipe, TensorPolicy

__all__ = [
    "CFloatConv2d",
    "CFloatConv3d",
    "CFloatLinear",
    "FP8_GPU_GEMMS",
    "LayerState",
    "Recipe",
    "TensorPolicy",
    "bias_report",
    "cfloat_layers",
    "convert",
    "convertible_layers",
    "keep_ends_fp32",
    "requantize_weights_",
]
