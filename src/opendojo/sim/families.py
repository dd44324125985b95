"""Model families the host calibration never runs: the held-out set of ``dojo simulate validate``.

The calibration (``dojo hw calibrate``) times op classes — GEMMs, convolutions, norms, RNG, recurrent
cells, gathers, FFTs — over a range of shapes; it never times a whole model. The held-out configurations
are whole models drawn from the families below with shapes and batch sizes taken from a seeded
``random.Random``: the same ``(n, seed)`` always gives the same configurations, and no family was looked
at while the cost mechanisms were fitted.

A configuration is a :class:`HeldOut`: its name (family and drawn shape), a factory ``batch -> (module,
inputs)`` and the batch. Every module is small enough to train a few steps on a loaded 2-core machine in
well under a second per step.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

Factory = Callable[[int], tuple[nn.Module, tuple]]


@dataclass(frozen=True)
class HeldOut:
    """One drawn configuration: ``factory(batch)`` builds a fresh ``(module, inputs)`` on the CPU."""

    family: str
    name: str
    factory: Factory
    batch: int


class _DepthwiseBlock(nn.Module):
    """MobileNet-style block: depthwise 3×3 conv, BatchNorm, ReLU6, pointwise 1×1 conv, BatchNorm."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _RecurrentLM(nn.Module):
    """Embedding → LSTM or GRU → vocabulary head: ``tokens [B, T]`` → logits ``[B, T, vocab]``."""

    def __init__(self, cell: str, vocab: int, dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(dim, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(tokens))[0])


class _Recommender(nn.Module):
    """Embedding-heavy click model: ``tables`` sparse features summed over ``bag`` ids each, an MLP on top."""

    def __init__(self, tables: int, rows: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(rows, dim) for _ in range(tables))
        self.mlp = nn.Sequential(nn.Linear(tables * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # ids [B, tables, bag]
        pooled = [t(ids[:, i]).sum(1) for i, t in enumerate(self.tables)]
        return self.mlp(torch.cat(pooled, dim=1))


class _Spectral(nn.Module):
    """Fourier-layer image model (FNO-like): ``rfft2``, a learned per-mode weight, ``irfft2``, a 1×1 conv."""

    def __init__(self, channels: int, size: int, layers: int) -> None:
        super().__init__()
        self.lift = nn.Conv2d(3, channels, 1)
        modes = (size, size // 2 + 1)
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(channels, *modes) * 0.02)
                                        for _ in range(layers))
        self.mix = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(layers))
        self.head = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lift(x)
        for w, mix in zip(self.weights, self.mix, strict=True):
            spectral = torch.fft.irfft2(torch.fft.rfft2(h) * w, s=h.shape[-2:])
            h = torch.nn.functional.gelu(spectral + mix(h))
        return self.head(h.mean((2, 3)))


def _mlp(r: random.Random) -> tuple[str, Factory, int]:
    width, depth, inp = r.choice((256, 512, 768)), r.randint(2, 4), r.choice((128, 256, 784))
    p = r.choice((0.0, 0.1, 0.2))

    def build(b: int):
        layers: list[nn.Module] = [nn.Linear(inp, width), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.GELU(), nn.Dropout(p)]
        return nn.Sequential(*layers, nn.Linear(width, 10)), (torch.randn(b, inp),)

    return f"mlp {depth}x{width} in{inp} p{p}", build, r.choice((32, 64, 128))


def _mobilenet(r: random.Random) -> tuple[str, Factory, int]:
    c, size, blocks = r.choice((16, 24, 32)), r.choice((32, 48)), r.randint(2, 4)

    def build(b: int):
        mods: list[nn.Module] = [nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU6()]
        cin = c
        for i in range(blocks):
            cout = cin * 2 if i % 2 else cin
            mods.append(_DepthwiseBlock(cin, cout, 2 if i % 2 else 1))
            cin = cout
        mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
        return nn.Sequential(*mods), (torch.randn(b, 3, size, size),)

    return f"dw-cnn c{c} {blocks} blocks {size}px", build, r.choice((4, 8, 16))


def _grouped_cnn(r: random.Random) -> tuple[str, Factory, int]:
    c, groups, size = r.choice((32, 64)), r.choice((2, 4, 8)), r.choice((24, 32))

    def build(b: int):
        m = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1), nn.BatchNorm2d(c), nn.ReLU(),
                          nn.Conv2d(c, c, 3, 1, 1, groups=groups), nn.BatchNorm2d(c), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(c, 2 * c, 3, 1, 1, groups=groups), nn.BatchNorm2d(2 * c),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * c, 10))
        return m, (torch.randn(b, 3, size, size),)

    return f"grouped-cnn c{c} g{groups} {size}px", build, r.choice((4, 8, 16))


def _resnet(r: random.Random) -> tuple[str, Factory, int]:
    from opendojo.models.reference_vision import resnet50

    width, size = r.choice((8, 12, 16)), r.choice((32, 48, 64))
    layers = r.choice(((1, 1, 1, 1), (1, 2, 1, 1)))

    def build(b: int):
        return resnet50(layers=layers, width=width, classes=10), (torch.randn(b, 3, size, size),)

    return f"resnet w{width} {''.join(map(str, layers))} {size}px", build, r.choice((2, 4, 8))


