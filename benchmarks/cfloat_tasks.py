"""The generated tasks of benchmarks/cfloat_convergence.py: small, seeded, never used to tune a recipe.

A task is a model factory, a batch generator that is a pure function of (seed, batch index) and a
loss. Training draws batch indices 0, 1, 2, ...; held-out batches use negative indices, so they come
from generator streams that training never touches. Run alone, this module prints each task's size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Task:
    """One generated task; subclasses set the sizes and define ``_make``, ``model`` and ``loss``."""

    name = "task"
    steps, batch_size, lr = 300, 64, 2e-3

    def batch(self, seed: int, index: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed((seed * 1_000_003 + index) % 2**63)
        return self._make(g, seed, size)

    def _make(self, g: torch.Generator, seed: int, size: int):
        raise NotImplementedError

    def model(self) -> nn.Module:
        raise NotImplementedError

    def loss(self, out, target) -> torch.Tensor:
        raise NotImplementedError


def _mlp(d_in: int, width: int, depth: int, d_out: int) -> nn.Sequential:
    layers, d = [], d_in
    for _ in range(depth - 1):
        layers += [nn.Linear(d, width), nn.GELU()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, d_out))


class _Teacher:
    """A frozen random MLP per seed (cached), its outputs scaled to unit variance."""

    def __init__(self, d_in: int, d_out: int):
        self.d_in, self.d_out, self._nets = d_in, d_out, {}

    def __call__(self, seed: int, x: torch.Tensor) -> torch.Tensor:
        if seed not in self._nets:
            torch.manual_seed(10_000 + seed)
            net = _mlp(self.d_in, 128, 3, self.d_out).requires_grad_(False)
            probe = net(torch.randn(4096, self.d_in))
            net[-1].weight /= probe.std(0)[:, None]
            net[-1].bias.sub_(probe.mean(0)).div_(probe.std(0))
            self._nets[seed] = net
        with torch.no_grad():
            return self._nets[seed](x)


class Regression(Task):
    """MLP (4 layers, width 128) regressing a random teacher MLP; MSE."""

    name = "regression"

    def __init__(self):
        self.teacher = _Teacher(32, 4)

    def _make(self, g, seed, size):
        x = torch.randn(size, 32, generator=g)
        return x, self.teacher(seed, x)

    def model(self):
        return _mlp(32, 128, 4, 4)

    def loss(self, out, target):
        return F.mse_loss(out.float(), target)


class NoisyLabels(Task):
    """MLP classifying into a teacher's 10 classes with 10 % of labels flipped at random; cross-entropy."""

    name = "noisy-labels"

    def __init__(self):
        self.teacher = _Teacher(32, 10)

    def _make(self, g, seed, size):
        x = torch.randn(size, 32, generator=g)
        label = self.teacher(seed, x).argmax(1)
        flip = torch.rand(size, generator=g) < 0.1
        return x, torch.where(flip, torch.randint(0, 10, (size,), generator=g), label)

    def model(self):
        return _mlp(32, 128, 4, 10)

    def loss(self, out, target):
        return F.cross_entropy(out.float(), target)


class Gratings(Task):
    """Small CNN (4 convolutions) classifying the orientation of noisy gratings, 8 classes."""

    name = "cnn"
    steps, batch_size = 200, 32

    def _make(self, g, seed, size):
        label = torch.randint(0, 8, (size,), generator=g)
        angle = label.float() * math.pi / 8 + 0.1 * torch.randn(size, generator=g)
        freq = 0.5 + 0.5 * torch.rand(size, generator=g)
        phase = 2 * math.pi * torch.rand(size, generator=g)
        coords = torch.arange(16, dtype=torch.float32) - 8
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        proj = xx[None] * torch.cos(angle)[:, None, None] + yy[None] * torch.sin(angle)[:, None, None]
        img = torch.sin(freq[:, None, None] * proj + phase[:, None, None])
        return (img + 0.7 * torch.randn(size, 16, 16, generator=g))[:, None], label

    def model(self):
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 8),
        )

    def loss(self, out, target):
        return F.cross_entropy(out.float(), target)


