"""Reference vision workloads: ResNet-50 (He et al. 2016) and ViT-B/16 (Dosovitskiy et al. 2021).

Plain ``nn.Module``s written here (no torchvision dependency), meta-device friendly.
Input: images ``[batch, 3, H, W]`` float; output: class logits ``[batch, classes]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResNet", "ViT", "resnet50", "vit_b16"]


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """Bottleneck ResNet; ``layers=(3, 4, 6, 3)`` is ResNet-50 (25.6 M parameters)."""

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], width
        for i, n in enumerate(layers):
            w = width * 2 ** i
            for j in range(n):
                blocks.append(_Bottleneck(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * 4
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


class _EncoderBlock(nn.Module):
    def __init__(self, d: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, mlp), nn.Linear(mlp, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ViT(nn.Module):
    """Vision Transformer; defaults are ViT-B/16 at 224² (86.6 M parameters)."""

    def __init__(self, image: int = 224, patch: int = 16, d: int = 768, depth: int = 12, heads: int = 12,
                 mlp: int = 3072, classes: int = 1000) -> None:
        super().__init__()
        if image % patch:
            raise ValueError(f"image={image} is not divisible by patch={patch}")
        self.embed = nn.Conv2d(3, d, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, (image // patch) ** 2 + 1, d))
        self.blocks = nn.Sequential(*(_EncoderBlock(d, heads, mlp) for _ in range(depth)))
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        return self.head(self.ln(self.blocks(t))[:, 0])


def resnet50(*, device: torch.device | str | None = None, **kw) -> ResNet:
    """ResNet-50 (``kw`` overrides ``layers``, ``classes``, ``width``)."""
    with torch.device(device or "cpu"):
        return ResNet(**kw)


def vit_b16(*, device: torch.device | str | None = None, **kw) -> ViT:
    """ViT-B/16 (``kw`` overrides ``image``, ``patch``, ``d``, ``depth``, ``heads``, ``mlp``, ``classes``)."""
    with torch.device(device or "cpu"):
        return ViT(**kw)
