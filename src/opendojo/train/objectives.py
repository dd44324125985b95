"""Task losses and evaluation metrics of the FSD network, with the baselines they must beat.

Targets (per batch, as the data engine labels them; see ``opendojo.data.labels``):
``occupancy`` ``[B, T, G, G]`` (0/1), ``trajectory`` ``[B, T, K, 2]`` metres (ego frame, x forward),
``speed`` ``[B, T]`` m/s, ``steering`` ``[B, T]`` rad.

Metrics are accumulated as sums (so ranks can add them with one all-reduce) and turned into:
occupancy IoU over all cells of the eval set (prediction = logit > 0), trajectory ADE (mean L2 error over
all waypoints, metres) and FDE (L2 error of the last waypoint, metres), speed MAE (m/s), steering MAE (rad).

Baselines computed in the same pass, from the labels alone:
- occupancy ``prior``: predict each cell occupied iff it is occupied in more than half of the eval frames
  (the best constant grid; on sparse grids this is usually the empty grid, IoU 0), and ``all``: every
  cell occupied (IoU = occupied fraction);
- trajectory ``zero`` (stand still) and ``constant velocity``: drive straight ahead at the labelled current
  speed, waypoint k at ``speed · dt · k`` metres (uses the true speed, so it is a strong baseline);
- speed ``mean``: the RMS error (= standard deviation) of predicting the eval-set mean speed;
- the two baselines the network must beat by a margin (given the training set's mean speed
  ``train_speed_mps``, which the untrained network's speed head starts at): ``speed_mae_mps_mean``, the
  MAE of predicting that speed, and ``ade_m_mean_speed``, the ADE of driving straight on at it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["TARGETS", "MetricSums", "soft_iou", "task_loss"]

TARGETS = ("occupancy", "trajectory", "speed", "steering")


def soft_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Differentiable IoU of ``sigmoid(logits)`` with a 0/1 ``target`` (same shape), over all cells.

    Summed over the whole batch rather than per frame, so frames without any vehicle do not divide by
    zero; a scalar in [0, 1].
    """
    p, y = torch.sigmoid(logits.float()), target.float()
    inter = (p * y).sum()
    return inter / (p.sum() + y.sum() - inter).clamp_min(1.0)