class _Block(nn.Module):
    """Pre-norm transformer block written with nn.Linear projections (so converters see them)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(a)
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class _CharLM(nn.Module):
    def __init__(self, vocab: int, dim: int = 64, context: int = 32, layers: int = 2):
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, dim), nn.Parameter(0.02 * torch.randn(context, dim))
        self.blocks = nn.Sequential(*(_Block(dim, 4) for _ in range(layers)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab)

    def forward(self, idx):
        return self.head(self.norm(self.blocks(self.embed(idx) + self.pos[: idx.shape[1]])))


class CharLM(Task):
    """2-block transformer language model on text from a random second-order Markov source (24 symbols)."""

    name = "char-lm"
    steps, batch_size, vocab, context = 200, 24, 24, 24

    def __init__(self):
        self._tables: dict[int, torch.Tensor] = {}

    def _table(self, seed: int) -> torch.Tensor:
        if seed not in self._tables:  # per (previous two symbols): a peaked distribution over the next
            g = torch.Generator().manual_seed(20_000 + seed)
            logits = 3.0 * torch.randn(self.vocab, self.vocab, self.vocab, generator=g)
            self._tables[seed] = logits.softmax(-1)
        return self._tables[seed]

    def _make(self, g, seed, size):
        table = self._table(seed)
        seq = torch.randint(0, self.vocab, (size, self.context + 1), generator=g)
        for t in range(2, self.context + 1):
            seq[:, t] = torch.multinomial(table[seq[:, t - 2], seq[:, t - 1]], 1, generator=g)[:, 0]
        return seq[:, :-1], seq[:, 1:]

    def model(self):
        return _CharLM(self.vocab, context=self.context)

    def loss(self, out, target):
        return F.cross_entropy(out.float().reshape(-1, self.vocab), target.reshape(-1))


class _LSTM(nn.Module):
    """An LSTM whose gates are one nn.Linear (so converters see it), an input and an output projection."""

    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        self.hidden = hidden
        self.inp, self.gates, self.out = nn.Linear(channels, 32), nn.Linear(32 + hidden, 4 * hidden), \
            nn.Linear(hidden, channels)

    def forward(self, x):  # [B, T, C] -> next-step prediction [B, T, C]
        h = c = x.new_zeros(x.shape[0], self.hidden)
        outs = []
        for t in range(x.shape[1]):
            i, f, g, o = self.gates(torch.cat([self.inp(x[:, t]), h], 1)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(self.out(h))
        return torch.stack(outs, 1)


class Forecast(Task):
    """LSTM (Linear gates) forecasting the next step of 4 noisy sine mixtures; MSE."""

    name = "lstm"
    steps, batch_size, channels, length = 150, 32, 4, 16

    def _make(self, g, seed, size):
        t = torch.arange(self.length + 1, dtype=torch.float32)
        freq = 0.1 + 0.4 * torch.rand(size, self.channels, 2, generator=g)
        phase = 2 * math.pi * torch.rand(size, self.channels, 2, generator=g)
        wave = torch.sin(freq[..., None] * t + phase[..., None]).sum(2)  # [B, C, T+1]
        wave = (wave + 0.1 * torch.randn(wave.shape, generator=g)).transpose(1, 2)
        return wave[:, :-1], wave[:, 1:]

    def model(self):
        return _LSTM(self.channels)

    def loss(self, out, target):
        return F.mse_loss(out.float(), target)


class FSDTiny(Task):
    """The project's FSD network (tiny, 2 cameras × 2 frames of 32×32) distilling a random FSD teacher."""

    name = "fsd-tiny"
    steps, batch_size, lr = 80, 4, 1e-3
    shape = {"cameras": 2, "frames": 2, "image_size": 32, "occupancy_grid": 16}

    def __init__(self):
        self._teachers: dict[int, tuple[nn.Module, dict]] = {}

    def _teacher(self, seed: int):
        if seed not in self._teachers:
            from opendojo.models import fsd_net

            torch.manual_seed(30_000 + seed)
            net = fsd_net("tiny", **self.shape).eval().requires_grad_(False)
            for head in (net.ego_head, net.occupancy_head):  # the model zero-initialises its heads
                nn.init.normal_(head.weight, std=0.3)
            probe = net(self._images(torch.Generator().manual_seed(seed), 16))
            self._teachers[seed] = (net, {k: v.float().std() + 1e-3 for k, v in probe.items()})
        return self._teachers[seed]

    def _images(self, g, size):
        s = self.shape
        coarse = torch.randn(size * s["cameras"] * s["frames"], 3, 8, 8, generator=g)
        img = F.interpolate(coarse, size=s["image_size"], mode="bilinear", align_corners=False)
        return img.view(size, s["cameras"], s["frames"], 3, s["image_size"], s["image_size"])

    def _make(self, g, seed, size):
        net, scale = self._teacher(seed)
        x = self._images(g, size)
        with torch.no_grad():  # each output with the teacher's typical magnitude, to weigh the outputs alike
            return x, {k: (v, scale[k]) for k, v in net(x).items()}

    def model(self):
        from opendojo.models import fsd_net

        return fsd_net("tiny", **self.shape)

    def loss(self, out, target):
        return sum(F.mse_loss(out[k].float() / s, v / s) for k, (v, s) in target.items()) / len(target)


TASKS: dict[str, type[Task]] = {
    t.name: t for t in (Regression, NoisyLabels, Gratings, CharLM, Forecast, FSDTiny)
}


if __name__ == "__main__":
    for cls in TASKS.values():
        model = cls().model()
        params = sum(p.numel() for p in model.parameters())
        print(f"{cls.name:13s} {params / 1e3:7.1f} k parameters, {cls.steps} steps of {cls.batch_size}: "
              f"{cls.__doc__}")
