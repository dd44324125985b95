"""Recipes: which CFloat format, rounding and bias policy each tensor class of a layer uses.

A :class:`Recipe` is data, like a float format: frozen, comparable, printable. It names one
:class:`TensorPolicy` per tensor class of a converted layer:

- ``activation``: the layer's input, rounded before the matmul/conv;
- ``weight``: the weight operand, rounded before the matmul/conv;
- ``gradient``: the gradient arriving at the layer output (the operand of both backward products) and
  the gradient the layer sends to its input (rounded after the FP32 product);
- ``weight_storage`` (optional): the format the weight itself is *kept* in between optimizer steps.
  ``None`` means an FP32 master copy (the usual mixed-precision set-up); a policy means the weight is
  rounded into that format after every optimizer step (``requantize_weights_``), with no FP32 copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from opendojo.errors import UsageError, check_choice, check_int, check_positive, check_seed
from opendojo.numerics import FORMATS, ROUNDINGS, RoundMode
from opendojo.numerics.formats import check_bias

#: Format names a policy accepts: the CFloat formats of ``numerics.FORMATS`` and ``fp32`` (no rounding).
FORMAT_NAMES = (*FORMATS, "fp32")
BIAS_POLICIES = ("dynamic", "delayed", "fixed")
FP8_MATMUL_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class TensorPolicy:
    """How one tensor class is rounded.

    Args:
        format: one of :data:`FORMAT_NAMES` (``"fp32"`` leaves the tensor untouched).
        rounding: a :class:`opendojo.numerics.RoundMode` or its name (stored as the RoundMode).
        bias: bias policy. ``"dynamic"``: every call, the largest bias whose max covers the tensor's
            amax (``numerics.choose_bias``). ``"delayed"``: the bias covering the largest amax of the last
            ``history`` training steps (FP8 delayed scaling); it therefore changes only when that window
            max crosses a binade, and a tensor larger than the window saw saturates (counted as
            overflow). ``"fixed"``: always ``fixed_bias``.
        fixed_bias: the bias for ``bias="fixed"`` (``numerics.BIASES``); must be ``None`` otherwise.
        history: amax window length in steps for ``"delayed"`` (≥ 1).
        margin: extra headroom in binades: the chosen bias is lowered by ``margin`` (0 = tightest).
        block: ``None`` for one bias per tensor, or an int ≥ 1: one bias per block of that many
            elements along the layer's reduction dimension (the last dimension of a Linear's tensors,
            the channel dimension of a convolution's), each chosen as the dynamic policy would choose it
            for the block alone (docs/cfloat-spec.md, section 10). Needs ``bias="dynamic"``.
    """

    format: str
    rounding: RoundMode | str = RoundMode.NEAREST
    bias: str = "dynamic"
    fixed_bias: int | None = None
    history: int = 16
    margin: int = 0
    block: int | None = None

    def __post_init__(self) -> None:
        check_choice("format", self.format, FORMAT_NAMES)
        object.__setattr__(self, "rounding", RoundMode(check_choice("rounding", self.rounding, ROUNDINGS)))
        check_choice("bias", self.bias, BIAS_POLICIES)
        if self.bias == "fixed":
            check_bias(self.fixed_bias, "fixed_bias")
        elif self.fixed_bias is not None:
            raise UsageError(f"fixed_bias: got {self.fixed_bias!r}; allowed: None unless bias='fixed' "
                             f"(bias is {self.bias!r})")
        check_int("history", self.history, low=1)
        check_int("margin", self.margin, low=0)
        if self.block is not None:
            check_positive("block", self.block)
            if self.bias != "dynamic":
                raise UsageError(f"block: got {self.block!r} with bias={self.bias!r}; allowed: None unless "
                                 "bias='dynamic' (per-block biases are chosen on every call)")

    @property
    def is_identity(self) -> bool:
        """True when this policy leaves values untouched (FP32)."""
        return self.format == "fp32"


_FP32 = TensorPolicy("fp32")


@dataclass(frozen=True)
class Recipe:
    """Formats, rounding and bias policies for every tensor class of a converted layer.

    Use the presets :meth:`dojo`, :meth:`dojo_lean`, :meth:`fp32`, and ``dataclasses.replace`` for
    variants, e.g. ``replace(Recipe.dojo(), gradient=TensorPolicy("cfloat8_1_5_2", "nearest"))``.

    Args:
        name: a label for logs and plots.
        activation, weight, gradient: the policies of the layer input, weight and gradients.
        weight_storage: ``None`` = FP32 master weights; a policy = weights kept in that format.
        fp8_matmul: ``"auto"`` uses ``torch._scaled_mm`` for Linear layers on CUDA devices with FP8 tensor
            cores (compute capability >= 8.9) when both operands are CFloat8_1_4_3; ``"always"`` uses it on
            any device that supports the op (tests); ``"never"`` always emulates.
        flags_every: count the numerics flags (overflow/underflow/invalid/denormal, per tensor class, into
            buffers) on every ``flags_every``-th training step of a layer, starting with its first; 0 never.
            Counting takes the numerics library's slow flag-collecting path (two orders of magnitude
            dearer than the plain rounding kernel, docs/nn.md), so the presets sample every 50th step.
        seed: base of the stochastic-rounding seeds (mixed with the layer name and its step counter).
    """

    name: str = "custom"
    activation: TensorPolicy = field(default_factory=lambda: _FP32)
    weight: TensorPolicy = field(default_factory=lambda: _FP32)
    gradient: TensorPolicy = field(default_factory=lambda: _FP32)
    weight_storage: TensorPolicy | None = None
    fp8_matmul: str = "auto"
    flags_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for argument in ("activation", "weight", "gradient"):
            value = getattr(self, argument)
            if not isinstance(value, TensorPolicy):
                raise TypeError(f"{argument}={value!r} is not allowed; it must be a TensorPolicy")
        if self.weight_storage is not None and not isinstance(self.weight_storage, TensorPolicy):
            raise TypeError(
                f"weight_storage={self.weight_storage!r} is not allowed; use a TensorPolicy or None"
            )
        check_choice("fp8_matmul", self.fp8_matmul, FP8_MATMUL_MODES)
        check_int("flags_every", self.flags_every, low=0)
        check_seed("seed", self.seed)

    @property
    def is_identity(self) -> bool:
        """True when the recipe rounds nothing (a converted layer then computes exactly like FP32)."""
        policies = (self.activation, self.weight, self.gradient, self.weight_storage or _FP32)
        return all(p.is_identity for p in policies)

    @classmethod
    def dojo(cls, block: int | None = None) -> Recipe:
        """Dojo's training recipe: weights and activations CFloat8_1_4_3 (round to nearest), gradients
        CFloat8_1_5_2 with stochastic rounding, dynamic biases, FP32 master weights.

        ``block``: ``None`` for one bias per tensor; an int for one bias per block of that many elements
        along each GEMM's reduction dimension, for all three tensor classes (``TensorPolicy.block``).
        """
        return cls(
            name="dojo" if block is None else f"dojo_block{block}",
            activation=TensorPolicy("cfloat8_1_4_3", RoundMode.NEAREST, "dynamic", block=block),
            weight=TensorPolicy("cfloat8_1_4_3", RoundMode.NEAREST, "dynamic", block=block),
            gradient=TensorPolicy("cfloat8_1_5_2", RoundMode.STOCHASTIC, "dynamic", block=block),
        )

    @classmethod
    def dojo_lean(cls, block: int | None = None) -> Recipe:
        """:meth:`dojo` without an FP32 master copy: weights are stored as CFloat16 SHP and every
        optimizer update is rounded into it stochastically (call ``requantize_weights_`` after
        ``optimizer.step()``). ``block`` as for :meth:`dojo` (the stored weight keeps one bias)."""
        return replace(
            cls.dojo(block), name="dojo_lean" if block is None else f"dojo_lean_block{block}",
            weight_storage=TensorPolicy("cfloat16_shp", RoundMode.STOCHASTIC, "dynamic"),
        )

    @classmethod
    def fp32(cls) -> Recipe:
        """The control: nothing is rounded; converted layers compute exactly like the originals."""
        return cls(name="fp32")
