"""An FSD-style multi-camera video network, in the spirit of Tesla's published design (AI Day 2021/2022).

One definition, three sizes (``tiny`` for tests and CPU, ``base`` for one GPU, ``large`` for many):

1. a **shared per-camera image backbone** (strided residual convolutions, GroupNorm so that a batch split
   across ranks computes exactly what one rank would) turns each camera image into a grid of tokens;
2. **camera-to-BEV fusion**: learned bird's-eye-view queries (one per BEV cell, plus one "ego" query)
   cross-attend to the tokens of all cameras, each tagged with a learned camera embedding, so the network
   learns the view transform of every camera instead of being given calibration;
3. a **temporal module**: causal self-attention over the T frames of the clip, per BEV cell;
4. **heads**: BEV occupancy logits per cell ``[T, G, G]`` (pixel-shuffled from the coarser query grid), the
   future ego trajectory ``[T, K, 2]`` in metres, ego speed ``[T]`` (m/s) and steering ``[T]`` (rad).

Attention is written as explicit matmul + softmax + matmul (no fused kernel) so that
``torch.utils.flop_counter`` and the simulator's meta-device capture see every matmul on every device.

The module is plain PyTorch: no knowledge of precision, data loading or hardware.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FSDConfig", "FSDNet", "PRESETS", "example_inputs", "fsd_net"]


@dataclass(frozen=True)
class FSDConfig:
    """Shape of an :class:`FSDNet`. Sizes in pixels, cells and channels.

    ``trajectory_dt_s`` is the time between trajectory waypoints: the trajectory head predicts a residual
    over driving straight on at the network's own speed estimate (waypoint k at ``speed · dt · k``), which
    is how a planner would parametrise it and spares the head from learning metres from scratch.
    ``speed_scale_mps`` and ``trajectory_scale_m`` (m/s, m) are the typical magnitudes that the ego head's
    raw outputs are multiplied by.

    ``motion_input`` (early temporal fusion): the backbone sees each frame stacked with its difference from
    the previous frame of the same camera (zeros for the first), 6 channels instead of 3, so motion, and
    with it ego speed, is visible to the first convolution instead of only to the temporal stage.

    ``ground_lift`` (a geometric shortcut for occupancy): each occupancy cell also reads the first backbone
    stage's features (2-pixel resolution) at the pixel where its ground centre shows in each camera
    (:meth:`FSDNet.set_ground_grid`; the trainer sets it from the camera rig). Why: at 64² with 8× strided
    tokens everything beyond ~6 m ahead falls in one token row, so the attention path cannot tell a car's
    range, and the head learns only the lane prior.

    ``image_size`` must be divisible by ``2 ** len(backbone_channels)`` (each backbone stage halves the
    image), and ``occupancy_grid`` by ``bev_grid`` (each query cell predicts an ``s × s`` patch of the
    occupancy grid, ``s = occupancy_grid // bev_grid``).
    """

    cameras: int = 3
    frames: int = 4
    image_size: int = 64
    backbone_channels: tuple[int, ...] = (16, 32, 64)
    dim: int = 64
    heads: int = 4
    bev_grid: int = 8
    fusion_layers: int = 1
    temporal_layers: int = 1
    occupancy_grid: int = 32
    horizon: int = 8
    mlp_ratio: int = 2
    trajectory_dt_s: float = 0.5
    speed_scale_mps: float = 10.0
    trajectory_scale_m: float = 4.0
    motion_input: bool = True
    ground_lift: bool = False

    def __post_init__(self) -> None:
        positive = (
            "cameras",
            "frames",
            "image_size",
            "dim",
            "heads",
            "bev_grid",
            "fusion_layers",
            "temporal_layers",
            "occupancy_grid",
            "horizon",
            "mlp_ratio",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"FSDConfig.{name} must be a positive int, got {value!r}")
        chans = self.backbone_channels
        if not chans or not all(isinstance(c, int) and c >= 1 for c in chans):
            raise ValueError(
                f"FSDConfig.backbone_channels must be a non-empty tuple of positive ints, got {chans!r}"
            )
        for name in ("trajectory_dt_s", "speed_scale_mps", "trajectory_scale_m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"FSDConfig.{name} must be a positive number, got {value!r}")
        stride = 2 ** len(chans)
        if self.image_size % stride:
            raise ValueError(
                f"FSDConfig.image_size={self.image_size} must be divisible by "
                f"2**len(backbone_channels)={stride}"
            )
        if self.dim % self.heads:
            raise ValueError(f"FSDConfig.dim={self.dim} must be divisible by heads={self.heads}")
        if self.occupancy_grid % self.bev_grid:
            raise ValueError(
                f"FSDConfig.occupancy_grid={self.occupancy_grid} must be a multiple of "
                f"bev_grid={self.bev_grid}"
            )

    @property
    def feature_size(self) -> int:
        """Side of each camera's token grid after the backbone, in tokens."""
        return self.image_size // 2 ** len(self.backbone_channels)


PRESETS: dict[str, FSDConfig] = {
    # CPU tests and demos: 64×64 images, 3 cameras, 4 frames.
    "tiny": FSDConfig(ground_lift=True),
    # One GPU: 8 cameras at 256×256, 8 frames.
    "base": FSDConfig(
        cameras=8,
        frames=8,
        image_size=256,
        backbone_channels=(32, 64, 128, 256),
        dim=256,
        heads=8,
        bev_grid=16,
        fusion_layers=2,
        temporal_layers=2,
        occupancy_grid=64,
        horizon=12,
        mlp_ratio=4,
    ),
    # Many GPUs: 8 cameras at 512×512, 16 frames.
    "large": FSDConfig(
        cameras=8,
        frames=16,
        image_size=512,
        backbone_channels=(64, 128, 256, 512, 512),
        dim=768,
        heads=12,
        bev_grid=32,
        fusion_layers=4,
        temporal_layers=4,
        occupancy_grid=128,
        horizon=12,
        mlp_ratio=4,
    ),
}


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """Scaled dot-product attention on ``[batch, heads, tokens, head_dim]`` tensors, explicit matmuls."""
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        n_q, n_k = scores.shape[-2:]
        mask = torch.ones(n_q, n_k, dtype=torch.bool, device=scores.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return F.softmax(scores, dim=-1) @ v


class _MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, heads: int, causal: bool = False) -> None:
        super().__init__()
        self.heads, self.causal = heads, causal
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, d = x.shape
        m = context.shape[1]
        h = self.heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
        k, v = self.kv(context).view(b, m, 2, h, d // h).permute(2, 0, 3, 1, 4)
        y = _attention(q, k, v, self.causal)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class _MLP(nn.Module):
    def __init__(self, dim: int, ratio: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, ratio * dim)
        self.fc2 = nn.Linear(ratio * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    """Pre-norm transformer block; with ``cross=True`` the attention reads a separate context."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, cross: bool = False, causal: bool = False):
        super().__init__()
        self.cross = cross
        self.norm_q = nn.LayerNorm(dim)
        self.norm_ctx = nn.LayerNorm(dim) if cross else None
        self.attn = _MultiHeadAttention(dim, heads, causal=causal)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = _MLP(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.cross:
            x = x + self.attn(self.norm_q(x), self.norm_ctx(context))
        else:
            x = x + self.attn(self.norm_q(x))
        return x + self.mlp(self.norm_mlp(x))


class _ConvStage(nn.Module):
    """Halve the resolution (strided 3×3 conv), then one residual 3×3 conv."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(math.gcd(8, c_out), c_out)
        self.conv = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(math.gcd(8, c_out), c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(self.down(x)))
        return x + F.gelu(self.norm2(self.conv(x)))


class _Backbone(nn.Module):
    """Shared per-camera image backbone: ``[N, 3, H, W]`` → ``[N, h*w, dim]`` tokens."""

    def __init__(self, channels: tuple[int, ...], dim: int, in_channels: int = 3) -> None:
        super().__init__()
        chans = (in_channels, *channels)
        self.stages = nn.ModuleList(_ConvStage(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True))
        self.proj = nn.Conv2d(chans[-1], dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``[N, h*w, dim]`` and the first stage's feature map ``[N, channels[0], H/2, W/2]``."""
        first = x = self.stages[0](x)
        for stage in self.stages[1:]:
            x = stage(x)
        return self.proj(x).flatten(2).transpose(1, 2), first


class _EgoMotionStem(nn.Module):
    """``[N, cams, C, H, W]`` images → ``[N, dim]``: how much each part of each camera changes.

    Two feature sets, each averaged over a 4×4 grid of image regions per camera, then an MLP: the
    magnitude of the frame difference itself (fixed, so speed is readable from the first step: the
    ground streams past faster at higher speed), and |a learned strided convolution| of frame and
    difference. No normalisation: its job is to keep the overall size of the motion.
    """

    CHANNELS, POOL = 16, 4

    def __init__(self, in_channels: int, cameras: int, dim: int) -> None:
        super().__init__()
        self.diff_channels = in_channels - 3  # the frame differences follow the 3 colour channels
        self.conv = nn.Conv2d(in_channels, self.CHANNELS, 5, stride=4, padding=2)
        features = cameras * (self.CHANNELS + self.diff_channels) * self.POOL**2
        self.fc1 = nn.Linear(features, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        x = images.flatten(0, 1)
        parts = [self.conv(x).abs(), x[:, 3:].abs()]
        pooled = torch.cat([F.adaptive_avg_pool2d(p, self.POOL) for p in parts], dim=1)
        return self.fc2(F.gelu(self.fc1(pooled.reshape(n, -1))))


class _GroundLift(nn.Module):
    """Occupancy logits from image features sampled where each cell's ground centre shows.

    ``grid`` ``[cams, G, G, 2]``: per camera and cell, the pixel in ``grid_sample``'s normalised
    coordinates (outside [-1, 1] where the camera does not see the cell: zero features there).
    """

    HIDDEN = 32

    def __init__(self, channels: int, cameras: int, grid: int) -> None:
        super().__init__()
        self.register_buffer("grid", torch.full((cameras, grid, grid, 2), -2.0))
        self.mix = nn.Conv2d(cameras * channels, self.HIDDEN, 1)
        self.out = nn.Conv2d(self.HIDDEN, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # untrained: adds nothing to the base-rate logits
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor, b: int, n_cam: int, t: int) -> torch.Tensor:
        """``features`` ``[B*cams*T, C, h, w]`` → logits ``[B, T, G, G]``."""
        c, g = features.shape[1], self.grid.shape[1]
        grid = self.grid.to(features.dtype)[None, :, None].expand(b, -1, t, -1, -1, -1).flatten(0, 2)
        cells = F.grid_sample(features, grid, align_corners=False)  # [B*cams*T, C, G, G]
        cells = cells.view(b, n_cam, t, c, g, g).transpose(1, 2).reshape(b * t, n_cam * c, g, g)
        return self.out(F.gelu(self.mix(cells))).view(b, t, g, g)


class FSDNet(nn.Module):
    """Multi-camera video → BEV occupancy, ego trajectory, speed and steering.

    Input: ``frames`` float ``[B, cams, T, 3, H, W]`` (normalised images; the trainer maps uint8 to
    roughly zero-mean unit-variance). Output: a dict of

    - ``occupancy``: logits ``[B, T, G, G]`` (G = ``config.occupancy_grid``, ego-centred BEV cells);
    - ``trajectory``: ``[B, T, K, 2]`` future ego waypoints in metres (K = ``config.horizon``);
    - ``speed``: ``[B, T]`` m/s; ``steering``: ``[B, T]`` rad.

    Every output at frame t depends only on frames ``0..t`` (the temporal module is causal).
    """

    def __init__(self, config: FSDConfig) -> None:
        super().__init__()
        self.config = c = config
        self.backbone = _Backbone(c.backbone_channels, c.dim, 6 if c.motion_input else 3)
        tokens_per_camera = c.feature_size**2
        self.camera_embed = nn.Parameter(torch.zeros(c.cameras, 1, c.dim))
        self.token_pos = nn.Parameter(torch.zeros(1, tokens_per_camera, c.dim))
        # One query per BEV cell plus the ego query (index 0) that carries the ego heads.
        self.bev_queries = nn.Parameter(torch.zeros(1 + c.bev_grid**2, c.dim))
        self.fusion = nn.ModuleList(
            _Block(c.dim, c.heads, c.mlp_ratio, cross=True) for _ in range(c.fusion_layers)
        )
        self.bev_mixer = nn.ModuleList(_Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.fusion_layers))
        # Ego-motion stem: how fast the scene streams past each part of each camera, added to the ego
        # query's features right before the ego heads. It has no normalisation on purpose: GroupNorm in
        # the backbone divides out exactly the overall size of the frame differences that speed shows in.
        self.ego_motion = _EgoMotionStem(6 if c.motion_input else 3, c.cameras, c.dim)
        self.time_embed = nn.Parameter(torch.zeros(c.frames, c.dim))
        self.temporal = nn.ModuleList(
            _Block(c.dim, c.heads, c.mlp_ratio, causal=True) for _ in range(c.temporal_layers)
        )
        self.norm_out = nn.LayerNorm(c.dim)
        patch = c.occupancy_grid // c.bev_grid
        self.occupancy_head = nn.Linear(c.dim, patch * patch)
        # Learned per-cell logit offset: what is occupied whatever the cameras see (the ego footprint).
        self.occupancy_prior = nn.Parameter(torch.zeros(c.occupancy_grid, c.occupancy_grid))
        self.ego_head = nn.Linear(c.dim, 2 * c.horizon + 2)
        self.ground_lift = (
            _GroundLift(c.backbone_channels[0], c.cameras, c.occupancy_grid) if c.ground_lift else None
        )
        # The mean speed the speed head starts at (m/s), kept so that evaluation can score the
        # "predict the training mean" baselines with the same number after a resume or a reload.
        self.register_buffer("speed_prior_mps", torch.zeros(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the learned embeddings (the layers keep PyTorch's defaults)."""
        for p in (self.camera_embed, self.token_pos, self.bev_queries, self.time_embed):
            nn.init.normal_(p, std=0.02)
        nn.init.zeros_(self.occupancy_prior)
        # Zero-initialised heads: the untrained network predicts exactly its biases (the base rates set by
        # set_output_priors: every cell at the occupancy rate, straight on at the mean speed, no steering).
        nn.init.zeros_(self.occupancy_head.weight)
        nn.init.constant_(self.occupancy_head.bias, -2.0)
        nn.init.zeros_(self.ego_head.weight)
        nn.init.zeros_(self.ego_head.bias)

    @torch.no_grad()
    def set_output_priors(self, occupancy_rate: float | torch.Tensor, speed_mps: float) -> None:
        """Start the heads at the data's base rates (so the first steps learn structure, not offsets that
        AdamW, moving each parameter by about ``lr`` per step, takes thousands of steps to reach).

        ``occupancy_rate``: one rate for every cell, or per-cell rates ``[G, G]`` (clamped to
        [1e-3, 1 - 1e-3]); the logits start at logit(rate). ``speed_mps``: the starting speed.
        """
        g = self.config.occupancy_grid
        if isinstance(occupancy_rate, torch.Tensor):
            if occupancy_rate.shape != (g, g):
                raise ValueError(
                    f"occupancy_rate must be a float or a [{g}, {g}] tensor, "
                    f"got shape {tuple(occupancy_rate.shape)}"
                )
            rate = occupancy_rate.detach().double().clamp(1e-3, 1.0 - 1e-3)
            self.occupancy_prior.copy_(torch.log(rate / (1.0 - rate)))
            self.occupancy_head.bias.zero_()
        else:
            if not 0.0 < occupancy_rate < 1.0:
                raise ValueError(f"occupancy_rate must be in (0, 1), got {occupancy_rate!r}")
            self.occupancy_prior.zero_()
            self.occupancy_head.bias.fill_(math.log(occupancy_rate / (1.0 - occupancy_rate)))
        if not math.isfinite(speed_mps):
            raise ValueError(f"speed_mps must be finite, got {speed_mps!r}")
        self.ego_head.bias[2 * self.config.horizon].fill_(speed_mps / self.config.speed_scale_mps)
        self.speed_prior_mps.fill_(speed_mps)

    @torch.no_grad()
    def set_ground_grid(self, grid: torch.Tensor) -> None:
        """Where each occupancy cell's ground centre shows in each camera: ``[cams, G, G, 2]`` in
        ``grid_sample``'s normalised pixel coordinates (x then y; outside [-1, 1]: not seen)."""
        if self.ground_lift is None:
            raise ValueError("set_ground_grid needs FSDConfig.ground_lift=True")
        if grid.shape != self.ground_lift.grid.shape:
            raise ValueError(
                f"ground grid must have shape {tuple(self.ground_lift.grid.shape)}, got {tuple(grid.shape)}"
            )
        self.ground_lift.grid.copy_(grid)

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        expected = (c.cameras, c.frames, 3, c.image_size, c.image_size)
        if frames.dim() != 6 or tuple(frames.shape[1:]) != expected:
            raise ValueError(
                f"frames must have shape [B, {', '.join(map(str, expected))}] "
                f"(B, cams, T, 3, H, W), got {tuple(frames.shape)}"
            )
        b, n_cam, t = frames.shape[:3]
        if c.motion_input:  # causal: frame t is paired with frame t-1 only
            previous = torch.cat([frames[:, :, :1], frames[:, :, :-1]], dim=2)  # frame 0 pairs with itself
            frames = torch.cat([frames, frames - previous], dim=3)
        # Shared backbone: every (sample, camera, frame) image goes through the same weights.
        tokens, first = self.backbone(frames.reshape(b * n_cam * t, *frames.shape[3:]))  # [B*cams*T, hw, D]
        tokens = tokens.view(b, n_cam, t, -1, c.dim) + self.token_pos + self.camera_embed.unsqueeze(1)
        tokens = tokens.transpose(1, 2).reshape(b * t, -1, c.dim)  # [B*T, cams*hw, D]
        # Camera → BEV: per frame, the BEV queries read all cameras.
        bev = self.bev_queries.expand(b * t, -1, -1)
        for fuse, mix in zip(self.fusion, self.bev_mixer, strict=True):
            bev = mix(fuse(bev, tokens))
        # Temporal: per BEV cell, causal attention over the T frames.
        q = bev.shape[1]
        x = bev.view(b, t, q, c.dim) + self.time_embed[:t, None, :]
        x = x.transpose(1, 2).reshape(b * q, t, c.dim)
        for block in self.temporal:
            x = block(x)
        x = self.norm_out(x).view(b, q, t, c.dim).transpose(1, 2)  # [B, T, Q, D]
        motion = self.ego_motion(frames.transpose(1, 2).flatten(0, 1)).view(b, t, c.dim)
        occupancy = self._occupancy(x[:, :, 1:])
        if self.ground_lift is not None:
            occupancy = occupancy + self.ground_lift(first, b, n_cam, t)
        return {**self._ego_outputs(x[:, :, 0] + motion), "occupancy": occupancy}

    def _ego_outputs(self, ego: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.ego_head(ego)  # [B, T, 2K + 2]
        b, t = out.shape[:2]
        c = self.config
        k = c.horizon
        # Heads work in units of a typical magnitude, so AdamW's ~lr-sized steps move metres, not millimetres.
        speed = out[..., 2 * k] * c.speed_scale_mps
        # Constant-velocity roll-out along the ego x axis, plus the predicted residual (metres).
        times = torch.arange(1, k + 1, device=out.device, dtype=out.dtype) * c.trajectory_dt_s
        ahead = speed[..., None] * times
        straight = torch.stack([ahead, torch.zeros_like(ahead)], dim=-1)
        return {
            "trajectory": straight + out[..., : 2 * k].reshape(b, t, k, 2) * c.trajectory_scale_m,
            "speed": speed,
            # clone: a slice is a view, and FSDP2's backward hooks must not sit on a view
            "steering": out[..., 2 * k + 1].clone(),
        }

    def _occupancy(self, cells: torch.Tensor) -> torch.Tensor:
        c = self.config
        g, s = c.bev_grid, c.occupancy_grid // c.bev_grid
        b, t = cells.shape[:2]
        patches = self.occupancy_head(cells).view(b, t, g, g, s, s)  # each cell → an s×s patch
        return patches.permute(0, 1, 2, 4, 3, 5).reshape(b, t, g * s, g * s) + self.occupancy_prior


def _resolve(preset: str | FSDConfig, overrides: dict) -> FSDConfig:
    if isinstance(preset, FSDConfig):
        base = preset
    elif preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise ValueError(f"preset must be one of {sorted(PRESETS)} or an FSDConfig, got {preset!r}")
    allowed = {f.name for f in fields(FSDConfig)}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"unknown FSDConfig field(s) {unknown}; allowed: {sorted(allowed)}")
    return replace(base, **overrides)


def fsd_net(
    preset: str | FSDConfig = "tiny", *, device: torch.device | str | None = None, **overrides
) -> FSDNet:
    """Build an :class:`FSDNet` from a preset name (``tiny``, ``base``, ``large``) or a config.

    ``overrides`` replace fields of the preset (e.g. ``cameras=2, occupancy_grid=16``). With
    ``device="meta"`` no memory is allocated (for workload capture).
    """
    config = _resolve(preset, overrides)
    if device is None:
        return FSDNet(config)
    with torch.device(device):
        return FSDNet(config)


def example_inputs(
    preset: str | FSDConfig = "tiny", batch: int = 2, *, device: torch.device | str | None = None, **overrides
) -> torch.Tensor:
    """A random input batch for :func:`fsd_net` of the same preset: float ``[batch, cams, T, 3, H, W]``."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    c = _resolve(preset, overrides)
    return torch.randn(batch, c.cameras, c.frames, 3, c.image_size, c.image_size, device=device)
