"""Workload capture: an ``nn.Module`` + example inputs → the op table of one training step.

One step is forward, backward and an AdamW step, run on the **meta device** under a
``TorchDispatchMode`` that records every aten op (kind, FLOPs, bytes, matmul shape; see
:mod:`opendojo.sim.ops`). Meta tensors have shapes but no storage, so a 175B model costs no memory.

Two tricks keep big models cheap and let one capture serve any batch and depth:

* **batch**: the step is captured at batch 2 and 4; every per-op number (FLOPs, bytes, matmul ``m``) is
  linear in the batch, so ``value(B) = v0 + v1 · B`` with ``v1 = (rec(4) − rec(2)) / 2``.
* **depth** (transformer stacks): the model is captured with 1 and 2 blocks; a model of ``L`` identical
  blocks is ``(2 − L) × capture(1) + (L − 1) × capture(2)`` (op counts may be negative; per-op costs
  depend only on op shapes, so the block ops of both captures cancel exactly and ``L − 1`` extra blocks
  remain). This is exact when the blocks are identical, which they are in the reference GPTs.

The op table is a dict of numpy columns, each ``[n_ops]``: ``kind``, ``phase`` (0 forward, 1 backward,
2 optimizer), ``count``, ``group`` (depth-extrapolated tables: 1 or 2, the capture an op came from; the
counts ``2, −1`` for groups 1, 2 give the model with zero blocks — embedding, head and loss), ``rated``
(index of a host-calibrated kernel, 0 if none), and ``<x>0``/``<x>1`` for ``x`` in flops (FLOP), bytes
(B), out_bytes (B of fresh allocations), rng (random elements), b/m/n/k (matmul batch and shape),
elements (of the first input).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from opendojo.sim.ops import GEMM_ROLES, KIND, POINTWISE_KINDS, op_cost, recurrent_cost

#: Batch sizes of the two captures (batch 1 is avoided: size-1 dims take other code paths).
_CAPTURE_BATCHES = (2, 4)
_LINEAR = ("flops", "bytes", "out_bytes", "rng", "b", "m", "n", "k", "elements", "fused_bytes")
PHASES = ("forward", "backward", "optimizer")


@dataclass(frozen=True)
class Workload:
    """One training step of a model, as an op table plus memory sizes (fp32 bytes as captured).

    ``act_bytes0 + act_bytes1 · B`` is what the forward pass saves for backward at batch ``B``;
    ``layers`` is the number of repeated blocks (pipeline stages cannot outnumber it);
    ``tp_bytes_per_sample`` is the tensor-parallel all-reduce payload per sample per layer (fp32), 0 when
    the model is not a transformer stack (tensor parallelism is then not offered); ``tp_dims`` the sizes a
    tensor-parallel degree must divide.
    """

    name: str
    ops: dict[str, np.ndarray]
    op_names: tuple[str, ...]
    params: int
    param_bytes: float
    grad_bytes: float
    optimizer_bytes: float
    act_bytes0: float
    act_bytes1: float
    layers: int = 1
    tp_bytes_per_sample: float = 0.0
    #: Sizes tensor parallelism splits (``{"attention heads": 96, "hidden size": 12288, ...}``): a ``tp``
    #: must divide each. Empty when the model is not a transformer stack.
    tp_dims: dict[str, int] = field(default_factory=dict)
    sample: str = "sample"
    default_batch_per_device: int = 32
    default_global_batch: int | None = None
    param_tensors: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: ``act_bytes*`` for a compiled graph that recomputes memory-bound ops in the backward pass rather
    #: than saving their outputs (NaN: not captured; then the eager figure is used).
    fused_act_bytes0: float = float("nan")
    fused_act_bytes1: float = float("nan")

    def at(self, batch: float) -> dict[str, np.ndarray]:
        """Per-op values at batch ``batch`` (samples per device per micro-batch): ``{x: [n_ops]}``."""
        out = {x: self.ops[f"{x}0"] + self.ops[f"{x}1"] * batch for x in _LINEAR}
        out.update(kind=self.ops["kind"], phase=self.ops["phase"], count=self.ops["count"],
                   rated=self.ops["rated"], group=self.ops.get("group", np.zeros(len(self.ops["kind"]))),
                   fused=self.ops.get("fused", np.zeros(len(self.ops["kind"]), dtype=np.int64)),
                   role=self.ops.get("role", np.zeros(len(self.ops["kind"]), dtype=np.int64)))
        return out

    def flops(self, batch: float) -> float:
        """FLOPs of one whole training step (forward + backward + optimizer) at ``batch``."""
        return float(np.sum(self.ops["count"] * (self.ops["flops0"] + self.ops["flops1"] * batch)))

    def activation_bytes(self, batch: float, fused: bool = False) -> float:
        """Bytes saved by the forward pass for the backward pass at ``batch`` (fp32); ``fused``: by a
        compiled graph that recomputes memory-bound ops in the backward pass instead (if captured)."""
        if fused and not np.isnan(self.fused_act_bytes0 + self.fused_act_bytes1):
            return self.fused_act_bytes0 + self.fused_act_bytes1 * batch
        return self.act_bytes0 + self.act_bytes1 * batch


class _FusedLSTM(torch.autograd.Function):
    """One ``torch.lstm`` call as the CPU runs it: a fused oneDNN kernel forward and one backward.

    On the meta device PyTorch would decompose the LSTM into per-time-step matmuls and gate ops, a
    program eager CPU never runs (it calls ``mkldnn_rnn_layer``). The decomposition still computes the
    output shapes, but the recorder ignores it and records the two fused ops instead."""

    @staticmethod
    def forward(ctx, recorder, lstm_args, x, *weights):
        with recorder.muted():
            out, h, c = torch.lstm(x, *lstm_args[:1], list(weights), *lstm_args[1:])
        ctx.shape = _lstm_shape(x, weights, lstm_args)
        ctx.recorder = recorder
        recorder.add(recurrent_cost(0, **ctx.shape), "mkldnn_rnn_layer")
        ctx.inputs = (x, *weights)
        return out, h, c

    @staticmethod
    def backward(ctx, *grads):
        ctx.recorder.add(recurrent_cost(1, **ctx.shape), "mkldnn_rnn_layer_backward")
        return (None, None, *(torch.empty_like(t) if t.requires_grad else None for t in ctx.inputs))


def _lstm_shape(x: torch.Tensor, weights, lstm_args) -> dict[str, int]:
    """``recurrent_cost`` keywords of a ``torch.lstm(x, hx, weights, bias, layers, dropout, train,
    bidirectional, batch_first)`` call (``lstm_args`` = everything but ``x`` and the weights)."""
    hx, _bias, layers, _dropout, _train, bidirectional, batch_first = lstm_args
    hidden = hx[0].shape[-1]
    seq, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    return {"seq": int(seq), "batch": int(batch), "inputs": int(x.shape[-1]), "hidden": int(hidden),
            "layers": int(layers), "directions": 2 if bidirectional else 1}


class _FusedKernelsOnMeta(TorchFunctionMode):
    """Route calls to the fused kernels eager CPU PyTorch runs, which the meta device would decompose:

    * ``F.scaled_dot_product_attention`` → the CPU flash kernel (otherwise: matmul + softmax + matmul
      saving the ``[s, s]`` score matrix, memory no fused kernel keeps);
    * ``torch.lstm`` on padded (not packed) input → one fused oneDNN op forward and one backward
      (:class:`_FusedLSTM`), as the CPU runs it.
    """

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and kwargs.get("attn_mask") is None and len(args) <= 3:
            q, k, v = args
            if q.device.type == "meta" and not kwargs.get("dropout_p"):
                return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    q, k, v, 0.0, bool(kwargs.get("is_causal", False)), scale=kwargs.get("scale"))[0]
        if func is torch.lstm and len(args) == 9 and not kwargs and isinstance(args[1], (tuple, list)):
            x, hx, weights, *rest = args
            if x.device.type == "meta":
                out, h, c = _FusedLSTM.apply(self.recorder, (hx, *rest), x, *weights)
                return out, h, c
        return func(*args, **kwargs)


class _Recorder(TorchDispatchMode):
    """Records every op; also which pointwise op reads a tensor that another pointwise op just produced
    (``fused_bytes``: the read a pointwise-fusing compiler such as torch.compile would not do)."""

    def __init__(self, param_shapes: frozenset[tuple[int, ...]] = frozenset()) -> None:
        super().__init__()
        #: Shapes of the model's parameters: a backward 2-D matmul producing one is a weight gradient.
        self.param_shapes = param_shapes
        self.phase = 0
        self.records: list[dict] = []
        self.names: list[str] = []
        self._pointwise_outputs: set[int] = set()
        #: Fresh output storage of each memory-bound (elementwise/special) forward op → its tensor inputs'
        #: storages (scalars left out): what a compiler could recompute the output from.
        self.recomputable: dict[int, tuple[int, ...]] = {}
        self._alive: list = []
        self._muted = 0

    @contextmanager
    def muted(self):
        """Ops dispatched inside are not recorded (a fused kernel records itself instead)."""
        self._muted += 1
        try:
            yield
        finally:
            self._muted -= 1

    def add(self, rec: dict, name: str) -> None:
        """Record a fused kernel that the meta device does not dispatch as one op."""
        self.records.append(dict(rec, phase=self.phase))
        self.names.append(name)

    def _gemm_role(self, func, out: object) -> int:
        """Index in ``GEMM_ROLES``: a 2-D mm/addmm is a Linear's forward GEMM in the forward pass; in the
        backward pass, its weight gradient when it produces a parameter's shape, else its data gradient."""
        if func.overloadpacket not in (torch.ops.aten.mm, torch.ops.aten.addmm) or self.phase > 1:
            return 0
        if self.phase == 0:
            return GEMM_ROLES.index("linear.forward")
        wgrad = isinstance(out, torch.Tensor) and tuple(out.shape) in self.param_shapes
        return GEMM_ROLES.index("linear.wgrad" if wgrad else "linear.dgrad")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self._muted:
            return out
        rec = op_cost(func, args, kwargs, out)
        rec["phase"] = self.phase
        ins = tuple(a.untyped_storage()._cdata for a in tree_flatten((args, kwargs))[0]
                    if isinstance(a, torch.Tensor) and a.numel() > 1)
        elementwise = self.phase == 0 and rec["kind"] in (KIND["elementwise"], KIND["special"])
        for o in tree_flatten(out)[0]:
            if isinstance(o, torch.Tensor) and o.untyped_storage()._cdata not in ins:
                # Storage ids are addresses: keep every storage alive (meta: no memory) so that no
                # address is reused for another tensor while it is used as a key here.
                self._alive.append(o.untyped_storage())
                if elementwise:
                    self.recomputable[o.untyped_storage()._cdata] = ins
        pointwise = rec["kind"] in POINTWISE_KINDS
        fused = 0.0
        if pointwise:
            for t in tree_flatten((args, kwargs))[0]:
                if isinstance(t, torch.Tensor) and t.untyped_storage()._cdata in self._pointwise_outputs:
                    fused += t.numel() * t.element_size()
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self._pointwise_outputs.add(t.untyped_storage()._cdata)
        rec["fused_bytes"] = fused
        rec["fused"] = int(fused > 0)
        rec["role"] = rec.get("role") or self._gemm_role(func, out)
        self.records.append(rec)
        self.names.append(func.overloadpacket.__name__)
        return out


