"""Built-in workloads by name, captured lazily (and once per process) on the meta device.

``fsd-*`` come from the FSD network (:mod:`opendojo.models.fsd`), imported only when asked for (it is
part of the same package; importing it lazily keeps ``import opendojo.sim`` light). GPT-family names
are captured with 1 and 2 blocks and extrapolated to their depth (see :mod:`opendojo.sim.workload`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import zipfile
from dataclasses import fields
from functools import cache
from pathlib import Path

import numpy as np
import torch

from opendojo.sim.workload import Workload, capture_module, capture_scalable

log = logging.getLogger(__name__)

_VISION = {"resnet50": (16, "image 224x224", 256), "vit-b16": (12, "image 224x224", 64)}
_FSD_PRESETS = ("tiny", "base", "large")


def _gpt_names() -> list[str]:
    from opendojo.models.reference_gpt import GPT_PRESETS

    return list(GPT_PRESETS)


def list_workloads() -> list[str]:
    """Every built-in workload name."""
    return [f"fsd-{p}" for p in _FSD_PRESETS] + list(_VISION) + ["unet-sd"] + _gpt_names()


def _gpt(name: str) -> Workload:
    from opendojo.models.reference_gpt import GPT_PRESETS

    return gpt_workload(name, GPT_PRESETS[name])


def gpt_workload(name: str, c) -> Workload:
    """The workload of a GPT of shape ``c`` (a ``models.reference_gpt.GPTConfig``), captured with 1 and 2
    blocks and extrapolated to ``c.n_layer``, with Megatron's tensor-parallel traffic per block."""
    from opendojo.models.reference_gpt import gpt, gpt_inputs

    def build(batch: int, depth: int):
        m = gpt(c, device="meta", n_layer=depth)
        return m, gpt_inputs(m.config, batch, device="meta")

    # Tensor parallelism (Megatron): 2 all-reduces of [seq, d_model] forward and 2 backward per block.
    tp = 4 * c.seq * c.d_model * 4.0
    tokens = 2048 * c.seq if c.llama else 1536 * c.seq  # Llama 3: 16M tokens/batch; GPT-3 175B: 3.2M
    dims = {"attention heads": c.n_head, "hidden size": c.d_model,
            "feed-forward size": c.ffn_dim or 4 * c.d_model, "key/value heads": c.n_kv_head or c.n_head}
    return capture_scalable(name, build, layers=c.n_layer, depth_scaled=True, tp_bytes_per_sample=tp,
                            tp_dims=dims,
                            sample=f"sequence of {c.seq} tokens", default_batch_per_device=1,
                            default_global_batch=max(1, tokens // c.seq),
                            notes=(f"{c.params / 1e9:.3g}B parameters; captured with 1 and 2 blocks, "
                                   f"extrapolated to {c.n_layer}",))


def _vision(name: str) -> Workload:
    from opendojo.models.reference_vision import resnet50, vit_b16

    layers, sample, per_dev = _VISION[name]
    factory = resnet50 if name == "resnet50" else vit_b16

    def build(batch: int, depth: int):
        return factory(device="meta"), torch.empty(batch, 3, 224, 224, device="meta")

    return capture_scalable(name, build, layers=layers, sample=sample, default_batch_per_device=per_dev)


def _unet() -> Workload:
    from opendojo.models.reference_unet import unet_inputs, unet_sd

    def build(batch: int, depth: int):
        return unet_sd(device="meta"), unet_inputs(batch, device="meta")

    return capture_scalable("unet-sd", build, layers=25, sample="512x512 image (64x64 latent)",
                            default_batch_per_device=16)


def _fsd(name: str) -> Workload:
    preset = name.removeprefix("fsd-")
    from opendojo.models import fsd

    cfg = fsd.PRESETS[preset]

    def build(batch: int, depth: int):
        return fsd.fsd_net(preset, device="meta"), fsd.example_inputs(preset, batch, device="meta")

    layers = len(cfg.backbone_channels) + cfg.fusion_layers + cfg.temporal_layers + 1
    return capture_scalable(name, build, layers=layers,
                            sample=f"clip of {cfg.cameras} cameras x {cfg.frames} frames at "
                                   f"{cfg.image_size}px",
                            default_batch_per_device=4)


@cache
def load_workload(name: str) -> Workload:
    """A built-in workload by name, or ``path.py:function`` returning ``(model, example_inputs)``.

    Built-in captures are cached on disk (``cache_dir()/workloads``), keyed by the torch version and the
    source of the model and capture code, so a changed model is captured again."""
    if not isinstance(name, str):
        raise TypeError(f"workload must be a name (str) or a Workload, got {type(name).__name__}")
    if ".py:" in name:
        return _from_factory(name)
    if name not in list_workloads():
        raise ValueError(f"unknown workload {name!r}; valid: {', '.join(list_workloads())} "
                         f"or path.py:function")
    path = _cache_path(name)
    if path is not None and path.is_file():
        try:
            return _read_cached(path)
        except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as e:
            log.warning("workload cache %s is damaged (%s: %s); capturing %r again", path,
                        type(e).__name__, e, name)
    w = _capture_builtin(name)
    if path is not None:
        _write_cached(w, path)
    return w


def _cache_path(name: str) -> Path | None:
    sources = ["sim/ops.py", "sim/workload.py", "sim/catalog.py", "models/reference_gpt.py",
               "models/reference_vision.py", "models/reference_unet.py", "models/fsd.py"]
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(f"{name}|{torch.__version__}".encode())
    for rel in sources:
        p = root / rel
        if p.is_file():
            h.update(p.read_bytes())
    try:
        from opendojo.hw.system import cache_dir

        return cache_dir() / "workloads" / f"{name}-{h.hexdigest()[:16]}.npz"
    except OSError:
        return None


def _write_cached(w: Workload, path: Path) -> None:
    meta = {f.name: getattr(w, f.name) for f in fields(w) if f.name not in ("ops", "op_names")}
    meta["notes"] = list(w.notes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), __names__=np.array(w.op_names), **w.ops)
        os.replace(tmp, path)
    except OSError:
        pass  # caching is an optimisation; a read-only home still works