def _encoder(r: random.Random) -> tuple[str, Factory, int]:
    d, heads = r.choice((64, 128, 192)), r.choice((2, 4))
    seq, depth = r.choice((32, 64, 128)), r.randint(1, 3)

    def build(b: int):
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, batch_first=True)  # dropout 0.1 by default
        m = nn.Sequential(nn.Linear(16, d), nn.TransformerEncoder(layer, depth, enable_nested_tensor=False),
                          nn.Linear(d, 10))
        return m, (torch.randn(b, seq, 16),)

    return f"encoder d{d} h{heads} L{depth} s{seq}", build, r.choice((4, 8, 16))


class _Decoder(nn.Module):
    """Token embedding → ``nn.TransformerDecoder`` (causal self-attention, cross-attention) → vocab head."""

    def __init__(self, vocab: int, d: int, heads: int, depth: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerDecoderLayer(d, heads, 4 * d, batch_first=True)  # dropout 0.1 by default
        self.body = nn.TransformerDecoder(layer, depth)
        self.head = nn.Linear(d, vocab)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1], device=tokens.device)
        return self.head(self.body(self.embed(tokens), memory, tgt_mask=mask, tgt_is_causal=True))


def _decoder(r: random.Random) -> tuple[str, Factory, int]:
    d, heads, seq, depth = r.choice((64, 128)), r.choice((2, 4)), r.choice((32, 64)), r.randint(1, 2)
    vocab = r.choice((500, 2000))

    def build(b: int):
        m = _Decoder(vocab, d, heads, depth)
        return m, (torch.randint(0, vocab, (b, seq)), torch.randn(b, 16, d))

    return f"decoder d{d} h{heads} L{depth} s{seq} v{vocab}", build, r.choice((4, 8))


def _recurrent(r: random.Random) -> tuple[str, Factory, int]:
    cell = r.choice(("lstm", "gru"))
    dim, hidden, layers = r.choice((32, 64)), r.choice((64, 128, 256)), r.randint(1, 2)
    vocab, seq = r.choice((500, 2000)), r.choice((16, 32, 64))

    def build(b: int):
        return _RecurrentLM(cell, vocab, dim, hidden, layers), (torch.randint(0, vocab, (b, seq)),)

    return f"{cell}-lm h{hidden} L{layers} s{seq} v{vocab}", build, r.choice((4, 8, 16))


def _embedding(r: random.Random) -> tuple[str, Factory, int]:
    tables, rows = r.randint(2, 6), r.choice((10_000, 50_000))
    dim, bag = r.choice((16, 32)), r.choice((1, 4, 8))

    def build(b: int):
        return _Recommender(tables, rows, dim, 128), (torch.randint(0, rows, (b, tables, bag)),)

    return f"recsys {tables}x{rows}x{dim} bag{bag}", build, r.choice((64, 128, 256))


def _unet(r: random.Random) -> tuple[str, Factory, int]:
    from opendojo.models.reference_unet import UNet, unet_inputs

    c, latent = r.choice((32, 64)), r.choice((16, 32))

    def build(b: int):
        m = UNet(channels=(c, 2 * c), ctx_dim=64, heads=2, layers=1)
        return m, unet_inputs(b, latent=latent, ctx_dim=64)

    return f"unet c{c} latent{latent}", build, r.choice((1, 2, 4))


def _fsd(r: random.Random) -> tuple[str, Factory, int]:
    from opendojo.models.fsd import example_inputs, fsd_net

    cams, frames = r.choice((2, 3)), r.choice((2, 4))

    def build(b: int):
        over = {"cameras": cams, "frames": frames}
        return fsd_net("tiny", **over), (example_inputs("tiny", b, **over),)

    return f"fsd-tiny {cams}cam {frames}f", build, r.choice((1, 2))


def _spectral(r: random.Random) -> tuple[str, Factory, int]:
    c, size, layers = r.choice((8, 16, 32)), r.choice((32, 64)), r.randint(1, 3)

    def build(b: int):
        return _Spectral(c, size, layers), (torch.randn(b, 3, size, size),)

    return f"spectral c{c} {size}px L{layers}", build, r.choice((4, 8, 16))


#: Family name → draw(rng) -> (name, factory, batch). Order is the round-robin order of :func:`draw`.
FAMILIES: dict[str, Callable[[random.Random], tuple[str, Factory, int]]] = {
    "mlp": _mlp, "dw-cnn": _mobilenet, "resnet": _resnet, "encoder": _encoder, "recurrent": _recurrent,
    "embedding": _embedding, "unet": _unet, "fsd": _fsd, "decoder": _decoder, "grouped-cnn": _grouped_cnn,
    "spectral": _spectral,
}


def draw(n: int, seed: int) -> list[HeldOut]:
    """``n`` configurations, families in round robin (every family appears once ``n >= len(FAMILIES)``),
    shapes and batches drawn from ``random.Random(seed)``."""
    from opendojo.errors import check_positive, check_seed

    check_positive("--held-out", n)
    rng = random.Random(check_seed("--seed", seed))
    names = list(FAMILIES)
    out = []
    for i in range(n):
        family = names[i % len(names)]
        name, factory, batch = FAMILIES[family](rng)
        out.append(HeldOut(family, name, factory, batch))
    return out
