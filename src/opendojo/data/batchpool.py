"""Reusable batch buffers: frame batches written into memory that has been touched before.

Why: a fresh ``[B, cams, T, H, W, 3]`` uint8 batch (25 MB at batch 4, 2 cameras, 16 frames, 256x256)
costs a page fault per 4 KiB page on first touch: a sizeable share of a frame's decode in-process,
and more in a DataLoader worker, where each batch is a fresh shared-memory segment (docs/data.md has
the measurements). Reusing a few buffers per process removes that cost.

A buffer may be reused only when nobody can still see the batch it held:

* in the process that consumes the batches (``num_workers=0``): when the pool's reference is the
  only one left on the buffer's storage (the consumer dropped the batch and every view of it);
* in a DataLoader worker, the consumer is another process. The worker stamps each batch with
  ``(worker, slot, token)`` and writes the token into a small shared-memory table; the main process
  (``ClipLoader``) keeps the received batch's storage and, once only its own reference is left,
  writes 0 back if the slot still holds that token. The worker reuses a slot only when it reads 0.
  A batch that was copied on receipt (``pin_memory``) is released at once.

When every slot is in use, a batch gets fresh memory (never waits, so it cannot deadlock).
"""

from __future__ import annotations

import os

import numpy as np
import torch

SLOTS_PER_WORKER = 6  # prefetch_factor (2) batches queued + ~2 held by the consumer + margin
SLOT_KEY = "_opendojo_slot"  # batch key carrying (worker, slot, token) from a worker to ClipLoader


def _use_count(storage: torch.UntypedStorage) -> int:
    return torch._C._storage_Use_Count(storage._cdata)


def new_release_table(num_workers: int) -> torch.Tensor:
    """The shared ``[num_workers, SLOTS_PER_WORKER]`` int64 token table (0 = slot free)."""
    return torch.zeros((num_workers, SLOTS_PER_WORKER), dtype=torch.int64).share_memory_()


def _as_uint8(storage: torch.UntypedStorage, shape: tuple[int, ...]) -> torch.Tensor:
    n = int(np.prod(shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, (n,)).view(shape)


class BatchBuffers:
    """Per-process pool of uint8 batch buffers. ``worker=None``: in-process reuse by reference count;
    else ``(worker id, token table)``: shared-memory buffers released by the main process."""

    def __init__(self, worker: tuple[int, torch.Tensor] | None = None):
        self._worker = worker
        self._slots: list[torch.UntypedStorage] = []
        self._count = 0

    def take(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, int, int] | None]:
        """An uninitialised uint8 tensor of ``shape`` and its slot stamp (None in-process or when the
        batch got fresh memory)."""
        nbytes = int(np.prod(shape))
        if self._worker is None:
            for storage in self._slots:
                if _use_count(storage) == 1 and storage.nbytes() >= nbytes:
                    return _as_uint8(storage, shape), None
            storage = torch.UntypedStorage(nbytes)
            if len(self._slots) < SLOTS_PER_WORKER:
                self._slots.append(storage)
            return _as_uint8(storage, shape), None
        wid, table = self._worker
        row = table[wid]
        self._count += 1
        token = (os.getpid() << 24) | (self._count & 0xFFFFFF)  # unique per fill, never 0
        for k, storage in enumerate(self._slots):
            if int(row[k]) == 0 and storage.nbytes() >= nbytes:
                row[k] = token
                return _as_uint8(storage, shape), (wid, k, token)
        storage = torch.UntypedStorage._new_shared(nbytes)
        if len(self._slots) < SLOTS_PER_WORKER:
            k = len(self._slots)
            self._slots.append(storage)
            row[k] = token
            return _as_uint8(storage, shape), (wid, k, token)
        return _as_uint8(storage, shape), None


class ReleaseTracker:
    """Main-process side: holds received pooled batches and frees their slots once the consumer has
    let go of them."""

    def __init__(self, table: torch.Tensor):
        self._table = table
        self._held: list[tuple[torch.UntypedStorage, tuple[int, int, int]]] = []

    def received(self, frames: torch.Tensor, stamp: tuple[int, int, int] | None) -> None:
        if stamp is None:
            return
        if not frames.is_shared():  # copied on receipt (pin_memory): the worker's buffer is free now
            self._free(stamp)
        else:
            self._held.append((frames.untyped_storage(), stamp))

    def poll(self) -> None:
        """Free the slots of every held batch that only this tracker still references."""
        keep = []
        for storage, stamp in self._held:
            if _use_count(storage) == 1:
                self._free(stamp)
            else:
                keep.append((storage, stamp))
        self._held = keep

    def _free(self, stamp: tuple[int, int, int]) -> None:
        wid, k, token = stamp
        if int(self._table[wid, k]) == token:  # else a newer worker generation owns the slot
            self._table[wid, k] = 0
