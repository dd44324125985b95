import pytest
import torch
from torch.utils.data import DataLoader

from opendojo.data import ClipDataset, ClipLoader, query
from opendojo.data.labels import MAX_BOXES, OCCUPANCY_GRID, TRAJECTORY_STEPS


def _order(ds, workers, batch_size):
    out = []
    for b in DataLoader(ds, batch_size=batch_size, num_workers=workers):
        out += list(zip(b["clip_id"], b["start_frame"].tolist(), strict=True))
    return out


def test_sample_has_documented_shapes_and_dtypes(dataset):
    ds = ClipDataset(dataset, frames_per_clip=8, seed=0)
    s = next(iter(ds))
    assert s["frames"].shape == (2, 8, 64, 64, 3) and s["frames"].dtype == torch.uint8
    lab = s["labels"]
    assert lab["speed"].shape == (8,) and lab["speed"].dtype == torch.float32
    assert lab["steering"].shape == (8,)
    assert lab["trajectory"].shape == (8, TRAJECTORY_STEPS, 2)
    assert (
        lab["occupancy"].shape == (8, OCCUPANCY_GRID, OCCUPANCY_GRID)
        and lab["occupancy"].dtype == torch.uint8
    )
    assert lab["boxes"].shape == (8, MAX_BOXES, 5) and lab["box_mask"].dtype == torch.bool
    assert isinstance(s["clip_id"], str) and s["source"].endswith(".mp4")
    assert s["start_frame"] % 8 == 0
    assert ds.cameras == ["front", "left"]


def test_batches_collate_with_default_collate(dataset):
    b = next(iter(DataLoader(ClipDataset(dataset, frames_per_clip=16, batch_size=3), batch_size=3)))
    assert b["frames"].shape == (3, 2, 16, 64, 64, 3)
    assert b["labels"]["trajectory"].shape == (3, 16, TRAJECTORY_STEPS, 2)
    assert isinstance(b["clip_id"], list) and len(b["clip_id"]) == 3


def test_order_is_same_for_any_worker_count(dataset):
    ds = ClipDataset(dataset, frames_per_clip=8, seed=3, batch_size=2)
    a = _order(ds, 0, 2)
    assert len(a) == 16 and len(set(a)) == 16
    assert _order(ds, 1, 2) == a
    assert _order(ds, 2, 2) == a


def test_order_is_a_function_of_seed_and_epoch(dataset):
    ds = ClipDataset(dataset, frames_per_clip=16, seed=3)
    first = _order(ds, 0, 1)
    ds.set_epoch(1)
    second = _order(ds, 0, 1)
    ds.set_epoch(0)
    assert _order(ds, 0, 1) == first and second != first and sorted(second) == sorted(first)
    assert _order(ClipDataset(dataset, frames_per_clip=16, seed=4), 0, 1) != first


def test_ranks_get_disjoint_equal_parts_that_union_to_the_global_batches(dataset):
    one = _order(ClipDataset(dataset, frames_per_clip=8, seed=5, batch_size=4, rank=0, world_size=1), 0, 4)
    parts = [
        _order(ClipDataset(dataset, frames_per_clip=8, seed=5, batch_size=2, rank=r, world_size=2), 0, 2)
        for r in range(2)
    ]
    assert len(parts[0]) == len(parts[1]) == 8 and not set(parts[0]) & set(parts[1])
    for g in range(4):  # global batch g: the same 4 samples with 1 rank x 4 or 2 ranks x 2
        assert set(one[4 * g : 4 * g + 4]) == set(parts[0][2 * g : 2 * g + 2] + parts[1][2 * g : 2 * g + 2])


def test_resume_mid_epoch_with_workers_is_exact(dataset):
    full = _order(ClipDataset(dataset, frames_per_clip=8, seed=9, batch_size=2), 0, 2)
    loader = ClipLoader(ClipDataset(dataset, frames_per_clip=8, seed=9), batch_size=2, num_workers=2)
    seen = []
    for i, b in enumerate(loader):
        seen += list(zip(b["clip_id"], b["start_frame"].tolist(), strict=True))
        if i == 2:
            state = loader.state_dict()
            break
    assert state["samples_seen"] == 6
    fresh = ClipLoader(ClipDataset(dataset, frames_per_clip=8, seed=9), batch_size=2, num_workers=1)
    fresh.load_state_dict(state)
    rest = [x for b in fresh for x in zip(b["clip_id"], b["start_frame"].tolist(), strict=True)]
    assert seen + rest == full
    again = [x for b in fresh for x in zip(b["clip_id"], b["start_frame"].tolist(), strict=True)]
    assert again == full  # the resume point applied to one pass only


