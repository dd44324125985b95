"""The two autograd rules that turn any FP32 layer into a CFloat one.

A converted layer computes ``y = op(round_values(x), round_values(w))`` and wraps its input and output in
``round_gradient``:

    x ─ round_gradient(grad_input) ─ round_values(input) ─┐
                                                          op (FP32 acc.) ─ round_gradient(grad_output) ─ y
    w ─────────────────────────────── round_values(weight) ┘

- ``round_values`` rounds in the forward pass and passes the gradient straight through (the rounding
  has derivative 1 almost everywhere in the sense of the straight-through estimator).
- ``round_gradient`` is the identity forward and rounds the gradient in the backward pass.

So autograd's own backward of ``op`` runs on the *rounded* operands it saved (grad_x = g_q · w_q,
grad_w = g_qᵀ · x_q, accumulated in FP32), the incoming gradient is rounded to the gradient format before
both products, and the gradient sent on to the input is rounded once more. The weight gradient stays FP32:
it feeds the optimizer and the FP32 (or SHP-stored) weight, as on D1 where the update runs in the SRAM
vector units.
"""

from __future__ import annotations

import torch

from opendojo.nn.bias_state import RoundingCall, TensorBias


class _RoundValues(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, state: TensorBias, call: RoundingCall, avoid_top_code: bool):
        return state(x, call, avoid_top_code)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None


class _RoundGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, state: TensorBias, call: RoundingCall):
        ctx.state, ctx.call = state, call
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return ctx.state(grad, ctx.call), None, None


def round_values(x: torch.Tensor, state: TensorBias, call: RoundingCall, avoid_top_code: bool = False):
    """``x`` rounded by ``state`` in the forward pass; gradient passed through unchanged."""
    if state.format is None:
        return x
    return _RoundValues.apply(x, state, call, avoid_top_code)


def round_gradient(x: torch.Tensor, state: TensorBias, call: RoundingCall) -> torch.Tensor:
    """``x`` unchanged in the forward pass; the gradient of this use of ``x`` rounded by ``state`` in the
    backward pass (an identity op in the graph, so other uses of ``x`` are not affected)."""
    if state.format is None or not x.requires_grad:
        return x
    return _RoundGradient.apply(x, state, call)


def round_output_gradient(y: torch.Tensor, state: TensorBias, call: RoundingCall) -> torch.Tensor:
    """``y`` itself, with a hook that rounds its whole gradient (the sum over all its uses) by ``state``.

    For a layer's own output the hook and :func:`round_gradient` are equivalent; the hook avoids returning
    a view of ``y`` (FSDP2 warns about views as module outputs, and an in-place op on one would drop its
    hooks).
    """
    if state.format is None or not y.requires_grad:
        return y
    y.register_hook(lambda grad: state(grad, call))
    return y
