"""CFloat versions of nn.Linear, nn.Conv2d and nn.Conv3d.

Each subclasses the original, so ``isinstance``, parameter names, ``state_dict`` keys, hooks, DDP and
FSDP keep working; :func:`opendojo.nn.convert` swaps the class of existing modules in place. The policy
state of a layer sits in a child module ``cfloat`` (:class:`LayerState`), so its buffers appear in the
``state_dict`` as ``<layer>.cfloat.<tensor class>.<buffer>`` next to the usual ``weight``/``bias``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from opendojo.nn.bias_state import OptionalStateModule, RoundingCall, TensorBias
from opendojo.nn.fp8_matmul import fp8_hardware_available, fp8_shapes_supported, scaled_linear
from opendojo.nn.recipe import Recipe
from opendojo.nn.rounding_ops import round_gradient, round_output_gradient, round_values
from opendojo.nn.seeds import layer_seed, tensor_seed

TENSOR_CLASSES = ("input", "weight", "grad_output", "grad_input", "weight_storage")


class LayerState(OptionalStateModule):
    """The CFloat state of one converted layer: one :class:`TensorBias` per tensor class, plus buffers
    ``step`` (int64, training forward passes so far; drives the stochastic-rounding seeds) and ``seed``
    (int64, the layer's base seed, from the recipe seed and the layer's name)."""

    def __init__(self, recipe: Recipe, fqn: str, device: torch.device | None = None, reduction_dim: int = -1):
        super().__init__()
        self.recipe = recipe
        self.input = TensorBias(recipe.activation, device)
        self.weight = TensorBias(recipe.weight, device)
        self.grad_output = TensorBias(recipe.gradient, device)
        self.grad_input = TensorBias(recipe.gradient, device)
        storage = recipe.weight_storage
        self.weight_storage = TensorBias(storage, device) if storage is not None else None
        for name in TENSOR_CLASSES:
            if getattr(self, name) is not None:
                getattr(self, name).reduction_dim = reduction_dim
        # seeds cost a Python hash each, so they are computed only for the stochastically rounded classes
        self._stochastic = {
            name for name in TENSOR_CLASSES
            if getattr(self, name) is not None and getattr(self, name).format is not None
            and getattr(self, name).policy.rounding == "stochastic"
        }
        self.register_buffer("step", torch.zeros((), dtype=torch.int64, device=device))
        seed = layer_seed(recipe.seed, fqn)
        self.register_buffer("seed", torch.tensor(seed, dtype=torch.int64, device=device))

    def extra_repr(self) -> str:
        return f"recipe={self.recipe.name}"

    @torch.compiler.disable  # host-side integer bookkeeping: a graph break, not a graph op
    def plan(self, update: bool, advance: bool = True) -> dict[str, RoundingCall]:
        """The rounding calls of this pass for every tensor class.

        ``update``: training (record amax/bias; count flags on every ``recipe.flags_every``-th step).
        ``advance``: a forward pass, which moves ``step`` on when ``update``.
        """
        step, base = int(self.step), int(self.seed)
        every = self.recipe.flags_every
        count = update and every > 0 and step % every == 0
        if update and advance:
            self.step.add_(1)
        seeds = {name: tensor_seed(base, step, name) for name in self._stochastic}
        return {name: RoundingCall(seeds.get(name, 0), update, count) for name in TENSOR_CLASSES}


class _CFloatLayer:
    """Mixin: the rounding around a layer's op. Subclasses define ``_op(xq, wq)``."""

    cfloat: LayerState
    #: The GEMM reduction dimension of the layer's tensors, along which per-block biases run.
    _reduction_dim = -1

    def _init_cfloat(self, recipe: Recipe, fqn: str) -> None:
        self.cfloat = LayerState(recipe, fqn, self.weight.device, self._reduction_dim)

    def _use_fp8(self, x: torch.Tensor) -> bool:
        return False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.cfloat
        if state.recipe.is_identity:
            return self._op(x, self.weight, False)
        calls = state.plan(update=self.training)
        fp8 = self._use_fp8(x)
        x = round_gradient(x, state.grad_input, calls["grad_input"])
        xq = round_values(x, state.input, calls["input"], fp8)
        wq = round_values(self.weight, state.weight, calls["weight"], fp8)
        y = self._op(xq, wq, fp8)
        g_call = calls["grad_output"]
        if fp8 and self._fp8_backward():  # keep the gradient below e5m2's Inf: one binade of headroom
            g_call = g_call._replace(headroom=1)
        return round_output_gradient(y, state.grad_output, g_call)

    def _fp8_backward(self) -> bool:
        """True when the backward GEMMs run on FP8 tensor cores too (CFloat8_1_5_2 per-tensor gradients)."""
        gradient = self.cfloat.recipe.gradient
        return gradient.format == "cfloat8_1_5_2" and gradient.block is None and torch.is_grad_enabled()

    @torch.no_grad()
    def round_stored_weight_(self) -> None:
        """Round the stored weight into the recipe's ``weight_storage`` format (no-op without one)."""
        state = self.cfloat
        if state.weight_storage is None:
            return
        call = state.plan(update=True, advance=False)["weight_storage"]
        self.weight.copy_(state.weight_storage(self.weight, call))


class CFloatLinear(_CFloatLayer, nn.Linear):
    """``nn.Linear`` computing on CFloat-rounded input and weight (FP32 accumulation, FP32 bias add)."""

    def _use_fp8(self, x: torch.Tensor) -> bool:
        recipe = self.cfloat.recipe
        if recipe.fp8_matmul == "never" or x.dtype != torch.float32:
            return False
        if recipe.activation.format != "cfloat8_1_4_3" or recipe.weight.format != "cfloat8_1_4_3":
            return False
        if recipe.activation.block is not None or recipe.weight.block is not None:
            return False  # _scaled_mm takes per-tensor scales only
        if not fp8_shapes_supported(self.in_features, self.out_features):
            return False
        if recipe.fp8_matmul == "always":
            return hasattr(torch, "_scaled_mm") and hasattr(torch, "float8_e4m3fn")
        return fp8_hardware_available(x.device)

    def _op(self, xq: torch.Tensor, wq: torch.Tensor, fp8: bool) -> torch.Tensor:
        if fp8:
            state = self.cfloat
            return scaled_linear(xq, wq, self.bias, state.input.last_bias, state.weight.last_bias,
                                 state.grad_output if self._fp8_backward() else None)
        return F.linear(xq, wq, self.bias)


class CFloatConv2d(_CFloatLayer, nn.Conv2d):
    """``nn.Conv2d`` computing on CFloat-rounded input and weight (FP32 accumulation, FP32 bias add)."""

    _reduction_dim = 1  # channels: [B, C, H, W] activations, [O, C, kh, kw] weights

    def _op(self, xq: torch.Tensor, wq: torch.Tensor, fp8: bool) -> torch.Tensor:
        return self._conv_forward(xq, wq, self.bias)


class CFloatConv3d(_CFloatLayer, nn.Conv3d):
    """``nn.Conv3d`` computing on CFloat-rounded input and weight (FP32 accumulation, FP32 bias add)."""

    _reduction_dim = 1

    def _op(self, xq: torch.Tensor, wq: torch.Tensor, fp8: bool) -> torch.Tensor:
        return self._conv_forward(xq, wq, self.bias)


#: Original class -> CFloat class. Only these exact types are converted (a subclass may override forward).
CFLOAT_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: CFloatLinear,
    nn.Conv2d: CFloatConv2d,
    nn.Conv3d: CFloatConv3d,
}
