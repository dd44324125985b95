"""The procedural driving world behind ``synth``: a curving three-lane road, an ego vehicle and traffic.

Everything is a pure function of a ``numpy.random.Generator``; the renderer (``render.py``) only reads
it. World units are metres, seconds and radians. The ego frame has ``x`` forward, ``y`` left, ``z`` up,
origin at the ego vehicle's centre on the ground.

The road is a centreline ``C(s)`` parametrised by arc length ``s`` (metres) with a smooth curvature
``kappa(s)`` (1/m, at most ``MAX_CURVATURE``); a point at lateral offset ``d`` (metres, positive left)
is ``C(s) + d * n(s)``. Vehicles (ego included) move along lanes at ``d`` in ``LANE_OFFSETS_M``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opendojo.data.labels import (
    MAX_BOXES,
    OCCUPANCY_CELL_M,
    OCCUPANCY_GRID,
    TRAJECTORY_DT_S,
    TRAJECTORY_STEPS,
)

LANE_WIDTH_M = 3.5
LANE_OFFSETS_M = (-LANE_WIDTH_M, 0.0, LANE_WIDTH_M)
ROAD_HALF_WIDTH_M = 1.5 * LANE_WIDTH_M
MAX_CURVATURE = 1.0 / 250.0  # 1/m; keeps the road a function of forward distance over the view range
WHEELBASE_M = 2.9
EGO_SIZE_M = (4.7, 1.9)  # length, width of the ego car (drawn in bird's-eye figures)
ROAD_STEP_M = 0.5
BOX_RANGE_M = 60.0  # vehicles further than this from the ego are not listed in ``boxes``
LANE_CHANGE_SHARE = 0.3  # drives with a lane change in their few seconds (the rest keep their lane)


@dataclass(frozen=True)
class Road:
    """A centreline sampled every ``ROAD_STEP_M`` metres from arc length ``s0``."""

    s0: float
    x: np.ndarray  # [S] metres, world
    y: np.ndarray  # [S]
    heading: np.ndarray  # [S] radians
    curvature: np.ndarray  # [S] 1/m

    def _at(self, arr: np.ndarray, s: np.ndarray) -> np.ndarray:
        i = (np.asarray(s) - self.s0) / ROAD_STEP_M
        return np.interp(i, np.arange(len(arr)), arr)

    def point(self, s: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World ``(x, y, heading)`` of lane coordinates ``(s, d)``; arrays broadcast."""
        h = self._at(self.heading, s)
        return self._at(self.x, s) - d * np.sin(h), self._at(self.y, s) + d * np.cos(h), h

    def curvature_at(self, s: np.ndarray) -> np.ndarray:
        return self._at(self.curvature, s)


