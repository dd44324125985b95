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
    (the condition for a worker-count-independent order) and counts samples for ``state_dict()``."""

    def __init__(self, dataset: ClipDataset, batch_size: int = 1, num_workers: int = 0, **kwargs):
        if not isinstance(dataset, ClipDataset):
            raise TypeError(f"dataset: expected a ClipDataset, got {type(dataset).__name__}")
        if kwargs.get("shuffle"):
            raise ValueError(
                "shuffle=True: ClipDataset shuffles itself (seed, epoch); leave DataLoader's off"
            )
        dataset.batch_size = int(batch_size)
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
