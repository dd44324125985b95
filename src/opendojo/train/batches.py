"""From the data engine's clips to model inputs: dataset opening, batching, device transfer, position.

The data engine (``opendojo.data``) yields one clip at a time: ``frames`` uint8 ``[cams, T, H, W, 3]``
and ``labels``. This module batches them per rank, moves them to the device, turns frames into the
network's float ``[B, cams, T, 3, H, W]`` input, and keeps the data position (epoch, clips consumed)
that a checkpoint stores, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from opendojo.errors import UsageError
from opendojo.train.config import DataConfig
from opendojo.train.objectives import TARGETS

__all__ = [
    "BatchStream",
    "DataBundle",
    "eval_batches",
    "first_batch_labels",
    "frames_to_input",
    "open_datasets",
]

# uint8 pixels → roughly zero-mean, unit-variance floats.
_PIXEL_MEAN, _PIXEL_STD = 127.5, 64.0


def frames_to_input(frames: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 ``[B, cams, T, H, W, 3]`` → float32 ``[B, cams, T, 3, H, W]`` on ``device``, normalised.

    The transfer happens in uint8 (4× fewer bytes than float) and the conversion on the device.
    """
    if frames.dtype != torch.uint8 or frames.dim() != 6 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames must be uint8 [B, cams, T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}"
        )
    x = frames.to(device, non_blocking=True).permute(0, 1, 2, 5, 3, 4).float()
    return (x - _PIXEL_MEAN) / _PIXEL_STD


def _targets(labels: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: labels[k].to(device, non_blocking=True) for k in TARGETS}


@dataclass
class DataBundle:
    """The opened train/eval datasets of this rank and the label geometry the model must match."""

    train: Any
    eval: Any
    path: Path
    cameras: int
    frames: int
    image_size: int
    grid: int
    horizon: int
    dt_s: float
    clips: int

    def describe(self) -> str:
        return (
            f"{self.clips} clips at {self.path}: {self.cameras} cameras, {self.frames} frames of "
            f"{self.image_size}x{self.image_size}, occupancy {self.grid}x{self.grid}, "
            f"{self.horizon} trajectory points"
        )


def _cache_root(data: DataConfig) -> Path:
    if data.cache_dir:
        return Path(data.cache_dir).expanduser()
    return Path(os.environ.get("OPENDOJO_CACHE", "~/.cache/opendojo")).expanduser()


def _dataset_path(data: DataConfig) -> Path:
    if data.source == "synthetic":
        from opendojo.data import ensure_synthetic_dataset

        return Path(
            ensure_synthetic_dataset(
                _cache_root(data) / "synthetic",
                clips=data.synthetic_clips,
                cameras=data.cameras,
                frames=data.synthetic_frames,
                size=(data.image_size, data.image_size),
                seed=data.seed,
            )
        )
    path = Path(data.source).expanduser()
    if not path.exists():
        raise UsageError(
            f"config key data.source: dataset {str(path)!r} does not exist (allowed: "
            f"'synthetic' or the folder of a dataset made by `dojo data ingest`)"
        )
    return path


def open_datasets(data: DataConfig, rank: int, world_size: int, batch_size: int) -> DataBundle:
    """Open (generating first, for ``source = "synthetic"``) the train and eval splits for this rank.

    ``batch_size`` is the per-rank batch: the data engine deals samples to ranks in runs of that size so
    that a global batch is the same set of clips for any number of ranks. Raises ``UsageError`` (naming
    ``data.source`` and the path) for a missing, empty or unsuitable dataset.
    """
    from opendojo.data import ClipDataset
    from opendojo.data.labels import TRAJECTORY_DT_S

    path = _dataset_path(data)
    common = dict(
        frames_per_clip=data.frames_per_clip,
        size=(data.image_size, data.image_size),
        seed=data.seed,
        batch_size=batch_size,
        rank=rank,
        world_size=world_size,
    )
    try:
        train = ClipDataset(path, shuffle=True, split="train", **common)
        if len(train.cameras) < data.cameras:
            raise ValueError(f"has cameras {train.cameras}, fewer than data.cameras={data.cameras}")
        cameras = train.cameras[: data.cameras]
        train = ClipDataset(path, cameras=cameras, shuffle=True, split="train", **common)
        evaluation = ClipDataset(path, cameras=cameras, shuffle=False, split="eval", **common)
    except FileNotFoundError as e:  # not a dataset: no index, no shards
        raise UsageError(f"config key data.source: {e}") from None
    except ValueError as e:
        raise UsageError(f"config key data.source: dataset {str(path)!r} cannot be used: {e}") from None
    if len(train) < batch_size:
        raise ValueError(
            f"dataset {str(path)!r} gives this rank {len(train)} training clips per epoch, fewer "
            f"than one batch ({batch_size}); lower train.batch_size or add data"
        )
    sample = next(iter(evaluation))
    missing = [k for k in TARGETS if k not in sample["labels"]]
    if missing:
        raise ValueError(f"dataset {str(path)!r} has no labels {missing}; training needs {list(TARGETS)}")
    labels = sample["labels"]
    return DataBundle(
        train=train,
        eval=evaluation,
        path=path,
        cameras=len(cameras),
        frames=data.frames_per_clip,
        image_size=data.image_size,
        grid=int(labels["occupancy"].shape[-1]),
        horizon=int(labels["trajectory"].shape[-2]),
        dt_s=TRAJECTORY_DT_S,
        clips=train.num_clips + evaluation.num_clips,
    )


