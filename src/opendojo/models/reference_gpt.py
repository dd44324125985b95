"""GPT-family decoder-only transformers (GPT-3 paper sizes, Megatron 1T, a Llama-3-405B-shaped variant).

Plain ``nn.Module``s, pre-LayerNorm (or RMSNorm + SwiGLU + grouped-query attention for the Llama shape),
attention through :func:`torch.nn.functional.scaled_dot_product_attention` (causal). Build on the meta
device (``with torch.device("meta")``) to capture a 175B model without allocating its weights.
Input: token ids ``[batch, seq]`` (int64); output: logits ``[batch, seq, vocab]``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GPT", "GPTConfig", "GPT_PRESETS", "gpt", "gpt_inputs"]


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a :class:`GPT`: ``n_layer`` blocks of width ``d_model`` over ``seq`` tokens."""

    n_layer: int
    d_model: int
    n_head: int
    seq: int = 2048
    vocab: int = 50257
    ffn_dim: int | None = None  # default 4 * d_model
    n_kv_head: int | None = None  # grouped-query attention; default n_head
    llama: bool = False  # RMSNorm + SwiGLU instead of LayerNorm + GELU; untied output head

    def __post_init__(self) -> None:
        for name in ("n_layer", "d_model", "n_head", "seq", "vocab"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {v!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"GPTConfig: d_model={self.d_model} is not divisible by n_head={self.n_head}")

    @property
    def params(self) -> int:
        """Parameter count (weights + biases + norms + embeddings), exact for this implementation."""
        d, f, kv = self.d_model, self.ffn_dim or 4 * self.d_model, self.n_kv_head or self.n_head
        hd = d // self.n_head
        attn = d * (d + 2 * kv * hd) + d * d
        if self.llama:
            block = attn + 3 * d * f + 2 * d
            return self.n_layer * block + 2 * self.vocab * d + d
        block = attn + (d + 2 * kv * hd) + d + 2 * d * f + f + d + 4 * d
        return self.n_layer * block + self.vocab * d + self.seq * d + 2 * d


#: GPT-3 paper (Brown et al. 2020, Table 2.1) sizes; Megatron-LM 1T (Narayanan et al. 2021);
#: Llama 3 405B shape (Dubey et al. 2024, Table 3).
GPT_PRESETS: dict[str, GPTConfig] = {
    "gpt-125m": GPTConfig(12, 768, 12),
    "gpt-350m": GPTConfig(24, 1024, 16),
    "gpt-760m": GPTConfig(24, 1536, 16),
    "gpt-1.3b": GPTConfig(24, 2048, 32),
    "gpt-2.7b": GPTConfig(32, 2560, 32),
    "gpt-6.7b": GPTConfig(32, 4096, 32),
    "gpt-13b": GPTConfig(40, 5120, 40),
    "gpt-175b": GPTConfig(96, 12288, 96),
    "gpt-1t": GPTConfig(128, 25600, 160),
    "llama3-405b": GPTConfig(126, 16384, 128, seq=8192, vocab=128256, ffn_dim=53248, n_kv_head=8, llama=True),
}


class _RMSNorm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class _Block(nn.Module):
    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        d, f = c.d_model, c.ffn_dim or 4 * c.d_model
        self.n_head, self.n_kv = c.n_head, c.n_kv_head or c.n_head
        self.hd = d // c.n_head
        norm = (lambda: _RMSNorm(d)) if c.llama else (lambda: nn.LayerNorm(d))
        self.ln1, self.ln2 = norm(), norm()
        self.qkv = nn.Linear(d, d + 2 * self.n_kv * self.hd, bias=not c.llama)
        self.proj = nn.Linear(d, d, bias=not c.llama)
        self.llama = c.llama
        if c.llama:
            self.gate_up = nn.Linear(d, 2 * f, bias=False)
            self.down = nn.Linear(f, d, bias=False)
        else:
            self.fc1, self.fc2 = nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split([d, self.n_kv * self.hd, self.n_kv * self.hd], dim=-1)
        q = q.view(b, s, self.n_head, self.hd).transpose(1, 2)
        k = k.view(b, s, self.n_kv, self.hd).transpose(1, 2)
        v = v.view(b, s, self.n_kv, self.hd).transpose(1, 2)
        if self.n_kv != self.n_head:
            rep = self.n_head // self.n_kv
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, s, d))
        h = self.ln2(x)
        if self.llama:
            g, u = self.gate_up(h).chunk(2, dim=-1)
            return x + self.down(F.silu(g) * u)
        return x + self.fc2(F.gelu(self.fc1(h)))


class GPT(nn.Module):
    """Decoder-only transformer: tokens ``[batch, seq]`` → logits ``[batch, seq, vocab]``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.tok = nn.Embedding(c.vocab, c.d_model)
        self.pos = None if c.llama else nn.Embedding(c.seq, c.d_model)
        self.blocks = nn.ModuleList(_Block(c) for _ in range(c.n_layer))
        self.ln_f = _RMSNorm(c.d_model) if c.llama else nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab, bias=False)
        if not c.llama:
            self.head.weight = self.tok.weight  # tied, as in GPT-2/3

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx)
        if self.pos is not None:
            x = x + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def gpt(name: str | GPTConfig, *, device: torch.device | str | None = None, **overrides) -> GPT:
    """Build a GPT preset by name (see :data:`GPT_PRESETS`) or from a config; ``device="meta"`` to capture."""
    if isinstance(name, GPTConfig):
        config = name
    elif name in GPT_PRESETS:
        config = GPT_PRESETS[name]
    else:
        raise ValueError(f"unknown GPT preset {name!r}; valid: {', '.join(GPT_PRESETS)}")
    config = replace(config, **overrides)
    with torch.device(device or "cpu"):
        return GPT(config)


def gpt_inputs(config: GPTConfig, batch: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Random token ids ``[batch, seq]`` (int64) for a :class:`GPT` of ``config``."""
    return torch.randint(0, config.vocab, (batch, config.seq), device=device)
