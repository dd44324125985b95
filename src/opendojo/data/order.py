"""Sample order: a pure function of (seed, epoch), cut the same way for any number of ranks and workers.

The *global order* of an epoch is a permutation of the clips (seeded by ``(seed, epoch)``), each clip
expanded into its consecutive windows. It is split in three steps, all integer arithmetic:

1. **Ranks.** The order is truncated to a multiple of ``world`` (at most ``world - 1`` samples dropped,
   so every rank yields the same number) and dealt out in rounds of ``world * block`` samples: in
   each round rank ``r`` takes the ``r``-th run of ``block`` samples (the last, shorter round is split
   in ``world`` equal runs). With ``block`` = the per-rank batch size, global batch ``g`` is the same
   set of samples whatever ``world`` is, as long as ``world * block`` stays the same.
2. **Resume.** A rank skips the first ``samples_seen`` samples of its own sequence.
3. **Workers.** What remains is cut into batches of ``block`` samples; worker ``w`` of ``W`` takes
   batches ``w, w + W, ...``. PyTorch's DataLoader returns batches from its workers round-robin, in
   order, so the batches reach the trainer in exactly the sequence of step 2 for any ``W``.
"""

from __future__ import annotations

import numpy as np


def epoch_order(windows: np.ndarray, seed: int, epoch: int, shuffle: bool) -> tuple[np.ndarray, np.ndarray]:
    """The global order of an epoch as ``(clip index, window index)`` arrays, each ``[sum(windows)]``.

    ``windows[i]`` is the number of samples clip ``i`` provides; a clip's windows stay consecutive so a
    worker decodes the clip once for all of them.
    """
    n = len(windows)
    clips = np.random.default_rng([int(seed), int(epoch)]).permutation(n) if shuffle else np.arange(n)
    counts = windows[clips]
    clip_of = np.repeat(clips, counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return clip_of, np.arange(len(clip_of)) - starts


def rank_positions(total: int, rank: int, world: int, block: int) -> np.ndarray:
    """Positions in the global order that ``rank`` of ``world`` yields, in order; ``[total // world]``."""
    if not 0 <= rank < world:
        raise ValueError(f"rank={rank!r}: must be in [0, world_size={world})")
    n = total // world * world
    per_round = world * block
    full = n // per_round
    head = np.arange(full * per_round).reshape(full, world, block)[:, rank].ravel()
    tail_len = (n - full * per_round) // world
    tail = full * per_round + rank * tail_len + np.arange(tail_len)
    return np.concatenate([head, tail]).astype(np.int64)


def worker_positions(local: np.ndarray, start: int, worker: int, workers: int, block: int) -> np.ndarray:
    """The part of a rank's sequence ``local[start:]`` that DataLoader worker ``worker`` of ``workers``
    yields."""
    rest = local[start:]
    batch_of = np.arange(len(rest)) // block
    return rest[batch_of % workers == worker]