@dataclass(frozen=True)
class Scene:
    """Ego and traffic states at ``frames + horizon`` instants ``t = i / fps``.

    ``ego_*`` are ``[F]`` arrays; vehicle arrays are ``[F, V]`` (lane coordinates) or ``[V]``.
    """

    fps: float
    frames: int
    road: Road
    ego_s: np.ndarray
    ego_d: np.ndarray
    ego_speed: np.ndarray
    veh_s: np.ndarray
    veh_d: np.ndarray
    veh_length: np.ndarray
    veh_width: np.ndarray
    veh_color: np.ndarray  # [V, 3] uint8

    def ego_pose(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World ``(x, y, yaw)`` of the ego vehicle, each ``[F]``; yaw includes the lane-change angle."""
        x, y, h = self.road.point(self.ego_s, self.ego_d)
        dd = np.gradient(self.ego_d) * self.fps
        return x, y, h + np.arctan2(dd, np.maximum(self.ego_speed, 0.1))

    def vehicles_in_ego_frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Other vehicles relative to the ego vehicle: ``(x, y, yaw)`` each ``[F, V]``, metres/radians."""
        ex, ey, eyaw = self.ego_pose()
        vx, vy, vh = self.road.point(self.veh_s, self.veh_d)
        dx, dy = vx - ex[:, None], vy - ey[:, None]
        c, s = np.cos(eyaw)[:, None], np.sin(eyaw)[:, None]
        return c * dx + s * dy, -s * dx + c * dy, vh - eyaw[:, None]


def _smooth_curve(
    rng: np.random.Generator, t: np.ndarray, scale: float, periods: tuple[float, ...]
) -> np.ndarray:
    """Sum of sinusoids with random phases, normalised to peak ``scale``; smooth and cheap."""
    out = np.zeros_like(t)
    for p in periods:
        out += rng.uniform(0.3, 1.0) * np.sin(
            2 * np.pi * t / (p * rng.uniform(0.7, 1.3)) + rng.uniform(0, 2 * np.pi)
        )
    return scale * out / max(1e-9, np.abs(out).max())


def make_scene(rng: np.random.Generator, frames: int, fps: float) -> Scene:
    """Simulate one drive of ``frames`` frames (plus the trajectory horizon) at ``fps`` frames/s."""
    horizon = int(np.ceil(TRAJECTORY_STEPS * TRAJECTORY_DT_S * fps)) + 1
    n = frames + horizon
    t = np.arange(n) / fps
    base = rng.uniform(12.0, 26.0)
    # Speed drifts as in traffic: peak accelerations of about 1 m/s² (highway driving rarely exceeds 2).
    ego_speed = np.clip(base + _smooth_curve(rng, t, rng.uniform(0.5, 3.0), (15.0, 40.0)), 5.0, 35.0)
    ego_s = np.concatenate([[0.0], np.cumsum(ego_speed[:-1]) / fps])
    lanes = np.array(LANE_OFFSETS_M)
    d0, d1 = rng.choice(lanes, size=2)
    if rng.uniform() >= LANE_CHANGE_SHARE:
        d1 = d0
    t_change = rng.uniform(0.2, 0.8) * t[-1]
    u = np.clip((t - t_change) / 3.0, 0.0, 1.0)  # a 3-second lane change, smoothstep profile
    ego_d = d0 + (d1 - d0) * u * u * (3 - 2 * u)

    v = int(rng.integers(6, 13))
    veh_speed = rng.uniform(8.0, 30.0, size=v)
    veh_s0 = rng.uniform(-50.0, 110.0, size=v)
    veh_s = veh_s0[None, :] + t[:, None] * veh_speed[None, :]
    veh_d = np.broadcast_to(rng.choice(lanes, size=v)[None, :], (n, v)).copy()
    veh_length = rng.uniform(3.8, 5.2, size=v)
    veh_width = rng.uniform(1.7, 2.1, size=v)
    veh_color = rng.integers(30, 240, size=(v, 3)).astype(np.uint8)

    s_lo = min(ego_s.min(), veh_s.min()) - 200.0
    s_hi = max(ego_s.max(), veh_s.max()) + 200.0
    s = np.arange(s_lo, s_hi + ROAD_STEP_M, ROAD_STEP_M)
    kappa = _smooth_curve(rng, s, rng.uniform(0.2, 1.0) * MAX_CURVATURE, (180.0, 420.0, 900.0))
    heading = np.concatenate([[0.0], np.cumsum(kappa[:-1]) * ROAD_STEP_M])
    x = np.concatenate([[0.0], np.cumsum(np.cos(heading[:-1])) * ROAD_STEP_M])
    y = np.concatenate([[0.0], np.cumsum(np.sin(heading[:-1])) * ROAD_STEP_M])
    road = Road(float(s_lo), x, y, heading, kappa)
    return Scene(fps, frames, road, ego_s, ego_d, ego_speed, veh_s, veh_d, veh_length, veh_width, veh_color)


def cell_centres_m() -> np.ndarray:
    """Ego-frame coordinate (metres) of the centre of each occupancy row (x) or column (y), ``[G]``:
    row 0 / column 0 = far ahead / far left."""
    return (OCCUPANCY_GRID / 2 - np.arange(OCCUPANCY_GRID) - 0.5) * OCCUPANCY_CELL_M


def scene_labels(scene: Scene) -> dict[str, np.ndarray]:
    """Per-frame ground truth for the first ``scene.frames`` frames (schema in ``labels.py``)."""
    f = scene.frames
    ex, ey, eyaw = scene.ego_pose()
    dd = np.gradient(scene.ego_d) * scene.fps
    lateral_curv = np.gradient(dd) * scene.fps / np.maximum(scene.ego_speed, 1.0) ** 2
    curv = scene.road.curvature_at(scene.ego_s) + lateral_curv
    steering = np.arctan(WHEELBASE_M * curv)

    step = TRAJECTORY_DT_S * scene.fps
    idx = np.arange(f)[:, None] + np.rint(step * np.arange(1, TRAJECTORY_STEPS + 1))[None, :].astype(int)
    dx, dy = ex[idx] - ex[:f, None], ey[idx] - ey[:f, None]
    c, s = np.cos(eyaw[:f])[:, None], np.sin(eyaw[:f])[:, None]
    trajectory = np.stack([c * dx + s * dy, -s * dx + c * dy], axis=-1)

    vx, vy, vyaw = (a[:f] for a in scene.vehicles_in_ego_frame())
    cell = OCCUPANCY_CELL_M
    centres = cell_centres_m()
    gx, gy = centres[:, None], centres[None, :]
    occupancy = np.zeros((f, OCCUPANCY_GRID, OCCUPANCY_GRID), dtype=bool)
    for j in range(vx.shape[1]):  # few vehicles; each test is vectorised over frames and cells
        rx, ry = gx[None] - vx[:, j, None, None], gy[None] - vy[:, j, None, None]
        c, s = np.cos(vyaw[:, j])[:, None, None], np.sin(vyaw[:, j])[:, None, None]
        along, across = c * rx + s * ry, -s * rx + c * ry
        grow = cell / 2  # a cell counts as occupied when the footprint reaches into it (approximately)
        occupancy |= (np.abs(along) <= scene.veh_length[j] / 2 + grow) & (
            np.abs(across) <= scene.veh_width[j] / 2 + grow
        )

    dist = np.hypot(vx, vy)
    order = np.argsort(np.where(dist <= BOX_RANGE_M, dist, np.inf), axis=1, kind="stable")[:, :MAX_BOXES]
    rows = np.arange(f)[:, None]
    fields = [
        vx,
        vy,
        np.broadcast_to(scene.veh_length, vx.shape),
        np.broadcast_to(scene.veh_width, vx.shape),
        np.arctan2(np.sin(vyaw), np.cos(vyaw)),
    ]
    boxes = np.zeros((f, MAX_BOXES, 5), dtype=np.float32)
    mask = np.zeros((f, MAX_BOXES), dtype=bool)
    k = order.shape[1]
    boxes[:, :k] = np.stack([a[rows, order] for a in fields], axis=-1)
    mask[:, :k] = dist[rows, order] <= BOX_RANGE_M
    boxes[~mask] = 0.0
    return {
        "speed": scene.ego_speed[:f].astype(np.float32),
        "steering": steering[:f].astype(np.float32),
        "trajectory": trajectory.astype(np.float32),
        "occupancy": occupancy.astype(np.uint8),
        "boxes": boxes,
        "box_mask": mask,
    }
