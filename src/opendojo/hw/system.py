"""Load hardware spec files and derive systems from their parts.

A spec file (``hw/specs/NAME.toml``) describes one part: its ``[parts]`` (name → count) and its own
``[quantities]``. Additive quantities (FLOP/s, SRAM, HBM, bandwidth to HBM, power) are summed over the
part tree, so a tile's 9.05 PFLOP/s is 25 × 354 × 1.024 TFLOP/s and appears nowhere as a typed number.
A file that has a ``[system]`` table is a system the simulator can run on: it names its ``device`` — the
unit of parallelism (a training tile for Dojo, a GPU, the host CPU) — and the device count is derived
from the tree too.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path

from opendojo.hw.quantity import Quantity, parse_quantity

#: Summed over parts; a file may not restate them when its parts already provide them.
DERIVED_ONLY = ("peak_flops_bf16", "peak_flops_cfloat8", "peak_flops_fp32", "sram_bytes", "sram_bw",
                "hbm_bytes", "hbm_bw")
#: Summed over parts unless the file states its own (a package draws more than its dies).
ADDITIVE = (*DERIVED_ONLY, "power_w")
#: The precisions the hardware models price: the rates a spec file states as ``peak_flops_<precision>``.
PRECISIONS = ("bf16", "cfloat8", "fp32")
#: The trainer's numeric recipes (fp32, BF16 autocast, and opendojo.nn's CFloat recipes ``dojo`` and
#: ``dojo_lean``, whose GEMMs run in CFloat8) → the precision the simulator prices each at. Written once,
#: here: ``train.config.PRECISIONS`` is ``tuple(RECIPE_PRECISION)``, and the service's quotes map a
#: job's recipe through this table.
RECIPE_PRECISION = {"fp32": "fp32", "bf16": "bf16", "dojo": "cfloat8", "dojo_lean": "cfloat8"}
FAMILIES = ("dojo", "gpu", "cpu")
_REQUIRED_DEVICE = {
    "dojo": ("peak_flops_bf16", "peak_flops_fp32", "sram_bytes", "power_w", "edge_bw", "hop_latency_s"),
    "gpu": ("peak_flops_bf16", "peak_flops_fp32", "hbm_bytes", "hbm_bw", "nvlink_bw", "nic_bw", "power_w"),
    "cpu": ("peak_flops_fp32", "conv_flops", "hbm_bytes", "hbm_bw", "op_overhead_s"),
}
#: Active sweep overrides, ``{"part.field": value}`` (set only while a system is being built).
_OVERRIDES: ContextVar[dict[str, float] | None] = ContextVar("hw_overrides", default=None)
#: How an op's dispatch cost adds up: ``serial`` (eager CPU: every op, views too, pays ``op_overhead_s``
#: in series) or ``launch-floor`` (GPU kernel launch, Dojo end-of-op barrier: an op lasts at least it).
DISPATCH = ("serial", "launch-floor")
#: How the optimizer step dispatches: a Python loop over tensors (``per-tensor``, eager CPU AdamW), one
#: launch per template op for all tensors (``foreach``, CUDA's default AdamW), or per op (``per-op``).
OPTIMIZER_DISPATCH = ("per-tensor", "foreach", "per-op")
_EFFICIENCY = ("eff_matmul_max", "eff_matmul_half_dim", "eff_conv_max", "eff_mem_bw", "op_overhead_s")


@dataclass(frozen=True)
class Part:
    """One spec file, parsed and validated (nothing derived yet)."""

    name: str
    kind: str
    description: str
    path: str
    parts: dict[str, int] = field(default_factory=dict)
    quantities: dict[str, Quantity] = field(default_factory=dict)
    system: dict[str, object] | None = None
    hypothetical: bool = False
    capabilities: dict[str, object] | None = None


@dataclass(frozen=True)
class Capabilities:
    """What the simulator may assume about a device and its software, from the ``[capabilities]`` table of
    the device's spec file (docs/hardware.md): adding a kind of system means adding files, not code.

    ``usable_memory``: fraction of the device memory a model may use (CUDA context, NCCL buffers,
    allocator slack, the OS); ``memory_name``: what that memory is called in messages; ``dispatch`` and
    ``optimizer_dispatch``: :data:`DISPATCH`, :data:`OPTIMIZER_DISPATCH`; ``tensor_parallel``: the tensor-
    parallel degrees worth trying (bounded by the scale-up domain where there is one); ``pipeline``:
    whether pipeline stages are tried; ``overlap_communication``: whether gradient all-reduces overlap the
    backward pass; ``precisions``: the precisions the device is modelled for; ``max_devices``: 0 for any
    number, else the most devices a system of it can have; ``cfloat8_gemms``: :data:`CFLOAT8_GEMMS`."""

    usable_memory: float
    memory_name: str
    dispatch: str
    optimizer_dispatch: str
    tensor_parallel: tuple[int, ...]
    pipeline: bool
    overlap_communication: bool
    precisions: tuple[str, ...]
    max_devices: int = 0
    cfloat8_gemms: str = "native"


#: Which GEMMs run at the ``cfloat8`` peak: ``native`` (every matmul and convolution: Dojo computes in
#: CFloat8) or ``opendojo.nn`` (only the Linear GEMMs ``opendojo.nn`` runs on FP8 tensor cores, the rest at
#: the BF16 peak: a GPU running a converted model).
CFLOAT8_GEMMS = ("native", "opendojo.nn")


def parse_capabilities(raw: dict, where: str) -> Capabilities:
    """Validate a ``[capabilities]`` table; errors name the file and the field."""
    from opendojo.errors import check_choice

    fields = {f: raw.get(f) for f in Capabilities.__dataclass_fields__}
    missing = [f for f, v in fields.items() if v is None and f not in ("max_devices", "cfloat8_gemms")]
    if missing:
        raise ValueError(f"{where}: [capabilities] is missing {', '.join(missing)}")
    usable = fields["usable_memory"]
    if isinstance(usable, bool) or not isinstance(usable, (int, float)) or not 0 < usable <= 1:
        raise ValueError(f"{where}: [capabilities] usable_memory = {usable!r} must be in (0, 1]")
    try:
        check_choice(f"{where}: [capabilities] dispatch", fields["dispatch"], DISPATCH)
        check_choice(f"{where}: [capabilities] optimizer_dispatch", fields["optimizer_dispatch"],
                     OPTIMIZER_DISPATCH)
        for p in fields["precisions"]:
            check_choice(f"{where}: [capabilities] precisions", p, PRECISIONS)
        check_choice(f"{where}: [capabilities] cfloat8_gemms", fields["cfloat8_gemms"] or "native",
                     CFLOAT8_GEMMS)
    except ValueError as e:
        raise ValueError(str(e)) from None
    tps = fields["tensor_parallel"]
    if not isinstance(tps, list) or not tps or not all(isinstance(t, int) and t >= 1 for t in tps):
        raise ValueError(f"{where}: [capabilities] tensor_parallel = {tps!r} must be a list of integers >= 1")
    return Capabilities(float(usable), str(fields["memory_name"]), fields["dispatch"],
                        fields["optimizer_dispatch"], tuple(tps), bool(fields["pipeline"]),
                        bool(fields["overlap_communication"]), tuple(fields["precisions"]),
                        int(fields["max_devices"] or 0), fields["cfloat8_gemms"] or "native")


@dataclass(frozen=True)
class Device:
    """The unit of parallelism of a system, with everything the step-time model needs.

    ``mem_*`` is the memory the device computes out of (SRAM on Dojo, HBM on a GPU, DRAM on the host);
    ``spill_*`` is the slower memory behind it (the DIP HBM share of one Dojo tile; zero elsewhere).
    Bytes in B, rates in FLOP/s and B/s, times in s.
    """

    name: str
    peak_flops: dict[str, float]
    vector_flops: float
    mem_bytes: float
    mem_bw: float
    spill_bytes: float
    spill_bw: float
    power_w: float
    eff_matmul_max: float
    eff_matmul_half_dim: float
    eff_conv_max: float
    eff_mem_bw: float
    op_overhead_s: float
    conv_flops: float | None = None
    conv_bwd_flops: float | None = None
    rng_rate: float | None = None
    first_touch_bw: float | None = None
    attention_flops: float | None = None
    #: The fused CPU attention kernel's curve: ``attention_flops · h(s_q) h(s_k) h(d)`` with this
    #: half-dimension, times ``attention_causal_eff`` under a causal mask (its FLOPs counted as half).
    attention_half_dim: float | None = None
    attention_causal_eff: float | None = None
    special_rate: float | None = None
    op_rates: dict[str, float] = field(default_factory=dict)  # aten op name -> elements/s (host)
    optimizer_tensor_s: float | None = None
    #: Half-dimensions of the conv curves (forward, backward) where measured; else ``eff_matmul_half_dim``.
    conv_half_dim: float | None = None
    conv_bwd_half_dim: float | None = None
    #: Fixed seconds per convolution call on the host's oneDNN path (primitive setup, weight reorder),
    #: forward and backward, on top of the FLOP time; the native path does not pay it.
    conv_call_s: float | None = None
    conv_bwd_call_s: float | None = None
    #: Fused recurrent layers (oneDNN LSTM on the host): FLOP/s forward and backward at the GEMM-shape
    #: factor 1 (divided by the calibration shape's factor, like ``conv_flops``).
    rnn_flops: float | None = None
    rnn_bwd_flops: float | None = None
    intra_ways: int = 1
    intra_link_bw: float = 0.0


@dataclass(frozen=True)
class System:
    """A machine the simulator runs a workload on: ``devices`` × ``device`` joined by a fabric.

    Fabric: Dojo tiles sit in a 2-D mesh (``link_bw`` per tile edge and direction, ``link_latency_s``
    per hop); GPUs sit in NVLink domains of ``scale_up_size`` (``scale_up_bw`` per GPU and direction)
    joined by InfiniBand (``scale_out_bw`` per GPU). ``coll_eff`` is the achieved fraction of link rate.
    """

    name: str
    family: str
    description: str
    devices: int
    device: Device
    power_w: float
    caps: Capabilities
    topology: str = "single"
    link_bw: float = 0.0
    link_latency_s: float = 0.0
    scale_up_size: int = 1
    scale_up_bw: float = 0.0
    scale_out_bw: float = 0.0
    coll_eff: float = 1.0
    hypothetical: bool = False
    mesh_shape: tuple[int, int] = (1, 1)
    #: Software assumption: pointwise ops that feed each other run as one kernel (torch.compile on GPUs).
    pointwise_fusion: bool = False

    @property
    def capacity_bytes(self) -> float:
        """Bytes per device a model may use: the usable share of device memory plus the spill memory."""
        return self.device.mem_bytes * self.caps.usable_memory + self.device.spill_bytes

    @property
    def peak_flops(self) -> dict[str, float]:
        """Whole-system peak FLOP/s per precision."""
        return {p: v * self.devices for p, v in self.device.peak_flops.items()}

    def with_devices(self, n: int) -> System:
        """The same system scaled to ``n`` devices (tiles, GPUs); per-device resources unchanged."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"nodes={n!r}: must be a positive integer number of devices")
        if self.caps.max_devices and n > self.caps.max_devices:
            raise ValueError(f"nodes={n}: system {self.name!r} has at most {self.caps.max_devices} "
                             f"device(s); allowed nodes=1..{self.caps.max_devices}")
        return replace(self, devices=n, power_w=self.power_w / self.devices * n,
                       scale_up_size=min(self.scale_up_size, n),
                       mesh_shape=_mesh_shape(n))