def test_resumed_frames_are_bit_identical(dataset):
    ds = ClipDataset(dataset, frames_per_clip=8, seed=2)
    samples = list(ds)
    ds2 = ClipDataset(dataset, frames_per_clip=8, seed=2)
    ds2.load_state_dict(ds.state_dict(samples_seen=5))
    tail = list(ds2)
    assert len(tail) == len(samples) - 5
    for x, y in zip(samples[5:], tail, strict=True):
        assert torch.equal(x["frames"], y["frames"]) and torch.equal(
            x["labels"]["speed"], y["labels"]["speed"]
        )


def test_train_and_eval_splits_are_disjoint_by_source(dataset):
    train = ClipDataset(dataset, split="train", eval_fraction=0.25)
    ev = ClipDataset(dataset, split="eval", eval_fraction=0.25)
    src_t = {s["source"] for s in train}
    src_e = {s["source"] for s in ev}
    assert src_t and src_e and not src_t & src_e and len(src_t | src_e) == 4


def test_subset_manifest_streams_only_selected_clips(dataset, tmp_path):
    sub = tmp_path / "fast.parquet"
    table = query(dataset, "speed_mean > 0 AND camera = 'front' AND start_frame = 0", out=sub)
    ds = ClipDataset(sub)
    got = list(ds)
    assert ds.cameras == ["front"] and len(got) == table.num_rows == 4
    assert all(s["start_frame"] == 0 and s["frames"].shape[0] == 1 for s in got)


