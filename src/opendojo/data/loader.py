"""``ClipLoader``: a ``DataLoader`` for ``ClipDataset`` that counts consumed samples, so it can checkpoint.

With ``num_workers > 0`` the dataset runs in worker processes and cannot know what the trainer has
consumed; the loader can: it counts the samples of every batch it hands out. ``state_dict()`` is the
dataset's state at that count, and after ``load_state_dict()`` the next pass over the same epoch
resumes exactly at the next unseen sample, whatever ``num_workers`` was before or is now.

With the default ``collate_fn`` the dataset makes whole batches itself (``ClipDataset._iter_batches``):
each clip is decoded straight into its slot of the batch tensor, which in a worker lives in shared
memory, instead of into a sample tensor that ``collate`` then copies. Same batches, fewer copies.
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from opendojo.data.batchpool import SLOT_KEY, BatchBuffers, ReleaseTracker, new_release_table
from opendojo.data.dataset import ClipDataset
from opendojo.errors import check_positive


def _as_is(batch: dict) -> dict:
    """DataLoader's per-item conversion for ready-made batches: none (its default would turn the numpy
    labels into tensors inside the worker, each then sent as a shared-memory segment)."""
    return batch


class _ClipBatches(IterableDataset):
    """A ``ClipDataset`` seen as a stream of whole batches (for ``DataLoader(batch_size=None)``). Any
    other attribute (``set_epoch``, ``epoch``, ``state_dict``, ...) is the wrapped dataset's, so
    ``loader.dataset`` behaves like the ``ClipDataset`` it was given."""

    def __init__(self, clips: ClipDataset, drop_last: bool, release_table: torch.Tensor | None):
        self.clips, self.drop_last, self.release_table = clips, drop_last, release_table
        self._buffers: BatchBuffers | None = None
        self._pid = -1

    def __iter__(self):
        if self._buffers is None or self._pid != os.getpid():  # one pool per process, kept across epochs
            info = get_worker_info()
            pooled = info is not None and self.release_table is not None
            self._buffers = BatchBuffers((info.id, self.release_table) if pooled else None)
            self._pid = os.getpid()
        return self.clips._iter_batches(self.drop_last, self._buffers)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_buffers": None, "_pid": -1}

    def __len__(self) -> int:
        n, b = len(self.clips), self.clips.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __getattr__(self, name: str):
        if name == "clips":  # not yet set (unpickling): do not recurse
            raise AttributeError(name)
        return getattr(self.clips, name)


class ClipLoader(DataLoader):
    """``DataLoader(dataset, batch_size, num_workers, ...)`` that keeps ``dataset.batch_size`` in step
    (the condition for a worker-count-independent order), batches with ``collate_clips`` unless told
    otherwise (then the dataset builds each batch in place, see the module docstring), and counts
    samples for ``state_dict()``. ``loader.dataset`` forwards to the ``ClipDataset``."""

    def __init__(self, dataset: ClipDataset, batch_size: int = 1, num_workers: int = 0, **kwargs):
        if not isinstance(dataset, ClipDataset):
            raise TypeError(f"dataset: expected a ClipDataset, got {type(dataset).__name__}")
        if kwargs.get("shuffle"):
            raise ValueError("shuffle=True: ClipDataset orders itself by (seed, epoch); leave it off")
        dataset.batch_size = check_positive("batch_size", batch_size)
        self.clips = dataset
        self._tracker: ReleaseTracker | None = None
        if kwargs.get("collate_fn", collate_clips) is collate_clips:
            kwargs.pop("collate_fn", None)
            table = new_release_table(num_workers) if num_workers > 0 else None
            self._tracker = ReleaseTracker(table) if table is not None else None
            batches = _ClipBatches(dataset, bool(kwargs.pop("drop_last", False)), table)
            super().__init__(batches, batch_size=None, num_workers=num_workers, collate_fn=_as_is, **kwargs)
        else:
            super().__init__(dataset, batch_size=batch_size, num_workers=num_workers, **kwargs)
        self.samples_seen = 0

    def __iter__(self):
        ds = self.clips
        resume = ds._resume if ds._resume and ds._resume[0] == ds.epoch else None
        self.samples_seen = resume[1] if resume else 0
        for batch in super().__iter__():
            if self._tracker is not None:
                self._tracker.poll()  # slots of batches the consumer has let go of go back to workers
                self._tracker.received(batch["frames"], batch.pop(SLOT_KEY, None))
            if self.batch_size is None:  # batches built in place by the dataset (see __init__)
                batch["labels"] = {k: torch.from_numpy(v) for k, v in batch["labels"].items()}
                batch["start_frame"] = torch.from_numpy(batch["start_frame"])
            self.samples_seen += len(batch["clip_id"])
            yield batch
            del batch  # hold no reference while the next batch is made: its memory may be reused
        if resume is not None and ds._resume == resume:
            ds._resume = None  # workers had their own copy; the main copy is cleared after a full pass

    def state_dict(self) -> dict:
        return self.clips.state_dict(samples_seen=self.samples_seen)

    def load_state_dict(self, state: dict) -> None:
        self.clips.load_state_dict(state)
        self.samples_seen = state.get("samples_seen", 0)


def collate_clips(samples: list[dict]) -> dict:
    """Batch ClipDataset samples: like ``default_collate`` (same structure, same result), but stacks the
    uint8 ``frames`` with a plain memory copy.

    Why: without ``out=``, ``torch.stack`` on uint8 tensors costs several times ``numpy.stack``'s plain
    copy, of the order of decoding the batch (docs/data.md); that is what ``default_collate`` does in
    the main process (``num_workers=0``). In a DataLoader worker the batch is allocated in shared memory, as
    ``default_collate`` does, so it reaches the main process without another copy.
    """
    import numpy as np
    import torch
    from torch.utils.data import default_collate, get_worker_info

    frames = [s["frames"] for s in samples]
    shape = (len(frames), *frames[0].shape)
    if any(f.shape != frames[0].shape or f.dtype != torch.uint8 for f in frames):
        return default_collate(samples)
    if get_worker_info() is not None:
        storage = frames[0]._typed_storage()._new_shared(int(np.prod(shape)), device="cpu")
        out = frames[0].new(storage).view(shape)
    else:
        out = torch.empty(shape, dtype=torch.uint8)
    np.stack([f.numpy() for f in frames], out=out.numpy())
    rest = default_collate([{k: v for k, v in s.items() if k != "frames"} for s in samples])
    return {"frames": out, **rest}
