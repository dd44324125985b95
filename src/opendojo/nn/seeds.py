"""Stochastic-rounding seeds: a pure function of (layer seed, step, tensor stream).

The numerics kernels draw their random bits from (seed, flat element index), so a converted layer only
has to hand them a different seed per step and tensor. Seeds come from the layer's step counter, which
lives in a buffer: restoring a ``state_dict`` therefore restores the exact random stream, and a resumed
run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import zlib

_MASK64 = (1 << 64) - 1

#: Stream numbers of the tensor classes of a converted layer (part of the seed contract; never reorder).
STREAMS = {"input": 0, "weight": 1, "grad_output": 2, "grad_input": 3, "weight_storage": 4}


def _splitmix64(z: int) -> int:
    # SplitMix64 finaliser (Steele et al. 2014): a bijective, well-mixing 64-bit hash.
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def layer_seed(recipe_seed: int, fqn: str) -> int:
    """The base seed of the layer named ``fqn`` (its dotted name in the model), in ``[0, 2**62)``."""
    return _splitmix64((recipe_seed << 32) ^ zlib.crc32(fqn.encode())) >> 2


def shard_seed(seed: int, shard: int) -> int:
    """The seed for shard ``shard`` of a sharded tensor rounded with ``seed``, in ``[0, 2**31)``."""
    return _splitmix64((seed << 20) ^ (shard & _MASK64)) >> 33


def tensor_seed(base: int, step: int, stream: str) -> int:
    """The seed for tensor class ``stream`` of a layer with base seed ``base`` at training step ``step``.

    Returns an int in ``[0, 2**31)`` (small enough for any kernel's seed argument).
    """
    z = _splitmix64(base & _MASK64)
    z = _splitmix64(z ^ (step & _MASK64))
    z = _splitmix64(z ^ STREAMS[stream])
    return z >> 33