def scalar_loss(out: object) -> torch.Tensor:
    """The loss every captured and measured step takes: the sum of the means of the floating-point tensors
    in a model's output (any nesting), in fp32."""
    tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not tensors:
        raise ValueError("the model's output holds no floating-point tensor to take a loss of")
    loss = tensors[0].float().mean()
    for t in tensors[1:]:
        loss = loss + t.float().mean()
    return loss


def _to_meta(obj: object) -> object:
    if isinstance(obj, torch.Tensor):
        return torch.empty_like(obj, device="meta") if obj.device.type != "meta" else obj
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_meta(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_meta(v) for k, v in obj.items()}
    return obj


def _as_args(inputs: object) -> tuple:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def _fused_saved_bytes(saved: dict[int, int], recomputable: dict[int, tuple[int, ...]],
                       params: set[int]) -> float:
    """Bytes saved for backward by a compiled graph that recomputes memory-bound ops in the backward pass
    instead of saving their outputs (torch.compile's min-cut rematerialisation; fused RMSNorm/SwiGLU
    kernels that keep only their inputs): a saved tensor made by an elementwise op whose tensor inputs
    are parameters or themselves saved (kept or recomputable in turn) is not kept."""
    dropped = {sid for sid in saved if sid in recomputable
               and all(i in params or i in saved for i in recomputable[sid])}
    return float(sum(n for sid, n in saved.items() if sid not in dropped))


