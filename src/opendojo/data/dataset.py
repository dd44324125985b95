"""``ClipDataset``: deterministic, resumable streaming of decoded multi-camera clips for PyTorch.

Each sample is a dict (batches made by the default ``DataLoader`` collate stack the tensors and turn
the strings into lists)::

    frames       uint8   [cams, T, H, W, 3]   RGB, cameras in ``dataset.cameras`` order
    labels       dict of tensors, first axis T (schema in ``opendojo.data.labels``):
                 speed [T] float32 m/s, steering [T] float32 rad (left +),
                 trajectory [T, K, 2] float32 m (next K ego positions, ego frame: x forward, y left),
                 occupancy [T, G, G] uint8 (cell 2 m, row 0 = far ahead, column 0 = far left),
                 boxes [T, M, 5] float32 (x, y, length, width, yaw; padded), box_mask [T, M] bool
                 (empty dict when the source had no labels)
    clip_id      str     the stored clip the sample comes from
    source       str     the ingested file
    start_frame  int     index of the sample's first frame in that file

Determinism and resume (details in ``order.py``): the order is a pure function of ``(seed, epoch)``
(``set_epoch``). Pass ``batch_size`` equal to the DataLoader's: then the batches are the same, in the
same order, for any number of DataLoader workers, and global batches are the same for any number of
ranks at a fixed global batch size. ``state_dict(samples_seen=n)`` records a position counted in
samples this rank's trainer has consumed (with workers the dataset copy in the main process cannot
see them; ``ClipLoader`` counts them for you); ``load_state_dict`` makes the next iteration of that
epoch start exactly there.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import IterableDataset, get_worker_info

from opendojo.data.batchpool import SLOT_KEY, BatchBuffers
from opendojo.data.codec import decode_rgb
from opendojo.data.index import dataset_root_of, load_index
from opendojo.data.order import epoch_order, rank_positions, worker_positions
from opendojo.data.shard import ShardReader, join
from opendojo.errors import UsageError, check_choice, check_int, check_positive

SPLITS = ("train", "eval")
_COLUMNS = ("clip_id", "camera", "camera_index", "source", "source_sha256", "start_frame", "frames", "width",
            "height", "shard", "member", "data_offset", "data_bytes", "labels_member", "labels_offset",
            "labels_bytes")


def _dist_rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def split_units(keys: list[str], split: str | None, eval_fraction: float) -> set[str]:
    """The keys (sources or clips) in ``split``: the ``max(1, round(eval_fraction * n))`` keys with the
    smallest SHA-256 form the eval split, the rest train. Deterministic, independent of row order."""
    units = sorted(set(keys))
    if split is None:
        return set(units)
    check_choice("split", split, (*SPLITS, None))
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction={eval_fraction!r}: must be strictly between 0 and 1")
    if len(units) < 2:
        raise ValueError(f"split={split!r}: needs at least 2 split units, the dataset has {len(units)}")
    ranked = sorted(units, key=lambda k: hashlib.sha256(f"opendojo.split:{k}".encode()).hexdigest())
    n_eval = min(len(units) - 1, max(1, round(eval_fraction * len(units))))
    return set(ranked[:n_eval]) if split == "eval" else set(ranked[n_eval:])


def _content_order(item: tuple[str, dict[str, dict]]) -> tuple[str, int, str]:
    """Base order of clips: by source content hash, then time; independent of how the index was written."""
    row = next(iter(item[1].values()))
    return row["source_sha256"], row["start_frame"], item[0]


def _index_rows(path_or_subset: str | os.PathLike | pa.Table) -> tuple[str, list[dict]]:
    """``(dataset root, index rows with the columns ClipDataset uses)``; refuses an empty or old index."""
    table = (path_or_subset if isinstance(path_or_subset, pa.Table)
             else load_index(path_or_subset, columns=_COLUMNS))  # decode only the columns it uses
    root = dataset_root_of(table)
    if table.num_rows == 0:
        raise ValueError(f"dataset {root!r}: the index (or subset) has no clips")
    missing = sorted(set(_COLUMNS) - set(table.column_names))
    if missing:
        raise ValueError(f"index of {root!r} lacks columns {missing}: written by another OpenDojo "
                         "version? Ingest the sources again")
    return root, table.select(list(_COLUMNS)).to_pylist()


def _choose_cameras(root: str, clips: dict[str, dict[str, dict]], rows: list[dict],
                    cameras: list[str] | None) -> list[str]:
    """``cameras`` checked, or by default those every clip has, in camera-index order."""
    if cameras is None:
        common = set.intersection(*(set(c) for c in clips.values()))
        index_of = {r["camera"]: r["camera_index"] for r in rows}
        cameras = sorted(common, key=lambda n: (index_of[n], n))
        if not cameras:
            raise ValueError(f"dataset {root!r}: no camera is present in every clip; pass cameras=[...]")
    elif isinstance(cameras, str) or not cameras:
        raise UsageError(f"cameras={cameras!r}: must be a non-empty list of camera names")
    return list(cameras)


def _refuse_label_mix(root: str, clips: dict[str, dict[str, dict]]) -> None:
    """Refuse a dataset where some clips carry labels and others do not.

    Why refuse instead of mixing: a batch holds one label dict for all its samples, so a mix either
    drops the labels of the batch or fails at a random step when an unlabelled clip comes up. The
    choice belongs to the user, and a query makes it in one line."""
    labelled = sum(1 for c in clips.values() if next(iter(c.values()))["labels_member"])
    if 0 < labelled < len(clips):
        raise UsageError(
            f"dataset {root!r}: {labelled} clips have labels and {len(clips) - labelled} have none; a batch "
            "cannot mix them. Pick one kind with a subset, e.g. `dojo data query DATASET "
            "\"labels_member IS NOT NULL\" --out labelled.parquet`")


def _batch_of(frames: torch.Tensor, rest: list[dict], stamp: object) -> dict:
    """A collated batch from its frames tensor and its samples' labels and origins."""
    keys = rest[0]["labels"].keys()
    odd = [r["clip_id"] for r in rest if r["labels"].keys() != keys]
    if odd:  # sources with other label names: refuse rather than drop some labels silently
        raise ValueError(f"clips {odd} have other label names than clip {rest[0]['clip_id']} "
                         f"({sorted(keys)}); select sources with the same labels")
    out = {
        "frames": frames,
        # numpy, not tensors: in a worker a tensor travels as one more shared-memory segment and
        # file descriptor per label; these few kB are cheaper pickled (ClipLoader converts them)
        "labels": {k: np.stack([r["labels"][k].numpy() for r in rest]) for k in keys},
        "clip_id": [r["clip_id"] for r in rest],
        "source": [r["source"] for r in rest],
        "start_frame": np.array([r["start_frame"] for r in rest], dtype=np.int64),
    }
    if stamp is not None:
        out[SLOT_KEY] = stamp
    return out