def test_resize_while_decoding(dataset):
    s = next(iter(ClipDataset(dataset, frames_per_clip=4, size=(32, 48))))
    assert s["frames"].shape == (2, 4, 32, 48, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frames_per_clip": 0}, "frames_per_clip: got 0"),
        ({"frames_per_clip": 17}, "frames_per_clip=17"),
        ({"cameras": ["roof"]}, "cameras ['roof']"),
        ({"cameras": "front"}, "cameras='front'"),
        ({"split": "test"}, "split: got 'test'"),
        ({"split": "eval", "eval_fraction": 1.5}, "eval_fraction=1.5"),
        ({"size": (63, 64)}, "size=(63, 64)"),
        ({"batch_size": 0}, "batch_size: got 0"),
        ({"rank": 2, "world_size": 2}, "rank: got 2; allowed: an integer in 0..1"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(dataset, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        ds = ClipDataset(dataset, **kwargs)
        next(iter(ds))


def test_resume_state_from_a_different_order_is_refused(dataset):
    state = ClipDataset(dataset, seed=1).state_dict(samples_seen=2)
    with pytest.raises(ValueError, match="state_dict\\['seed'\\]=1"):
        ClipDataset(dataset, seed=2).load_state_dict(state)


def test_collate_clips_matches_default_collate(dataset):
    from torch.utils.data import default_collate

    from opendojo.data import collate_clips

    samples = list(ClipDataset(dataset, frames_per_clip=8, seed=1))[:3]
    a, b = collate_clips(samples), default_collate(samples)
    assert a.keys() == b.keys() and a["clip_id"] == b["clip_id"]
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["start_frame"], b["start_frame"])
    assert all(torch.equal(a["labels"][k], b["labels"][k]) for k in b["labels"])


def test_clip_loader_refuses_foreign_datasets_and_its_own_shuffle(dataset):
    with pytest.raises(TypeError, match="expected a ClipDataset, got list"):
        ClipLoader([1, 2, 3], batch_size=1)
    with pytest.raises(ValueError, match="shuffle=True"):
        ClipLoader(ClipDataset(dataset), batch_size=1, shuffle=True)


def test_bad_resume_position_is_refused(dataset):
    ds = ClipDataset(dataset, frames_per_clip=16)
    with pytest.raises(ValueError, match=r"samples_seen'\]=99: must be an integer in \[0, 8\]"):
        ds.load_state_dict({"epoch": 0, "samples_seen": 99})
    with pytest.raises(ValueError, match="epoch: got -1"):
        ds.set_epoch(-1)


def _same_batches(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x["frames"], y["frames"]) and x["clip_id"] == y["clip_id"] and x["source"] == y["source"]
        and torch.equal(x["start_frame"], y["start_frame"]) and x["labels"].keys() == y["labels"].keys()
        and all(torch.equal(x["labels"][k], y["labels"][k]) for k in x["labels"])
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize(("frames_per_clip", "workers"), [(8, 0), (16, 0), (8, 2), (4, 1)])
def test_batches_built_in_place_equal_collated_samples(dataset, frames_per_clip, workers):
    # frames_per_clip=8 or 4: a clip gives several windows, which may straddle batches (batch 3)
    per_sample = list(DataLoader(ClipDataset(dataset, frames_per_clip=frames_per_clip, seed=1, batch_size=3),
                                 batch_size=3))
    loader = ClipLoader(ClipDataset(dataset, frames_per_clip=frames_per_clip, seed=1), batch_size=3,
                        num_workers=workers)
    in_place = list(loader)
    assert _same_batches(in_place, per_sample)
    assert loader.samples_seen == sum(len(b["clip_id"]) for b in per_sample)
    if workers:
        assert in_place[0]["frames"].is_shared()  # made in the worker's shared memory, not copied


def test_clip_loader_drop_last_length_and_epoch_follow_the_dataset(dataset):
    ds = ClipDataset(dataset, frames_per_clip=8, seed=1)
    loader = ClipLoader(ds, batch_size=3, drop_last=True)
    batches = list(loader)
    assert len(batches) == len(loader) == 16 // 3 and all(len(b["clip_id"]) == 3 for b in batches)
    loader.dataset.set_epoch(2)
    assert ds.epoch == 2 and len(ClipLoader(ds, batch_size=3)) == 6
    assert not _same_batches(list(loader)[:1], batches[:1])  # a new epoch, a new order


def test_clip_loader_refuses_a_bad_batch_size(dataset):
    with pytest.raises(ValueError, match="batch_size: got 0; allowed: an integer ≥ 1"):
        ClipLoader(ClipDataset(dataset), batch_size=0)


@pytest.mark.parametrize("workers", [0, 1])
def test_batches_held_by_the_consumer_are_never_overwritten(dataset, workers):
    # 2-frame windows, batch 1: 64 batches, far more than a worker's reusable slots, all kept alive
    reference = list(DataLoader(ClipDataset(dataset, frames_per_clip=2, seed=4), batch_size=1))
    loader = ClipLoader(ClipDataset(dataset, frames_per_clip=2, seed=4), batch_size=1, num_workers=workers)
    held = list(loader)
    assert len(held) == 64 and _same_batches(held, reference)


def test_batch_memory_is_reused_once_the_consumer_lets_go(dataset):
    loader = ClipLoader(ClipDataset(dataset, frames_per_clip=2, seed=4), batch_size=2)
    reference = list(DataLoader(ClipDataset(dataset, frames_per_clip=2, seed=4, batch_size=2), batch_size=2))
    addresses = set()
    for batch, ref in zip(loader, reference, strict=True):
        assert torch.equal(batch["frames"], ref["frames"])
        addresses.add(batch["frames"].data_ptr())
        del batch  # the loop variable is the only reference: the next batch may reuse its memory
    assert len(addresses) <= 2 < len(reference)


def test_worker_slot_is_released_only_for_the_token_it_was_given():
    from opendojo.data.batchpool import BatchBuffers, ReleaseTracker, new_release_table

    table = new_release_table(1)
    tracker = ReleaseTracker(table)
    frames, stamp = BatchBuffers((0, table)).take((2, 3))
    assert frames.is_shared() and stamp is not None and int(table[0, stamp[1]]) == stamp[2]
    tracker.received(frames, stamp)
    tracker.poll()
    assert int(table[0, stamp[1]]) == stamp[2]  # the consumer still holds the batch
    del frames
    tracker.poll()
    assert int(table[0, stamp[1]]) == 0
    stale = (0, stamp[1], stamp[2])
    table[0, stamp[1]] = 12345  # a newer worker generation now owns the slot
    tracker._free(stale)
    assert int(table[0, stamp[1]]) == 12345