def _loader(dataset: Any, batch_size: int, num_workers: int, device: torch.device, drop_last: bool):
    # ClipLoader decodes each clip straight into its slot of a reused batch buffer: twice the frames per
    # CPU-second of a per-sample DataLoader + stack (docs/data.md), same batches, same resume position.
    from opendojo.data import ClipLoader

    return ClipLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=device.type == "cuda",
        # The loader draws a worker base seed when an iterator starts; a private generator keeps that draw
        # out of the global RNG, so a resumed run's RNG state matches an uninterrupted one's exactly.
        generator=torch.Generator().manual_seed(0),
    )


class BatchStream:
    """Endless per-rank training batches over successive epochs, with a resumable position.

    The position is (epoch, batches consumed in that epoch); the data engine turns it into the exact
    next sample, for any number of DataLoader workers.
    """

    def __init__(self, data: DataBundle, batch_size: int, num_workers: int, device: torch.device) -> None:
        self.dataset, self.batch_size, self.num_workers, self.device = (
            data.train,
            batch_size,
            num_workers,
            device,
        )
        self.epoch, self.batches = 0, 0
        self._it: Iterator | None = None

    def _start(self) -> None:
        self.dataset.load_state_dict({"epoch": self.epoch, "samples_seen": self.batches * self.batch_size})
        self._it = iter(_loader(self.dataset, self.batch_size, self.num_workers, self.device, drop_last=True))

    def next(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The next batch: (float frames ``[B, cams, T, 3, H, W]``, targets) on the device."""
        if self._it is None:
            self._start()
        try:
            batch = next(self._it)
        except StopIteration:
            if self.batches == 0:
                raise ValueError(f"an epoch of the training set gave no batch of {self.batch_size}") from None
            self.epoch, self.batches = self.epoch + 1, 0
            self._start()
            batch = next(self._it)
        self.batches += 1
        return frames_to_input(batch["frames"], self.device), _targets(batch["labels"], self.device)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able position: epoch and batches consumed (plus the data engine's own record)."""
        return {
            "epoch": self.epoch,
            "batches": self.batches,
            "dataset": self.dataset.state_dict(samples_seen=self.batches * self.batch_size),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; the data engine refuses a position recorded on another dataset."""
        self.epoch, self.batches = int(state["epoch"]), int(state["batches"])
        self.dataset.load_state_dict(state["dataset"])  # validates seed, clips, world size, batch size
        self._it = None


def first_batch_labels(data: DataBundle, batch_size: int, batches: int = 4) -> dict[str, torch.Tensor]:
    """The labels of this rank's first ``batches`` training batches of epoch 0, concatenated (CPU).

    Touches no stream: the training stream sets its own position before it reads.
    """
    data.train.load_state_dict({"epoch": 0, "samples_seen": 0})
    collected: list[dict[str, torch.Tensor]] = []
    for batch in _loader(data.train, batch_size, 0, torch.device("cpu"), drop_last=True):
        collected.append(batch["labels"])
        if len(collected) == batches:
            break
    return {k: torch.cat([c[k] for c in collected]) for k in TARGETS}


def eval_batches(
    data: DataBundle, batch_size: int, max_batches: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Up to ``max_batches`` batches of this rank's part of the eval split, always the same ones."""
    data.eval.set_epoch(0)
    for i, batch in enumerate(_loader(data.eval, batch_size, 0, device, drop_last=False)):
        if i >= max_batches:
            break
        yield frames_to_input(batch["frames"], device), _targets(batch["labels"], device)