def _step_records(model: nn.Module, inputs: object) -> tuple[list[dict], list[str], float, float]:
    """Record forward + backward; return (records, op names, bytes saved for backward, the same with
    compiler rematerialisation of memory-bound ops, :func:`_fused_saved_bytes`)."""
    model = model.to("meta") if any(p.device.type != "meta" for p in model.parameters()) else model
    args = _as_args(_to_meta(inputs))
    param_storages = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st._cdata not in param_storages:
            saved[st._cdata] = st.nbytes()
        return t

    shapes = {tuple(p.shape) for p in model.parameters()}
    rec = _Recorder(frozenset(shapes | {s[::-1] for s in shapes}))  # wgrad may come out transposed
    with _FusedKernelsOnMeta(rec), rec:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = scalar_loss(model(*args))
        rec.phase = 1
        loss.backward()
    model.zero_grad(set_to_none=True)
    fused = _fused_saved_bytes(saved, rec.recomputable, param_storages)
    return rec.records, rec.names, float(sum(saved.values())), fused


@cache
def _adamw_template() -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """The ops torch's (non-foreach, CPU-default) AdamW issues per parameter tensor, as linear functions of
    its element count: captured on one meta tensor of 1024 and of 4096 elements."""
    tables, names = [], None
    for numel in (1024, 4096):
        p = nn.Parameter(torch.empty(numel, device="meta"))
        p.grad = torch.empty(numel, device="meta")
        opt = torch.optim.AdamW([p], lr=1e-4, foreach=False)
        opt.step()  # creates the state; steady state is the second step
        rec = _Recorder()
        rec.phase = 2
        with rec:
            opt.step()
        tables.append(_table(rec.records, 1.0))
        names = tuple(rec.names)
    t1, t2 = tables
    out = {"kind": t1["kind"], "phase": t1["phase"], "rated": t1["rated"], "fused": t1["fused"],
           "role": t1["role"]}
    for x in _LINEAR:
        out[f"{x}1"] = (t2[x] - t1[x]) / 3072.0
        out[f"{x}0"] = t1[x] - out[f"{x}1"] * 1024.0
    return names, out