def clear_caches() -> None:
    """Forget parsed files and built systems (after ``dojo hw calibrate`` wrote new numbers)."""
    read_part.cache_clear()
    _load_system.cache_clear()


def spec_dir() -> Path:
    """The directory of the shipped spec files."""
    return Path(str(resources.files("opendojo.hw") / "specs"))


def cache_dir() -> Path:
    """Where measured calibrations live: ``$OPENDOJO_CACHE``, else ``$XDG_CACHE_HOME/opendojo``."""
    if os.environ.get("OPENDOJO_CACHE"):
        return Path(os.environ["OPENDOJO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "opendojo"


def _names() -> list[str]:
    return sorted(p.stem for p in spec_dir().glob("*.toml"))


def list_parts() -> list[str]:
    """Every spec file name (parts and systems)."""
    return _names()


def list_systems() -> list[str]:
    """Names of the systems the simulator can run on (spec files with a ``[system]`` table)."""
    return [n for n in _names() if read_part(n).system is not None]


def parse_part(raw: dict, where: str) -> Part:
    """Validate one spec file's parsed TOML; every error names ``where`` (the file) and the field."""
    for key in ("name", "kind", "description"):
        if not isinstance(raw.get(key), str) or not raw.get(key):
            raise ValueError(f"{where}: missing or empty field {key!r}")
    parts = raw.get("parts", {})
    if not isinstance(parts, dict):
        raise ValueError(f"{where}: [parts] must be a table of name = count")
    for child, count in parts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise ValueError(f"{where}: part count {child!r} = {count!r} must be a positive integer")
    quantities = {k: parse_quantity(v, where=where, field=k) for k, v in raw.get("quantities", {}).items()}
    system = raw.get("system")
    if system is not None:
        if system.get("family") not in FAMILIES:
            raise ValueError(f"{where}: [system] family {system.get('family')!r} must be one of {FAMILIES}")
        if not isinstance(system.get("device"), str):
            raise ValueError(f"{where}: [system] is missing field 'device' (the unit of parallelism)")
        system = {k: parse_quantity(v, where=where, field=f"system.{k}") if isinstance(v, dict) else v
                  for k, v in system.items()}
    capabilities = raw.get("capabilities")
    if capabilities is not None:
        parse_capabilities(capabilities, where)
    unknown = set(raw) - {"name", "kind", "description", "parts", "quantities", "system", "hypothetical",
                          "capabilities"}
    if unknown:
        raise ValueError(f"{where}: unknown top-level fields {sorted(unknown)}")
    return Part(raw["name"], raw["kind"], raw["description"], where, dict(parts), quantities, system,
                bool(raw.get("hypothetical", False)), capabilities)


@cache
def read_part(name: str) -> Part:
    """Read and validate ``specs/NAME.toml`` (with the host calibration from the cache merged in)."""
    path = spec_dir() / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"unknown hardware name {name!r}; valid names: {', '.join(_names())}")
    with open(path, "rb") as f:
        part = parse_part(tomllib.load(f), str(path))
    if part.name != name:
        raise ValueError(f"{path}: field 'name' is {part.name!r}, expected {name!r} (the file name)")
    calibrated = cache_dir() / f"{name}.toml"
    if calibrated.is_file():
        with open(calibrated, "rb") as f:
            raw = tomllib.load(f)
        measured = {k: parse_quantity(v, where=str(calibrated), field=k)
                    for k, v in raw.get("quantities", {}).items()}
        part = replace(part, quantities={**part.quantities, **measured}, path=f"{path} + {calibrated}")
    for child in part.parts:
        read_part(child)  # fail early, naming the child
    return part


def total(name: str, field_name: str) -> float:
    """A quantity of part ``name``: its own value, or (additive fields) the sum over its parts."""
    part = read_part(name)
    own = part.quantities.get(field_name)
    overrides = _OVERRIDES.get() or {}
    if own is not None and f"{name}.{field_name}" in overrides:
        own = own.at(overrides[f"{name}.{field_name}"])
    from_parts = 0.0
    provided = False
    if field_name in ADDITIVE:
        for child, count in part.parts.items():
            if has(child, field_name):
                from_parts += count * total(child, field_name)
                provided = True
        if field_name.startswith("peak_flops") and "perf_scale" in part.quantities:
            from_parts *= total(name, "perf_scale")
    if own is not None:
        if provided and field_name in DERIVED_ONLY:
            raise ValueError(f"{part.path}: field {field_name!r} is derived from its parts "
                             f"({part.parts}); do not type it twice")
        return own.value
    if provided:
        return from_parts
    raise ValueError(f"{part.path}: missing field {field_name!r} (and none of its parts provide it)")


def has(name: str, field_name: str) -> bool:
    """Whether part ``name`` states or (for additive fields) derives ``field_name``."""
    part = read_part(name)
    if field_name in part.quantities:
        return True
    return field_name in ADDITIVE and any(has(c, field_name) for c in part.parts)


def count_of(name: str, child: str) -> int:
    """How many ``child`` parts the tree under ``name`` holds (1 if ``name`` is ``child``)."""
    if name == child:
        return 1
    return sum(n * count_of(c, child) for c, n in read_part(name).parts.items())


def _mesh_shape(n: int) -> tuple[int, int]:
    """The most square a × b = n arrangement of tiles (a <= b)."""
    a = int(n ** 0.5)
    while n % a:
        a -= 1
    return (a, n // a)


def _q(part: Part, key: str, default: float | None = None) -> float:
    if part.system and key in part.system and isinstance(part.system[key], Quantity):
        return (_OVERRIDES.get() or {}).get(f"{part.name}.system.{key}", part.system[key].value)
    if default is None:
        raise ValueError(f"{part.path}: [system] is missing field {key!r}")
    return default


def uncertain_quantities(name: str) -> dict[str, Quantity]:
    """Every ranged quantity in the tree under ``name``, keyed ``"part.field"`` (sweepable)."""
    part = read_part(name)
    out = {f"{name}.{k}": q for k, q in part.quantities.items() if q.is_range}
    for k, v in (part.system or {}).items():
        if isinstance(v, Quantity) and v.is_range:
            out[f"{name}.system.{k}"] = v
    for child in part.parts:
        out.update(uncertain_quantities(child))
    if part.system is not None:
        out.update(uncertain_quantities(part.system["device"]))
    return out


def load_system(name: str, overrides: dict[str, float] | None = None) -> System:
    """Build the :class:`System` named ``name``; errors list the valid system names.

    ``overrides`` sets uncertain quantities to another value, keyed ``"part.field"`` as in
    :func:`uncertain_quantities` (e.g. ``{"training-tile.edge_bw": 9e12}``) — the sweep hook.
    """
    if not isinstance(name, str):
        raise TypeError(f"system must be a name (str), got {type(name).__name__}")
    key = tuple(sorted((overrides or {}).items()))
    if overrides:
        known = uncertain_quantities(name) if isinstance(name, str) and name in list_systems() else {}
        for k, v in overrides.items():
            if k not in known:
                raise ValueError(f"override {k!r} is not a ranged quantity of {name!r}; "
                                 f"sweepable: {', '.join(sorted(known)) or 'none'}")
            if not known[k].low <= v <= known[k].high:
                raise ValueError(f"override {k}={v} is outside its range [{known[k].low}, {known[k].high}]")
    return _load_system(name, key)


@cache
def _load_system(name: str, overrides: tuple[tuple[str, float], ...]) -> System:
    token = _OVERRIDES.set(dict(overrides))
    try:
        return _build_system(name)
    finally:
        _OVERRIDES.reset(token)


#: Optional measured device fields, each read from the quantity of the same name when a spec states it.
MEASURED_FIELDS = ("conv_flops", "conv_bwd_flops", "rng_rate", "first_touch_bw", "attention_flops",
                   "attention_half_dim", "attention_causal_eff",
                   "special_rate", "optimizer_tensor_s", "rnn_flops", "conv_half_dim", "conv_bwd_half_dim",
                   "rnn_bwd_flops", "conv_call_s", "conv_bwd_call_s")


def measured_device(name: str, q: dict[str, float], **common) -> Device:
    """A GPU or host :class:`Device` from its quantities ``q`` (SI units): memory from ``hbm_*``, the
    measured rates of :data:`MEASURED_FIELDS` where given, and the per-op element rates ``rate_<op>``.
    ``common`` holds the fields every device has (peaks, efficiencies, power)."""
    return Device(name, mem_bytes=q["hbm_bytes"], mem_bw=q["hbm_bw"], spill_bytes=0.0, spill_bw=0.0,
                  op_rates={k.removeprefix("rate_"): v for k, v in q.items() if k.startswith("rate_")},
                  **{k: q.get(k) for k in MEASURED_FIELDS}, **common)


def _build_system(name: str) -> System:
    valid = list_systems()
    if name not in valid:
        raise ValueError(f"unknown system {name!r}; valid systems: {', '.join(valid)}")
    part = read_part(name)
    fam, dev = part.system["family"], part.system["device"]
    devices = count_of(name, dev)
    if devices == 0:
        raise ValueError(f"{part.path}: [system] device {dev!r} does not appear in its parts")
    dpart = read_part(dev)
    for key in _REQUIRED_DEVICE[fam] + _EFFICIENCY:
        if not has(dev, key):
            raise ValueError(f"{dpart.path}: missing field {key!r} (needed for a {fam} device)")
    if dpart.capabilities is None:
        raise ValueError(f"{dpart.path}: missing table [capabilities] (needed for a system's device)")
    caps = parse_capabilities(dpart.capabilities, dpart.path)
    topology = str(part.system.get("topology", "single"))
    q = {k: total(dev, k) for k in dpart.quantities.keys() | set(DERIVED_ONLY) if has(dev, k)}
    peak = {p: q.get(f"peak_flops_{p}", q["peak_flops_fp32"]) for p in PRECISIONS}
    power = total(name, "power_w")
    common = dict(peak_flops=peak, vector_flops=q["peak_flops_fp32"], power_w=power / devices,
                  eff_matmul_max=q["eff_matmul_max"], eff_matmul_half_dim=q["eff_matmul_half_dim"],
                  eff_conv_max=q["eff_conv_max"], eff_mem_bw=q["eff_mem_bw"],
                  op_overhead_s=q["op_overhead_s"])
    if fam == "dojo":
        # DIPs sit outside the tiles; each tile gets an equal share of their HBM and bandwidth.
        hbm = total(name, "hbm_bytes") if has(name, "hbm_bytes") else 0.0
        hbm_bw = total(name, "hbm_bw") if has(name, "hbm_bw") else 0.0
        # Inside a tile the compiler splits layers over its D1 dies, which talk over their edge links.
        dies = next(iter(dpart.parts))
        device = Device(dev, mem_bytes=q["sram_bytes"], mem_bw=q["sram_bw"], spill_bytes=hbm / devices,
                        spill_bw=hbm_bw / devices, intra_ways=count_of(dev, dies),
                        intra_link_bw=total(dies, "edge_bw"), **common)
        return System(name, fam, part.description, devices, device, power, caps, topology,
                      link_bw=q["edge_bw"],
                      link_latency_s=q["hop_latency_s"], hypothetical=part.hypothetical or dpart.hypothetical,
                      mesh_shape=_mesh_shape(devices), coll_eff=_q(part, "coll_eff"), pointwise_fusion=True)
    device = measured_device(dev, q, **common)
    if fam == "cpu":
        return System(name, fam, part.description, devices, device, power, caps, topology)
    domain = part.system.get("scale_up_domain", dev)
    return System(name, fam, part.description, devices, device, power, caps, topology,
                  link_latency_s=_q(part, "link_latency_s"), scale_up_size=count_of(domain, dev),
                  scale_up_bw=q["nvlink_bw"], scale_out_bw=q["nic_bw"], coll_eff=_q(part, "coll_eff"),
                  hypothetical=part.hypothetical, pointwise_fusion=True)
