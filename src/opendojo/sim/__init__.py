"""opendojo.sim — the training-performance simulator: workload capture on the meta device, parallel
layouts, per-op efficiency curves, alpha-beta collectives, Dojo SRAM/HBM fit, power and H100-equivalents.

Entry point: :func:`simulate` → :class:`SimResult` (``.to_dict()`` is the ``dojo simulate --json`` object).
"""

from opendojo.sim.catalog import list_workloads, load_workload
from opendojo.sim.layout import Layout, parse_parallel
from opendojo.sim.result import SimResult
from opendojo.sim.simulate import H100_EQ_DEFINITIONS, simulate
from opendojo.sim.workload import Workload, capture_module

__all__ = ["H100_EQ_DEFINITIONS", "Layout", "SimResult", "Workload", "capture_module", "list_workloads",
           "load_workload", "parse_parallel", "simulate"]
