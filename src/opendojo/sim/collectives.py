"""Alpha-beta costs of collectives over the fabrics of :mod:`opendojo.hw`.

``time = steps · alpha + volume / (bandwidth · coll_eff)``. A ring all-reduce over ``p`` ranks moves
``2 (p − 1) / p`` of the payload through every rank's link in ``2 (p − 1)`` steps (reduce-scatter +
all-gather); NCCL switches to trees at large ``p``, which we model by capping the latency term at
``2 log2(p)`` steps — the bandwidth term is the same for both.

* GPUs: a group inside one NVLink domain uses NVLink (``scale_up_bw`` per GPU and direction); a group
  spanning boxes is limited by each GPU's own InfiniBand NIC (``scale_out_bw``, rail-optimised fabric).
* Dojo: tiles form a 2-D mesh; a ring laid along the mesh uses one neighbour link per step; a 2-D mesh
  with both dimensions > 1 runs two rings at once (one per dimension, half the payload each), doubling
  the bandwidth. Inside a tile, its D1 dies all-reduce over their edge links the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from opendojo.hw.system import System


@dataclass(frozen=True)
class Link:
    """Bandwidth (B/s, per rank and direction, achieved) and per-step latency (s) of a group."""

    bw: float
    alpha: float


def allreduce_time(nbytes: float, ranks: int, link: Link) -> float:
    """Seconds to all-reduce ``nbytes`` (per rank) over ``ranks`` ranks."""
    if ranks <= 1 or nbytes <= 0:
        return 0.0
    steps = min(2 * (ranks - 1), 2 * math.ceil(math.log2(ranks)) + 2)
    return steps * link.alpha + 2.0 * (ranks - 1) / ranks * nbytes / link.bw


def half_allreduce_time(nbytes: float, ranks: int, link: Link) -> float:
    """Seconds for a ring reduce-scatter (or all-gather) of ``nbytes`` per rank: half an all-reduce
    (``(p − 1) / p`` of the payload in ``p − 1`` steps)."""
    if ranks <= 1 or nbytes <= 0:
        return 0.0
    steps = min(ranks - 1, math.ceil(math.log2(ranks)) + 1)
    return steps * link.alpha + (ranks - 1) / ranks * nbytes / link.bw


def p2p_time(nbytes: float, link: Link) -> float:
    """Seconds to send ``nbytes`` to a neighbour (pipeline stage boundary)."""
    return 0.0 if nbytes <= 0 else link.alpha + nbytes / link.bw


def group_link(system: System, ranks: int, stride: int) -> Link:
    """The link a group of ``ranks`` ranks sees when its members are ``stride`` devices apart.

    Ranks are laid out tensor-parallel innermost, then data-parallel, then pipeline: a TP group has
    stride 1, the DP group stride ``tp``, the PP group stride ``tp · dp``.
    """
    if system.topology == "nvlink+ib":
        inside = ranks * stride <= system.scale_up_size
        bw = system.scale_up_bw if inside else system.scale_out_bw
        return Link(bw * system.coll_eff, system.link_latency_s)
    if system.topology == "mesh2d":
        rows, cols = system.mesh_shape
        two_d = ranks > max(rows, cols) or (rows > 1 and cols > 1 and ranks >= 4)
        hops = max(1, stride if stride < cols else stride // cols)  # ring neighbours are this far apart
        return Link(system.link_bw * (2.0 if two_d else 1.0) * system.coll_eff / hops,
                    system.link_latency_s * hops)
    return Link(float("inf"), 0.0)


def intra_tile_link(system: System) -> Link:
    """The link between the D1 dies inside one Dojo tile (5 × 5 mesh: two rings at once)."""
    d = system.device
    return Link(d.intra_link_bw * 2.0 * system.coll_eff, system.link_latency_s)