def task_loss(
    out: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    weights: dict[str, float],
    occupancy_pos_weight: float = 1.0,
    occupancy_soft_iou: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the task losses, and each unweighted part (detached).

    occupancy: binary cross-entropy on logits, occupied cells weighted by ``occupancy_pos_weight``, plus
    ``occupancy_soft_iou`` × (1 − :func:`soft_iou`). Why both: the grid is ~2 % occupied, so BCE alone
    settles on a faint probability smeared along the lanes that is below the fixed 0.5 threshold the IoU
    is scored at; the soft-IoU term rewards exactly the overlap that is scored, which makes the network
    commit to the cells it can see. trajectory: L1 per coordinate (m); speed: L1 (m/s); steering: L1
    (rad). Every part is a mean over its elements (the soft IoU is over the local batch), so the total
    hardly depends on how a global batch is split across ranks.
    """
    logits, occupied = out["occupancy"].float(), target["occupancy"].float()
    occupancy = F.binary_cross_entropy_with_logits(
        logits, occupied, pos_weight=torch.tensor(occupancy_pos_weight, device=logits.device)
    )
    if occupancy_soft_iou:
        occupancy = occupancy + occupancy_soft_iou * (1.0 - soft_iou(logits, occupied))
    parts = {
        "occupancy": occupancy,
        "trajectory": F.l1_loss(out["trajectory"].float(), target["trajectory"]),
        "speed": F.l1_loss(out["speed"].float(), target["speed"]),
        "steering": F.l1_loss(out["steering"].float(), target["steering"]),
    }
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: v.detach() for k, v in parts.items()}


class MetricSums:
    """Running sums for the eval metrics; ``as_tensor``/``from_tensor`` for an all-reduce."""

    NAMES = (
        "occ_inter",
        "occ_union",
        "occ_cells",
        "occ_positive",
        "occ_frames",
        "ade_sum",
        "fde_sum",
        "cv_ade_sum",
        "cv_fde_sum",
        "zero_ade_sum",
        "zero_fde_sum",
        "traj_points",
        "traj_tracks",
        "speed_abs",
        "speed_sum",
        "speed_sq",
        "speed_mean_abs",
        "mean_ade_sum",
        "steer_abs",
        "values",
    )

    def __init__(self, grid: int, dt_s: float, train_speed_mps: float = 0.0) -> None:
        self.dt_s, self.train_speed_mps = dt_s, float(train_speed_mps)
        self.sums = torch.zeros(len(self.NAMES), dtype=torch.float64)
        self.cell_counts = torch.zeros(grid, grid, dtype=torch.float64)  # occupied count per cell

    def add(self, out: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> None:
        """Accumulate one batch of model outputs and targets."""
        s = dict(zip(self.NAMES, [0.0] * len(self.NAMES), strict=True))
        pred = out["occupancy"].detach().float() > 0
        occ = target["occupancy"] > 0
        s["occ_inter"] = (pred & occ).sum().item()
        s["occ_union"] = (pred | occ).sum().item()
        s["occ_cells"] = occ.numel()
        s["occ_positive"] = occ.sum().item()
        s["occ_frames"] = occ[..., 0, 0].numel()
        self.cell_counts += occ.flatten(0, -3).sum(0).double().cpu()
        traj = target["trajectory"].float()
        err = (out["trajectory"].detach().float() - traj).norm(dim=-1)  # [B, T, K]
        k = traj.shape[-2]
        steps = torch.arange(1, k + 1, device=traj.device, dtype=traj.dtype) * self.dt_s
        cv = torch.zeros_like(traj)
        cv[..., 0] = target["speed"].float()[..., None] * steps
        cv_err = (cv - traj).norm(dim=-1)
        cv[..., 0] = self.train_speed_mps * steps
        s["mean_ade_sum"] = (cv - traj).norm(dim=-1).sum().item()
        zero_err = traj.norm(dim=-1)
        s["ade_sum"], s["fde_sum"] = err.sum().item(), err[..., -1].sum().item()
        s["cv_ade_sum"], s["cv_fde_sum"] = cv_err.sum().item(), cv_err[..., -1].sum().item()
        s["zero_ade_sum"], s["zero_fde_sum"] = zero_err.sum().item(), zero_err[..., -1].sum().item()
        s["traj_points"], s["traj_tracks"] = err.numel(), err[..., -1].numel()
        speed = target["speed"].float()
        s["speed_abs"] = (out["speed"].detach().float() - speed).abs().sum().item()
        s["speed_sum"], s["speed_sq"] = speed.sum().item(), speed.square().sum().item()
        s["speed_mean_abs"] = (speed - self.train_speed_mps).abs().sum().item()
        s["steer_abs"] = (out["steering"].detach().float() - target["steering"].float()).abs().sum().item()
        s["values"] = speed.numel()
        self.sums += torch.tensor([s[n] for n in self.NAMES], dtype=torch.float64)

    def as_tensor(self) -> torch.Tensor:
        """All sums as one float64 vector (for ``all_reduce``)."""
        return torch.cat([self.sums, self.cell_counts.flatten()])

    def load_tensor(self, flat: torch.Tensor) -> None:
        """Replace the sums by ``flat`` (the reduced :meth:`as_tensor`)."""
        n = len(self.NAMES)
        self.sums = flat[:n].clone()
        self.cell_counts = flat[n:].view_as(self.cell_counts).clone()

    def metrics(self) -> dict[str, float]:
        """Final metrics and baselines (names carry their units)."""
        s = dict(zip(self.NAMES, self.sums.tolist(), strict=True))
        if s["values"] == 0:
            raise ValueError("no evaluation batches were accumulated")
        prior = self.cell_counts > s["occ_frames"] / 2  # the best constant grid (majority per cell)
        prior_inter = (self.cell_counts * prior).sum().item()
        prior_union = (prior.sum().item() * s["occ_frames"]) + s["occ_positive"] - prior_inter
        mean_speed = s["speed_sum"] / s["values"]
        # Predicting the mean speed has RMS error = std (its MAE is at most that; one pass cannot get it).
        speed_std = max(s["speed_sq"] / s["values"] - mean_speed**2, 0.0) ** 0.5
        return {
            "occupancy_iou": s["occ_inter"] / max(s["occ_union"], 1.0),
            "baseline_occupancy_iou_prior": prior_inter / max(prior_union, 1.0),
            "baseline_occupancy_iou_all": s["occ_positive"] / max(s["occ_cells"], 1.0),
            "ade_m": s["ade_sum"] / s["traj_points"],
            "fde_m": s["fde_sum"] / s["traj_tracks"],
            "baseline_ade_m_constant_velocity": s["cv_ade_sum"] / s["traj_points"],
            "baseline_fde_m_constant_velocity": s["cv_fde_sum"] / s["traj_tracks"],
            "baseline_ade_m_zero": s["zero_ade_sum"] / s["traj_points"],
            "baseline_ade_m_mean_speed": s["mean_ade_sum"] / s["traj_points"],
            "baseline_fde_m_zero": s["zero_fde_sum"] / s["traj_tracks"],
            "speed_mae_mps": s["speed_abs"] / s["values"],
            "baseline_speed_std_mps": speed_std,
            "baseline_speed_mae_mps_mean": s["speed_mean_abs"] / s["values"],
            "steering_mae_rad": s["steer_abs"] / s["values"],
        }
