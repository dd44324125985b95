"""``ClipLoader``: a ``DataLoader`` for ``ClipDataset`` that counts consumed samples, so it can checkpoint.

With ``num_workers > 0`` the dataset runs in worker processes and cannot know what the trainer has
consumed; the loader can: it counts the samples of every batch it hands out. ``state_dict()`` is the
dataset's state at that count, and after ``load_state_dict()`` the next pass over the same epoch
resumes exactly at the next unseen sample, whatever ``num_workers`` was before or is now.
"""

from __future__ import annotations

from torch.utils.data import DataLoader

from opendojo.data.dataset import ClipDataset


class ClipLoader(DataLoader):
    """``DataLoader(dataset, batch_size, num_workers, ...)`` that keeps ``dataset.batch_size`` in step
    (the condition for a worker-count-independent order), batches with ``collate_clips`` unless told
    otherwise, and counts samples for ``state_dict()``."""

    def __init__(self, dataset: ClipDataset, batch_size: int = 1, num_workers: int = 0, **kwargs):
        if not isinstance(dataset, ClipDataset):
            raise TypeError(f"dataset: expected a ClipDataset, got {type(dataset).__name__}")
        if kwargs.get("shuffle"):
            raise ValueError("shuffle=True: ClipDataset orders itself by (seed, epoch); leave it off")
        dataset.batch_size = int(batch_size)
        kwargs.setdefault("collate_fn", collate_clips)
        super().__init__(dataset, batch_size=batch_size, num_workers=num_workers, **kwargs)
        self.samples_seen = 0

    def __iter__(self):
        ds = self.dataset
        resume = ds._resume if ds._resume and ds._resume[0] == ds.epoch else None
        self.samples_seen = resume[1] if resume else 0
        for batch in super().__iter__():
            self.samples_seen += len(batch["clip_id"])
            yield batch
        if resume is not None and ds._resume == resume:
            ds._resume = None  # workers had their own copy; the main copy is cleared after a full pass

    def state_dict(self) -> dict:
        return self.dataset.state_dict(samples_seen=self.samples_seen)

    def load_state_dict(self, state: dict) -> None:
        self.dataset.load_state_dict(state)
        self.samples_seen = state.get("samples_seen", 0)


def collate_clips(samples: list[dict]) -> dict:
    """Batch ClipDataset samples: like ``default_collate`` (same structure, same result), but stacks the
    uint8 ``frames`` with a plain memory copy.

    Why: without ``out=``, ``torch.stack`` on uint8 tensors took 15 ms of CPU for a 25 MB batch where
    ``numpy.stack`` took 1.8 ms (2026-11-29, the 2-core dev machine, torch 2.13 CPU), a cost of the
    order of decoding the batch; that is what ``default_collate`` does in the main process
    (``num_workers=0``). In a DataLoader worker the batch is allocated in shared memory, as
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
