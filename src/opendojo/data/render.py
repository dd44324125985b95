"""Vectorised numpy renderer for ``Scene``: pinhole cameras at fixed yaws on the ego vehicle.

Why it is fast: a camera is rigidly mounted, so the ground point that each pixel sees, in the ego
frame, never changes. ``Camera`` precomputes it once; a frame then only maps those points to road
coordinates (one ``np.interp`` against the centreline expressed in the ego frame) and looks the
surface class up in a small colour table. Vehicles are painted as shaded boxes, far to near.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opendojo.data.scene import LANE_WIDTH_M, ROAD_HALF_WIDTH_M, Scene, cell_centres_m
from opendojo.errors import check_int

CAMERA_YAWS_DEG: dict[str, float] = {
    "front": 0.0,
    "left": 90.0,
    "right": -90.0,
    "rear": 180.0,
    "front_left": 45.0,
    "front_right": -45.0,
    "rear_left": 135.0,
    "rear_right": -135.0,
}
CAMERA_HEIGHT_M = 1.5
HORIZONTAL_FOV_DEG = 90.0
MAX_GROUND_RANGE_M = 110.0
VEHICLE_HEIGHT_M = 1.5
# Ground texture: asphalt grain and grass tufts as tiles of this size (metres) with a hashed brightness.
# Fine enough that their motion in the side cameras (several pixels per frame) shows the ego speed at 64².
TEXTURE_TILE_M = 1.5
TEXTURE_LUMA = 14  # peak brightness change of a tile (luma levels, of 219)
# Roadside props, fixed in the world, so near ones sweep past faster than far ones (parallax):
# delineator posts just off the road, and trees further out, at (spacing m, lateral m, width m, height m).
POSTS = (12.5, ROAD_HALF_WIDTH_M + 1.0, 0.25, 1.1)
TREES = (21.0, ROAD_HALF_WIDTH_M + 7.0, 2.4, 5.5)

# surface classes -> RGB
_SKY, _FAR, _GRASS_A, _GRASS_B, _ROAD_A, _ROAD_B, _PAINT, _POST, _TREE = range(9)
_PALETTE = np.array(
    [
        [135, 180, 230],
        [170, 190, 200],
        [70, 130, 60],
        [85, 145, 70],
        [88, 88, 92],
        [100, 100, 104],
        [235, 235, 225],
        [240, 240, 240],
        [40, 95, 40],
    ],
    dtype=np.uint8,
)


def camera_names(cameras: int) -> list[str]:
    """The first ``cameras`` names of the rig: front, left, right, rear, then the diagonals."""
    names = list(CAMERA_YAWS_DEG)
    return names[: check_int("cameras", cameras, low=1, high=len(names))]


@dataclass
class Camera:
    """A level pinhole camera ``CAMERA_HEIGHT_M`` above ground, rotated ``yaw`` radians (left positive)."""

    name: str
    height: int
    width: int

    def __post_init__(self) -> None:
        self.yaw = np.deg2rad(CAMERA_YAWS_DEG[self.name])
        self.focal = (self.width / 2) / np.tan(np.deg2rad(HORIZONTAL_FOV_DEG) / 2)
        self.cx, self.cy = self.width / 2, self.height / 2
        u = np.arange(self.width) + 0.5
        v = np.arange(self.height) + 0.5
        uu, vv = np.meshgrid(u, v)
        down = (vv - self.cy) / self.focal
        with np.errstate(divide="ignore"):
            dist = np.where(down > 0, 1.0 / np.maximum(down, 1e-9), np.inf) * CAMERA_HEIGHT_M
        right = dist * (uu - self.cx) / self.focal
        ground = (down > 0) & (np.hypot(dist, right) < MAX_GROUND_RANGE_M)
        self.ground = ground
        fwd, left = dist[ground], -right[ground]
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        self.gx = (c * fwd - s * left).astype(np.float64)  # ego-frame ground points of the ground pixels
        self.gy = (s * fwd + c * left).astype(np.float64)
        self.background = np.where(down > 0, _FAR, _SKY).astype(np.uint8)

    def project(
        self, x: np.ndarray, y: np.ndarray, z: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ego-frame points (metres) to pixel ``(u, v)`` and forward depth (metres)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        fwd, left = c * x + s * y, -s * x + c * y
        depth = np.maximum(fwd, 1e-6)
        return self.cx - self.focal * left / depth, self.cy + self.focal * (CAMERA_HEIGHT_M - z) / depth, fwd


def ground_grid(cameras: int, size: int) -> np.ndarray:
    """Where the ground centre of each occupancy cell shows in each camera of the rig, for
    ``FSDNet.set_ground_grid``: ``[cameras, G, G, 2]`` float32, ``(u, v)`` scaled to [-1, 1] over a
    ``size``×``size`` image (``grid_sample``'s convention); -2 where the camera does not see the cell."""
    centres = cell_centres_m()
    gx, gy = np.meshgrid(centres, centres, indexing="ij")  # [G, G]: row = x (ahead), column = y (left)
    out = np.full((cameras, *gx.shape, 2), -2.0, dtype=np.float32)
    for i, name in enumerate(camera_names(cameras)):
        u, v, depth = Camera(name, size, size).project(gx, gy, np.zeros_like(gx))
        seen = (depth > 0.1) & (u >= 0) & (u < size) & (v >= 0) & (v < size)
        out[i, seen, 0] = 2 * u[seen] / size - 1
        out[i, seen, 1] = 2 * v[seen] / size - 1
    return out


def _centreline_in_ego_frame(scene: Scene, i: int, ex: float, ey: float, eyaw: float):
    s = scene.ego_s[i] + np.arange(-MAX_GROUND_RANGE_M - 20, MAX_GROUND_RANGE_M + 20, 1.0)
    px, py, _ = scene.road.point(s, np.zeros_like(s))
    c, sn = np.cos(eyaw), np.sin(eyaw)
    dx, dy = px - ex, py - ey
    return c * dx + sn * dy, -sn * dx + c * dy, s


def _yuv(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV (what H.264 stores) of ``[..., 3]`` uint8 RGB colours."""
    f = np.asarray(rgb, dtype=np.float64)
    m = np.array([[0.2568, 0.5041, 0.0979], [-0.1482, -0.2910, 0.4392], [0.4392, -0.3678, -0.0714]])
    return np.clip(np.rint(f @ m.T + [16.0, 128.0, 128.0]), 0, 255).astype(np.uint8)


_PALETTE_YUV = _yuv(_PALETTE)  # [classes, 3]


def _ground_classes(cam: Camera, xc: np.ndarray, yc: np.ndarray, sc: np.ndarray):
    """Surface class and road coordinates ``(s, d)`` (metres) of each ground pixel of ``cam``."""
    d = cam.gy - np.interp(cam.gx, xc, yc)
    s = np.interp(cam.gx, xc, sc)
    ad = np.abs(d)
    band = (s * (1.0 / 6.0)).astype(np.int64) & 1
    cls = np.where(ad < ROAD_HALF_WIDTH_M, _ROAD_A, _GRASS_A) + band
    edge = (ad > ROAD_HALF_WIDTH_M - 0.25) & (ad < ROAD_HALF_WIDTH_M - 0.1)
    dash = (np.abs(ad - LANE_WIDTH_M / 2) < 0.08) & (np.mod(s, 9.0) < 3.0)
    cls[edge | dash] = _PAINT
    return cls, s, d


def _texture(s: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Brightness offset (luma levels, int16) of the ground tile at road coordinates ``(s, d)``: a hash of the
    tile index, so the pattern is fixed to the world and moves through the image with the ego vehicle."""
    i = np.floor(s * (1.0 / TEXTURE_TILE_M)).astype(np.int64)
    j = np.floor(d * (1.0 / TEXTURE_TILE_M)).astype(np.int64)
    h = ((i * 73856093) ^ (j * 19349663)) & 255
    return ((h - 127) * (TEXTURE_LUMA / 128.0)).astype(np.int16)


def render_frame(scene: Scene, i: int, cameras: list[Camera], pose: tuple[np.ndarray, ...],
                 vehicles: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """Render frame ``i`` for every camera, straight to planar yuv420p: ``[H * 3 // 2, W]`` uint8 each.

    Rendering in YUV skips a colour conversion per frame; chroma takes every other pixel of the class map
    (the scene is flat-shaded, so that equals averaging almost everywhere); the ground texture only
    changes brightness.
    """
    ex, ey, eyaw = (a[i] for a in pose)
    xc, yc, sc = _centreline_in_ego_frame(scene, i, ex, ey, eyaw)
    order = np.argsort(xc)  # the centreline stays a function of forward distance (curvature is bounded)
    xc, yc, sc = xc[order], yc[order], sc[order]
    vx, vy, vyaw = (a[i] for a in vehicles)
    veh_yuv = _yuv(scene.veh_color)
    win_yuv = _yuv(scene.veh_color // 3 + 20)
    props = _props_in_ego_frame(scene, i, ex, ey, eyaw)
    out = []
    for cam in cameras:
        cls, s, d = _ground_classes(cam, xc, yc, sc)
        classes = cam.background.copy()
        classes[cam.ground] = cls
        h, w = classes.shape
        img = np.empty((h * 3 // 2, w), dtype=np.uint8)
        q = h + h // 4
        planes = (img[:h], img[h:q].reshape(h // 2, w // 2), img[q:].reshape(h // 2, w // 2))
        sub = classes[::2, ::2]
        for k, plane in enumerate(planes):
            np.take(_PALETTE_YUV[:, k], classes if k == 0 else sub, out=plane)
        luma = planes[0][cam.ground].astype(np.int16) + _texture(s, d)
        planes[0][cam.ground] = np.clip(luma, 16, 235).astype(np.uint8)
        _paint_props(planes, cam, props)
        _paint_vehicles(planes, cam, scene, vx, vy, vyaw, veh_yuv, win_yuv)
        out.append(img)
    return out


def _props_in_ego_frame(scene: Scene, i: int, ex: float, ey: float, eyaw: float):
    """Roadside posts and trees near frame ``i``: ego-frame ``x, y`` (m), width, height (m), class ``[P]``.

    Their places are a fixed function of arc length (every ``spacing`` metres on both sides, trees
    jittered and thinned by a hash), so they stay put in the world while the ego vehicle drives past.
    """
    parts = []
    for (spacing, lateral, width, height), cls in ((POSTS, _POST), (TREES, _TREE)):
        lo = np.floor((scene.ego_s[i] - MAX_GROUND_RANGE_M) / spacing)
        k = np.arange(lo, lo + 2 * MAX_GROUND_RANGE_M / spacing + 2)
        for side in (-1.0, 1.0):
            h = ((k.astype(np.int64) * 2654435761 + int(side) * 97) & 1023) / 1023.0
            keep = h < 0.8 if cls == _TREE else np.ones_like(h, dtype=bool)
            jitter = (h - 0.5) * (0.6 * spacing if cls == _TREE else 0.0)
            d = side * (lateral + (4.0 * h if cls == _TREE else 0.0 * h))
            parts.append((k[keep] * spacing + jitter[keep], d[keep], width, height, cls))
    s = np.concatenate([p[0] for p in parts])
    d = np.concatenate([p[1] for p in parts])
    px, py, _ = scene.road.point(s, d)
    c, sn = np.cos(eyaw), np.sin(eyaw)
    dx, dy = px - ex, py - ey
    sizes = [np.broadcast_to(np.array(p[2:], dtype=np.float64), (len(p[0]), 3)) for p in parts]
    size = np.concatenate(sizes)
    return c * dx + sn * dy, -sn * dx + c * dy, size[:, 0], size[:, 1], size[:, 2].astype(np.int64)


def _paint_props(planes, cam: Camera, props) -> None:
    """Paint props as upright flat rectangles, far first (they are thin: no sides to show)."""
    x, y, width, height, cls = props
    u, v_base, depth = cam.project(x, y, np.zeros_like(x))
    _, v_top, _ = cam.project(x, y, height)
    half = cam.focal * width / 2 / np.maximum(depth, 1e-6)
    h, w = planes[0].shape
    ok = (depth > 1.0) & (depth < MAX_GROUND_RANGE_M)
    box = np.stack([np.floor(u - half), np.ceil(u + half), np.floor(v_top), np.ceil(v_base)], axis=1)
    box = np.clip(box, 0, [w, w, h, h]).astype(np.int64)
    for j in np.argsort(-depth).tolist():
        u0, u1, v0, v1 = box[j].tolist()
        if not ok[j] or u1 <= u0 or v1 <= v0:
            continue
        colour = _PALETTE_YUV[cls[j]]
        planes[0][v0:v1, u0:u1] = colour[0]
        for k in (1, 2):
            planes[k][v0 // 2 : (v1 + 1) // 2, u0 // 2 : (u1 + 1) // 2] = colour[k]


def _paint_vehicles(planes, cam: Camera, scene: Scene, vx, vy, vyaw, body, window) -> None:
    corners_l = np.array([1, 1, -1, -1]) * 0.5
    corners_w = np.array([1, -1, 1, -1]) * 0.5
    c, s = np.cos(vyaw), np.sin(vyaw)
    lx = corners_l[None, :] * scene.veh_length[:, None]
    wy = corners_w[None, :] * scene.veh_width[:, None]
    px = vx[:, None] + c[:, None] * lx - s[:, None] * wy  # [V, 4] footprint corners, ego frame
    py = vy[:, None] + s[:, None] * lx + c[:, None] * wy
    px, py = np.concatenate([px, px], 1), np.concatenate([py, py], 1)
    pz = np.concatenate([np.zeros((len(vx), 4)), np.full((len(vx), 4), VEHICLE_HEIGHT_M)], 1)
    u, v, depth = cam.project(px, py, pz)
    h, w = planes[0].shape
    visible = (depth.min(axis=1) > 1.0) & (np.hypot(vx, vy) < MAX_GROUND_RANGE_M)
    # integer rectangles for all vehicles at once, then a cheap Python loop that only slices
    umin, umax = np.floor(u.min(axis=1)), np.ceil(u.max(axis=1))
    vmin, vmax = np.floor(v.min(axis=1)), np.ceil(v.max(axis=1))
    top = vmin + np.maximum(1, np.floor(0.45 * (vmax - vmin)))
    boxes = np.stack([np.clip(umin, 0, w), np.clip(umax, 0, w), np.clip(vmin, 0, h), np.clip(vmax, 0, h),
                      np.clip(top, 0, h)], axis=1).astype(np.int64).tolist()
    for j in np.argsort(-depth.mean(axis=1)).tolist():  # painter's order: far first
        u0, u1, v0, v1, t = boxes[j]
        if not visible[j] or u1 <= u0 or v1 <= v0:
            continue
        t = min(max(t, v0), v1)
        for k, plane in enumerate(planes):
            if k == 0:
                plane[v0:t, u0:u1] = window[j, 0]  # windows: a darker band across the upper body
                plane[t:v1, u0:u1] = body[j, 0]
            else:
                plane[v0 // 2 : (t + 1) // 2, u0 // 2 : (u1 + 1) // 2] = window[j, k]
                plane[t // 2 : (v1 + 1) // 2, u0 // 2 : (u1 + 1) // 2] = body[j, k]