def _optimizer_table(model: nn.Module) -> tuple[tuple[str, ...], dict[str, np.ndarray], float]:
    """AdamW over all parameter tensors, aggregated per template op (costs are linear in the elements):
    ``count`` = number of tensors, per-op values = the mean over tensors. Independent of the batch."""
    ps = list({p.untyped_storage()._cdata: p for p in model.parameters() if p.requires_grad}.values())
    n, numel = len(ps), float(sum(p.numel() for p in ps))
    names, t = _adamw_template()
    table = {"kind": t["kind"], "phase": t["phase"], "rated": t["rated"], "fused": t["fused"],
             "role": t["role"],
             "count": np.full(len(names), float(n))}
    for x in _LINEAR:
        table[f"{x}0"] = t[f"{x}0"] + t[f"{x}1"] * (numel / max(n, 1))
        table[f"{x}1"] = np.zeros(len(names))
    state_bytes = 2.0 * sum(p.numel() * p.element_size() for p in ps)  # exp_avg and exp_avg_sq
    return names, table, state_bytes


def _table(records: list[dict], count: float) -> dict[str, np.ndarray]:
    cols = {x: np.array([r[x] for r in records], dtype=np.float64) for x in _LINEAR}
    return {"kind": np.array([r["kind"] for r in records], dtype=np.int64),
            "phase": np.array([r["phase"] for r in records], dtype=np.int64),
            "rated": np.array([r["rated"] for r in records], dtype=np.int64),
            "fused": np.array([r.get("fused", 0) for r in records], dtype=np.int64),
            "role": np.array([r.get("role", 0) for r in records], dtype=np.int64),
            "count": np.full(len(records), float(count)), **cols}


def _linear_in_batch(rec1: list[dict], rec2: list[dict]) -> dict[str, np.ndarray]:
    t1, t2 = _table(rec1, 1.0), _table(rec2, 1.0)
    out = {"kind": t1["kind"], "phase": t1["phase"], "count": t1["count"], "rated": t1["rated"],
           "fused": t1["fused"], "role": t1["role"]}
    lo, hi = _CAPTURE_BATCHES
    for x in _LINEAR:
        out[f"{x}1"] = (t2[x] - t1[x]) / (hi - lo)
        out[f"{x}0"] = t1[x] - out[f"{x}1"] * lo
    return out


def _concat(tables: list[tuple[dict[str, np.ndarray], float]]) -> dict[str, np.ndarray]:
    keys = tables[0][0].keys()
    out = {k: np.concatenate([t[k] for t, _ in tables]) for k in keys}
    out["count"] = np.concatenate([t["count"] * c for t, c in tables])
    return out


def _params(model: nn.Module) -> tuple[int, float]:
    ps = {p.untyped_storage()._cdata: p for p in model.parameters()}
    return sum(p.numel() for p in ps.values()), float(sum(p.numel() * p.element_size() for p in ps.values()))