class ClipDataset(IterableDataset):
    """Stream ``[cams, T, H, W, 3]`` uint8 clips and their labels from a dataset, subset manifest or
    index table (``query()`` result).

    ``frames_per_clip``: ``T`` (default: the shortest stored clip); a stored clip of ``F`` frames gives
    ``F // T`` consecutive samples. ``cameras``: names to stack, in order (default: those every clip
    has, by camera index). ``size=(H, W)`` resizes while decoding. ``split``: ``"train"``/``"eval"``
    (held-out by ``split_by`` = ``"source"`` or ``"clip"``, ``eval_fraction`` of them) or None for all.
    ``batch_size``: the DataLoader's batch size (see module docstring). ``rank``/``world_size`` default
    to torch.distributed's when initialised, else 0/1.
    """

    def __init__(
        self,
        path_or_subset: str | os.PathLike | pa.Table,
        frames_per_clip: int | None = None,
        cameras: list[str] | None = None,
        size: tuple[int, int] | None = None,
        seed: int = 0,
        shuffle: bool = True,
        split: str | None = None,
        *,
        eval_fraction: float = 0.1,
        split_by: str = "source",
        batch_size: int = 1,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        if size is not None:
            from opendojo.data.synth import check_size

            size = check_size(size)
        check_choice("split_by", split_by, ("source", "clip"))
        self.size, self.seed, self.shuffle = size, int(seed), bool(shuffle)
        self.batch_size = check_positive("batch_size", batch_size)
        self.root, rows = _index_rows(path_or_subset)
        clips: dict[str, dict[str, dict]] = {}
        for r in rows:
            clips.setdefault(r["clip_id"], {})[r["camera"]] = r
        self.cameras = _choose_cameras(self.root, clips, rows, cameras)
        _refuse_label_mix(self.root, clips)
        self.frames_per_clip = (min(r["frames"] for r in rows) if frames_per_clip is None
                                else check_positive("frames_per_clip", frames_per_clip))
        self._clips = self._select(clips, split, split_by, eval_fraction)
        self._windows = np.array([min(r["frames"] for r in c) // self.frames_per_clip for c in self._clips])
        self._rank, self._world = rank, world_size
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, samples_seen)
        self._seen = 0
        self._reader: ShardReader | None = None
        self._reader_pid = -1

    def _select(self, clips: dict[str, dict[str, dict]], split: str | None, split_by: str,
                eval_fraction: float) -> list[list[dict]]:
        """The clips of ``split`` that have every chosen camera and enough frames, in content order;
        each as its rows in ``self.cameras`` order."""
        keys = {cid: (next(iter(c.values()))["source_sha256"] if split_by == "source" else cid)
                for cid, c in clips.items()}
        chosen = split_units(list(keys.values()), split, eval_fraction)
        out = [
            [c[name] for name in self.cameras]
            for cid, c in sorted(clips.items(), key=_content_order)
            if keys[cid] in chosen
            and all(name in c for name in self.cameras)
            and min(c[name]["frames"] for name in self.cameras) >= self.frames_per_clip
        ]
        if not out:
            raise ValueError(
                f"dataset {self.root!r}: no clip has cameras {self.cameras} with at least "
                f"frames_per_clip={self.frames_per_clip} frames in split {split!r}"
            )
        return out

    # -- order ---------------------------------------------------------------------------------------
    def _rank_world(self) -> tuple[int, int]:
        r, w = _dist_rank_world()
        rank = r if self._rank is None else self._rank
        world = w if self._world is None else self._world
        check_int("rank", rank, low=0, high=check_positive("world_size", world) - 1)
        return rank, world

    @property
    def num_clips(self) -> int:
        return len(self._clips)

    def __len__(self) -> int:
        """Samples this rank yields per epoch (all workers together)."""
        return int(self._windows.sum()) // self._rank_world()[1]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_int("epoch", epoch, low=0)

    def state_dict(self, samples_seen: int | None = None) -> dict:
        """Where this rank is: ``samples_seen`` samples of epoch ``epoch`` consumed. Pass ``samples_seen``
        when iterating through DataLoader workers (the count kept here only sees ``num_workers=0``)."""
        seen = self._seen if samples_seen is None else int(samples_seen)
        return {
            "epoch": self.epoch,
            "samples_seen": seen,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "world_size": self._rank_world()[1],
            "num_clips": self.num_clips,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration of ``state['epoch']`` starts at sample ``state['samples_seen']``."""
        for k in ("seed", "shuffle", "num_clips", "world_size", "batch_size"):
            mine = self.state_dict()[k]
            if k in state and state[k] != mine:
                raise ValueError(
                    f"state_dict[{k!r}]={state[k]!r} does not match this dataset ({mine!r}); "
                    "resuming would not reproduce the same order"
                )
        seen = state.get("samples_seen", 0)
        if isinstance(seen, bool) or not isinstance(seen, int) or not 0 <= seen <= len(self):
            raise ValueError(f"state_dict['samples_seen']={seen!r}: must be an integer in [0, {len(self)}]")
        self.set_epoch(state.get("epoch", 0))
        self._resume = (self.epoch, seen)

    def _positions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        clip_of, window = epoch_order(self._windows, self.seed, self.epoch, self.shuffle)
        rank, world = self._rank_world()
        local = rank_positions(len(clip_of), rank, world, self.batch_size)
        start = self._resume[1] if self._resume and self._resume[0] == self.epoch else 0
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = worker_positions(local, start, wid, nw, self.batch_size)
        return clip_of[mine], window[mine], mine, start

    # -- reading -------------------------------------------------------------------------------------
    def _decode(self, clip: list[dict], upto: int, out: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """Decode the first ``upto`` frames of every camera of ``clip`` into ``out`` (``[cams, >= upto, H, W,
        3]`` uint8; allocated when None) and read its labels; returns ``(out[:, :upto], labels)``."""
        if self._reader is None or self._reader_pid != os.getpid():
            # a forked DataLoader worker inherits the parent's handles, whose file offsets are shared
            self._reader, self._reader_pid = ShardReader(), os.getpid()
        h, w = self.size or (clip[0]["height"], clip[0]["width"])
        if out is None:
            out = torch.empty((len(clip), upto, h, w, 3), dtype=torch.uint8)
        frames = out[:, :upto]
        for cam, r in enumerate(clip):
            url = join(self.root, r["shard"])
            data = self._reader.read(url, r["data_offset"], r["data_bytes"], r["member"])
            try:
                # straight into the caller's tensor: no per-clip allocation, no copy afterwards
                n = len(decode_rgb(data, max_frames=upto, size=self.size, out=frames[cam].numpy()))
            except ValueError as e:
                raise ValueError(f"clip {r['clip_id']} camera {r['camera']!r} in {r['shard']}: {e} "
                                 "(cameras of different sizes need size=(H, W))") from e
            if n < upto:
                raise ValueError(f"clip {r['clip_id']}: decodes to {n} frames, index says >= {upto}")
        labels = {}
        r = clip[0]
        if r["labels_member"]:
            from safetensors.numpy import load

            blob = self._reader.read(
                join(self.root, r["shard"]), r["labels_offset"], r["labels_bytes"], r["labels_member"]
            )
            labels = load(blob)
        return frames, labels

    def _needed_frames(self, clip_of: list[int], window: list[int], i: int) -> int:
        """Frames to decode for the clip at position ``i``: up to the last window this worker takes from
        it (a clip's windows are consecutive in the order)."""
        last = i
        while last + 1 < len(clip_of) and clip_of[last + 1] == clip_of[i]:
            last += 1
        return (max(window[i : last + 1]) + 1) * self.frames_per_clip

    def _sample_rest(self, ci: int, w: int, labels: dict[str, np.ndarray]) -> dict:
        """A sample without its frames: labels of window ``w`` of clip ``ci`` and where it comes from."""
        a, b = w * self.frames_per_clip, (w + 1) * self.frames_per_clip
        first = self._clips[ci][0]
        return {
            "labels": {k: torch.from_numpy(np.ascontiguousarray(v[a:b])) for k, v in labels.items()},
            "clip_id": first["clip_id"],
            "source": first["source"],
            "start_frame": int(first["start_frame"]) + a,
        }

    def __iter__(self):
        clip_of, window, _, start = self._positions()
        self._seen = start
        cache: dict[int, tuple[torch.Tensor, dict]] = {}
        t = self.frames_per_clip
        clip_of, window = clip_of.tolist(), window.tolist()
        for i, (ci, w) in enumerate(zip(clip_of, window, strict=True)):
            if ci not in cache:
                cache.clear()  # a clip's windows are consecutive: one decoded clip is enough
                cache[ci] = self._decode(self._clips[ci], self._needed_frames(clip_of, window, i))
            frames, labels = cache[ci]
            a, b = w * t, (w + 1) * t
            self._seen += 1
            yield {
                "frames": frames[:, a:b] if frames.shape[1] == b - a else frames[:, a:b].contiguous(),
                **self._sample_rest(ci, w, labels),
            }
        if self._resume and self._resume[0] == self.epoch:
            self._resume = None  # the resume point applies to one pass only

    def _iter_batches(self, drop_last: bool = False, buffers: BatchBuffers | None = None):
        """Yield this worker's batches, already collated (same batches, same order and same values as
        ``collate_clips`` over ``__iter__`` cut in runs of ``batch_size``, except that ``labels`` and
        ``start_frame`` are numpy arrays; ``ClipLoader`` makes them tensors), decoding every clip
        straight into its slot of the batch tensor ``[B, cams, T, H, W, 3]``.

        Why: the per-sample path writes each frame twice into freshly allocated memory (the sample
        tensor, then the batch), and first-touch page faults on fresh memory cost as much as the copy.
        Here a clip with one window in the batch is decoded into the batch itself; a clip with several
        windows is decoded once into a scratch buffer that is reused for the whole pass, and its windows
        are copied out. In a DataLoader worker the batch tensor is allocated in shared memory, as
        ``default_collate`` does, so it reaches the main process without another copy.
        """
        clip_of, window, _, start = self._positions()
        self._seen = start
        clip_of, window = clip_of.tolist(), window.tolist()
        t, bs, cams = self.frames_per_clip, self.batch_size, len(self.cameras)
        buffers = buffers or BatchBuffers()
        scratch: torch.Tensor | None = None
        cached: tuple[int, torch.Tensor, dict] | None = None  # (clip, frames, labels) held in scratch
        for s in range(0, len(clip_of), bs):
            rows = range(s, min(s + bs, len(clip_of)))
            if drop_last and len(rows) < bs:
                break
            h, w = self.size or (self._clips[clip_of[s]][0]["height"], self._clips[clip_of[s]][0]["width"])
            batch, stamp = buffers.take((len(rows), cams, t, h, w, 3))
            rest = []
            for j, i in enumerate(rows):
                ci, win = clip_of[i], window[i]
                need = self._needed_frames(clip_of, window, i) if cached is None or cached[0] != ci else 0
                if need == t and win == 0:  # the clip's only window here: decode into the batch
                    _, labels = self._decode(self._clips[ci], t, out=batch[j])
                    cached = None
                else:
                    if need:
                        shape = (cams, need, h, w, 3)
                        if scratch is None or scratch.numel() < int(np.prod(shape)):
                            scratch = torch.empty(int(np.prod(shape)), dtype=torch.uint8)
                        cached = (ci, *self._decode(self._clips[ci], need, out=scratch[: int(
                            np.prod(shape))].view(shape)))
                    frames, labels = cached[1], cached[2]
                    if frames.shape[2:4] != (h, w):
                        raise ValueError(f"clip {self._clips[ci][0]['clip_id']}: frames are "
                                         f"{tuple(frames.shape[2:4])}, the batch {(h, w)} (cameras of "
                                         "different sizes need size=(H, W))")
                    batch[j].copy_(frames[:, win * t : (win + 1) * t])
                rest.append(self._sample_rest(ci, win, labels))
            self._seen += len(rows)
            yield _batch_of(batch, rest, stamp)
        if self._resume and self._resume[0] == self.epoch:
            self._resume = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_reader"] = None  # open file handles do not cross into DataLoader workers
        return state
