"""A Stable-Diffusion-style UNet (SD 1.x/2.x shape: latent 4×64×64, channels 320/640/1280/1280, ResNet
blocks with timestep embedding, self- and cross-attention transformer blocks on the upper three levels).

Tesla showed Stable Diffusion running on Dojo (AI Day 2022). A plain ``nn.Module``, meta-device friendly.
Inputs: latents ``[batch, 4, H, W]``, timesteps ``[batch]``, text context ``[batch, 77, ctx_dim]``;
output: predicted noise ``[batch, 4, H, W]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "unet_inputs", "unet_sd"]


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int) -> None:
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(32, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout)
        self.n2, self.c2 = nn.GroupNorm(32, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x))) + self.t(t)[:, :, None, None]
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class _Attention(nn.Module):
    def __init__(self, c: int, ctx: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = nn.Linear(c, c, bias=False), nn.Linear(ctx, c, bias=False), \
            nn.Linear(ctx, c, bias=False), nn.Linear(c, c)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (t.view(b, -1, self.heads, c // self.heads).transpose(1, 2)
                   for t in (self.q(x), self.k(ctx), self.v(ctx)))
        return self.o(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class _Transformer(nn.Module):
    def __init__(self, c: int, ctx: int, heads: int) -> None:
        super().__init__()
        self.norm, self.proj_in, self.proj_out = nn.GroupNorm(32, c), nn.Linear(c, c), nn.Linear(c, c)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(c), nn.LayerNorm(c), nn.LayerNorm(c)
        self.self_attn, self.cross_attn = _Attention(c, c, heads), _Attention(c, ctx, heads)
        self.ff1, self.ff2 = nn.Linear(c, 8 * c), nn.Linear(4 * c, c)  # GEGLU

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        n1 = self.ln1(t)
        t = t + self.self_attn(n1, n1)
        t = t + self.cross_attn(self.ln2(t), ctx)
        a, g = self.ff1(self.ln3(t)).chunk(2, dim=-1)
        t = t + self.ff2(a * F.gelu(g))
        return x + self.proj_out(t).transpose(1, 2).reshape(b, c, h, w)


class UNet(nn.Module):
    """SD-style UNet; defaults give ≈860 M parameters like SD 1.x (ctx_dim 768)."""

    def __init__(self, channels: tuple[int, ...] = (320, 640, 1280, 1280), ctx_dim: int = 768, heads: int = 8,
                 layers: int = 2) -> None:
        super().__init__()
        c0, temb = channels[0], 4 * channels[0]
        self.c0 = c0
        self.time = nn.Sequential(nn.Linear(c0, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.inp = nn.Conv2d(4, c0, 3, padding=1)
        self.down, skips, cin = nn.ModuleList(), [c0], c0
        for i, c in enumerate(channels):
            for _ in range(layers):
                attn = _Transformer(c, ctx_dim, heads) if i < len(channels) - 1 else None
                self.down.append(nn.ModuleList([_ResBlock(cin, c, temb), attn or nn.Identity()]))
                cin = c
                skips.append(c)
            if i < len(channels) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, 2, 1)]))
                skips.append(c)
        self.mid = nn.ModuleList([_ResBlock(cin, cin, temb), _Transformer(cin, ctx_dim, heads),
                                  _ResBlock(cin, cin, temb)])
        self.up = nn.ModuleList()
        for i, c in reversed(list(enumerate(channels))):
            for j in range(layers + 1):
                attn = _Transformer(c, ctx_dim, heads) if i < len(channels) - 1 else None
                up = nn.Conv2d(c, c, 3, padding=1) if (i > 0 and j == layers) else None
                self.up.append(nn.ModuleList([_ResBlock(cin + skips.pop(), c, temb), attn or nn.Identity(),
                                              up or nn.Identity()]))
                cin = c
        self.out = nn.Sequential(nn.GroupNorm(32, c0), nn.SiLU(), nn.Conv2d(c0, 4, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        half = self.c0 // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device) / half)
        e = t.float()[:, None] * freqs[None]
        temb = self.time(torch.cat([e.sin(), e.cos()], dim=-1))
        h = self.inp(x)
        skips = [h]
        for mods in self.down:
            if len(mods) == 1:
                h = mods[0](h)
            else:
                h = mods[0](h, temb)
                h = h if isinstance(mods[1], nn.Identity) else mods[1](h, ctx)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, temb), ctx), temb)
        for res, attn, up in self.up:
            h = res(torch.cat([h, skips.pop()], dim=1), temb)
            h = h if isinstance(attn, nn.Identity) else attn(h, ctx)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)


def unet_sd(*, device: torch.device | str | None = None, **kw) -> UNet:
    """The SD-style UNet (``kw`` overrides ``channels``, ``ctx_dim``, ``heads``, ``layers``)."""
    with torch.device(device or "cpu"):
        return UNet(**kw)


def unet_inputs(batch: int, *, latent: int = 64, ctx_dim: int = 768, device: torch.device | str | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(latents [batch, 4, latent, latent], timesteps [batch], context [batch, 77, ctx_dim])``."""
    return (torch.randn(batch, 4, latent, latent, device=device),
            torch.randint(0, 1000, (batch,), device=device),
            torch.randn(batch, 77, ctx_dim, device=device))