def _read_cached(path: Path) -> Workload:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        names = tuple(str(n) for n in z["__names__"])
        ops = {k: z[k] for k in z.files if not k.startswith("__")}
    meta["notes"] = tuple(meta.get("notes", ()))
    return Workload(ops=ops, op_names=names, **meta)


def _capture_builtin(name: str) -> Workload:
    if name in _gpt_names():
        return _gpt(name)
    if name in _VISION:
        return _vision(name)
    if name == "unet-sd":
        return _unet()
    if name in (f"fsd-{p}" for p in _FSD_PRESETS):
        return _fsd(name)
    raise ValueError(f"unknown workload {name!r}")


def _from_factory(spec: str) -> Workload:
    path, _, fn = spec.rpartition(":")
    if not Path(path).is_file():
        raise ValueError(f"workload {spec!r}: file {path!r} does not exist")
    mod_spec = importlib.util.spec_from_file_location(f"_opendojo_user_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)
    except Exception as e:  # the user's file: any error in it is theirs to fix, reported in one line
        raise ValueError(f"workload {spec!r}: importing {path} raised {type(e).__name__}: {e}") from e
    factory = getattr(module, fn, None)
    if not callable(factory):
        raise ValueError(f"workload {spec!r}: {path} has no function {fn!r}")
    try:
        with torch.device("meta"):
            result = factory()
    except Exception as e:  # e.g. a .cuda() call on a machine without CUDA
        raise ValueError(f"workload {spec!r}: {fn}() raised {type(e).__name__}: {e}") from e
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module)):
        got = type(result).__name__ if not isinstance(result, tuple) else (
            "(" + ", ".join(type(r).__name__ for r in result) + ")")
        raise ValueError(f"workload {spec!r}: {fn}() must return (nn.Module, example_inputs), got {got}")
    try:
        return capture_module(result[0], result[1], name=spec)
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as e:
        raise ValueError(f"workload {spec!r}: one training step of {fn}()'s model could not be traced: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