def capture_scalable(name: str, build: Callable[[int, int], tuple[nn.Module, object]], *, layers: int = 1,
                     depth_scaled: bool = False, **meta) -> Workload:
    """Capture ``build(batch, depth) -> (module on meta, inputs)`` at batch 1 and 2 (and depth 1 and 2
    when ``depth_scaled``) and combine into a :class:`Workload` valid for any batch and ``layers`` blocks.
    """
    depths = (1, 2) if depth_scaled and layers > 1 else (None,)
    parts, names = [], []
    sizes = {}
    for depth in depths:
        caps = []
        for batch in _CAPTURE_BATCHES:
            model, inputs = build(batch, depth if depth is not None else layers)
            recs, nm, act, act_f = _step_records(model, inputs)
            caps.append((recs, nm, (act, act_f), _params(model)))
        (r1, n1, (a1, f1), p1), (r2, n2, (a2, f2), _) = caps
        onames, otable, o1 = _optimizer_table(model)
        if n1 != n2:
            raise ValueError(f"workload {name!r}: the op sequence changes with the batch size; capture "
                             f"it at a fixed batch with capture_module() instead")
        parts.append(_concat([(_linear_in_batch(r1, r2), 1.0), (otable, 1.0)]))
        names.append(n1 + list(onames))
        lo, hi = _CAPTURE_BATCHES
        act1, fused1 = (a2 - a1) / (hi - lo), (f2 - f1) / (hi - lo)
        sizes[depth] = (p1[0], p1[1], o1, a1 - act1 * lo, act1, f1 - fused1 * lo, fused1)
    if len(depths) == 1:
        table, op_names = parts[0], tuple(names[0])
        params, pbytes, obytes, act0, act1, fused0, fused1 = sizes[depths[0]]
    else:
        w1, w2 = 2.0 - layers, layers - 1.0
        parts[0]["group"] = np.full(len(parts[0]["kind"]), 1.0)  # ops of the 1-block capture
        parts[1]["group"] = np.full(len(parts[1]["kind"]), 2.0)  # ops of the 2-block capture
        table = _concat([(parts[0], w1), (parts[1], w2)])
        op_names = tuple(names[0]) + tuple(names[1])
        params, pbytes, obytes, act0, act1, fused0, fused1 = (
            w1 * a + w2 * b for a, b in zip(sizes[1], sizes[2], strict=True))
    tensors = int(round(np.max(table["count"][table["phase"] == 2], initial=0.0)))
    return Workload(name, table, op_names, int(round(params)), pbytes, pbytes, obytes, act0, act1,
                    layers=layers, param_tensors=tensors, fused_act_bytes0=fused0, fused_act_bytes1=fused1,
                    **meta)


def capture_module(model: nn.Module, inputs: object, *, name: str = "custom", batch: int | None = None,
                   **meta) -> Workload:
    """Capture any module at the batch of its example ``inputs`` (first dimension of the first tensor).

    Forward/backward costs are taken as proportional to the batch (``v1 = v / B``), the optimizer's as
    independent of it; exact at the captured batch. The module is moved to the meta device.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    first = next((t for t in tree_flatten(inputs)[0] if isinstance(t, torch.Tensor)), None)
    if first is None:
        raise ValueError("example inputs hold no tensor; pass the tensors the model's forward takes")
    batch = batch or (int(first.shape[0]) if first.dim() else 1)
    recs, names, act, act_fused = _step_records(model, inputs)
    t = _table(recs, 1.0)
    table = {"kind": t["kind"], "phase": t["phase"], "count": t["count"], "rated": t["rated"],
             "fused": t["fused"], "role": t["role"]}
    for x in _LINEAR:
        table[f"{x}0"], table[f"{x}1"] = np.zeros_like(t[x]), t[x] / batch
    table["b0"], table["b1"] = t["b"], np.zeros_like(t["b"])  # matmul batch dims kept; m carries the batch
    onames, otable, opt = _optimizer_table(model)
    table = _concat([(table, 1.0), (otable, 1.0)])
    names = list(names) + list(onames)
    params, pbytes = _params(model)
    leaves = sum(1 for m in model.modules() if not list(m.children()) and any(True for _ in m.parameters()))
    meta.setdefault("layers", max(1, leaves))
    tensors = int(round(np.max(table["count"][table["phase"] == 2], initial=0.0)))
    return Workload(name, table, tuple(names), params, pbytes, pbytes, opt, 0.0, act / batch,
                    param_tensors=tensors, fused_act_bytes0=0.0, fused_act_bytes1=act_fused / batch, **meta)
