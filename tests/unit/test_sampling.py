"""Sampling on the epoch grid: shards of one camera split its frames without overlap or gaps, and a
worker that takes over mid-run continues the same sequence numbers."""

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camerafleet.api.manifest import parse_manifest
from camerafleet.producer import ShardKey, plan_shards
from camerafleet.sources import CameraGrids, Grid, Sampler, SourceError, camera_grid, redact, slot_phase_s
from camerafleet.sources.opening import open_source
from camerafleet.sources.synthetic import SyntheticSource


def sample_all(sampler: Sampler, capture_fps: float, seconds: float) -> list[int]:
    seqs = []
    for i in range(int(seconds * capture_fps)):
        seq = sampler.accept(sampler.grid.start_s + i / capture_fps)
        if seq is not None:
            seqs.append(seq)
    return seqs


def test_downsamples_to_inference_fps():
    assert sample_all(Sampler(Grid(100.0, 5)), capture_fps=30, seconds=2) == list(range(10))


def test_shards_partition_the_slots():
    shards = [sample_all(Sampler(Grid(0.0, 5), shard=k, shards=3), capture_fps=30, seconds=4) for k in range(3)]
    together = sorted(s for shard in shards for s in shard)
    assert together == list(range(20))
    assert all(s % 3 == k for k, shard in enumerate(shards) for s in shard)


def test_next_due_is_the_next_owned_slot():
    s = Sampler(Grid(10.0, 4), shard=1, shards=2)
    assert s.next_due() == pytest.approx(10.25)
    s.accept(10.25)
    assert s.next_due() == pytest.approx(10.75)


def test_slow_source_skips_slots_and_counts_them():
    s = Sampler(Grid(0.0, 10))
    assert [s.accept(t) for t in (0.0, 0.5, 0.55, 1.0)] == [0, 5, None, 10]
    assert s.skipped_slots == 8


def test_takeover_continues_sequence():
    first = Sampler(Grid(0.0, 5))
    assert sample_all(first, 30, 1)[-1] == 4
    second = Sampler(Grid(0.0, 5))
    assert second.accept(1.0) == 5


def test_synthetic_source_paces_and_renders():
    epoch = time.time()
    src = SyntheticSource("synthetic:320x180@20", seed=1, epoch_s=epoch)
    t, frame = src.read_due(epoch + 0.1)
    assert frame.shape == (180, 320, 3) and frame.dtype == np.uint8
    assert t >= epoch + 0.1 - 1e-3


def test_unopenable_sources_name_the_problem(tmp_path):
    with pytest.raises(SourceError, match="cannot open video file"):
        open_source(str(tmp_path / "missing.mp4"), epoch_s=0, inference_fps=5, stall_timeout_s=5, max_frame_age_s=5)
    with pytest.raises(SourceError, match="synthetic"):
        open_source("synthetic:huge", epoch_s=0, inference_fps=5, stall_timeout_s=5, max_frame_age_s=5)


def test_credentials_are_redacted():
    assert redact("rtsp://admin:hunter2@10.0.0.5:554/live") == "rtsp://***@10.0.0.5:554/live"
    assert redact("rtsp://cam/live") == "rtsp://cam/live"


def test_plan_spreads_shards_round_robin():
    cams = [{"id": str(i), "source": "synthetic:", "producerShards": 2 if i == 1 else 1} for i in range(1, 5)]
    cams.append({"id": "off", "source": "synthetic:", "enabled": False})
    fleet = parse_manifest(
        {
            "apiVersion": "camerafleet.io/v1alpha1",
            "kind": "CameraFleet",
            "metadata": {"name": "p"},
            "spec": {"cameras": cams, "models": [{"name": "h", "type": "camera-health"}]},
        }
    )
    plan = plan_shards(fleet.spec, 2)
    keys = [[str(s.key) for s in actor] for actor in plan]
    assert keys == [["1#0/2", "2#0/1", "4#0/1"], ["1#1/2", "3#0/1"]]
    assert plan_shards(fleet.spec, 0) == []


@pytest.mark.parametrize("source_fps", [20, 25, 29.97, 30])
@pytest.mark.parametrize("inference_fps", [3.3, 5, 7, 30])
def test_due_frames_are_always_accepted_at_real_epochs(source_fps, inference_fps):
    """Regression: with epochs near 1.8e9 s, float error once made a due frame round to the previous
    slot, so the producer spun forever on the same slot."""
    epoch = time.time() - 3600 + 0.597  # far enough in the past that nothing sleeps
    src = SyntheticSource(f"synthetic:64x36@{source_fps}", seed=0, epoch_s=epoch)
    sampler = Sampler(Grid(epoch, inference_fps))
    accepted = []
    for _ in range(300):
        t, _frame = src.read_due(sampler.next_due())
        seq = sampler.accept(t)
        if seq is not None:
            accepted.append(seq)
    assert len(accepted) >= 300 * min(1.0, source_fps / inference_fps) - 1
    assert accepted == sorted(set(accepted))


def test_cameras_sample_at_stable_phases_spread_over_the_period():
    phases = [slot_phase_s(str(i), 0.05) for i in range(1, 151)]
    assert all(0 <= p < 20 for p in phases), "a phase is a fraction of one 20 s period"
    assert slot_phase_s("7", 0.05) == phases[6], "the phase of a camera never changes"
    # 150 cameras at one fps do not capture at one instant: no 2-second bin of the period holds more than a fifth.
    bins = [sum(1 for p in phases if lo <= p < lo + 2) for lo in range(0, 20, 2)]
    assert max(bins) <= 30, bins


def test_slots_given_up_while_a_source_is_down_are_counted_once_and_per_shard():
    sampler = Sampler(Grid(100.0, 2), shard=1, shards=2)  # owns odd slots, one every second
    sampler.last_slot = 0
    assert sampler.miss_until(104.9) == 5  # slots 1, 3, 5, 7, 9 (at 104.5) passed while down
    assert sampler.miss_until(104.9) == 0  # asking again gives up nothing more
    assert sampler.accept(106.6) == 13 and sampler.skipped_slots == 1  # slot 11 passed after it was back: skipped


def test_no_sample_before_the_grid_starts():
    # A camera's grid starts at the run's epoch plus its phase (up to a period): a worker that starts
    # earlier must not take slot -1 (a frame message with a negative sequence number is invalid).
    s = Sampler(Grid(100.0, 0.1), last_slot=-1)
    assert s.accept(95.0) is None
    assert s.next_due() == 100.0
    assert s.accept(100.0) == 0


def test_a_shard_key_is_a_typed_tuple_that_reads_as_camera_shard_of_shards():
    key = ShardKey("lobby-2", 1, 3)
    assert (key.camera_id, key.number, key.shards) == ("lobby-2", 1, 3)
    assert str(key) == "lobby-2#1/3"
    assert sorted([ShardKey("b", 0, 1), key]) == [ShardKey("b", 0, 1), key]


def test_the_grid_rounds_instants_to_slots_exactly_far_from_the_epoch():
    grid = camera_grid(1.8e9, "7", 5)
    assert grid.start_s == 1.8e9 + slot_phase_s("7", 5)
    for slot in (0, 1, 17, 10**6):
        t = grid.time_of(slot)
        assert grid.slot_of(t) == slot and grid.first_at_or_after(t) == slot, slot
        assert grid.first_at_or_after(t + 1e-3) == slot + 1 and grid.slot_of(t - 1e-3) == slot - 1


def test_a_lower_rate_goes_on_from_the_next_slot_instead_of_reusing_sequence_numbers():
    # An hour in at 5 fps a camera is near slot 18,000; numbered from the epoch at 1 fps its next slot would be
    # 3,600, a number it used 48 minutes ago.
    grids = CameraGrids(epoch_s=1.8e9)
    old = grids.follow([("7", 5.0)], 1.8e9)["7"]
    t = 1.8e9 + 3600.0
    new = grids.follow([("7", 1.0)], t)["7"]
    assert new.fps == 1.0 and new.first == old.first_at_or_after(t) > 17_999
    assert new.time_of(new.first) == pytest.approx(old.time_of(new.first)), (
        "the first slot at the new rate is at the old one's next instant"
    )
    assert grids.follow([("7", 1.0)], t + 60)["7"] is new, "a rate that did not change keeps its grid"
    assert Sampler(new).accept(new.time_of(new.first) - 0.5) is None, "no slot before the grid's first"


@settings(max_examples=200, deadline=None)
@given(
    rates=st.lists(st.sampled_from([0.05, 0.2, 1.0, 2.0, 5.0, 7.5, 30.0]), min_size=2, max_size=6),
    gaps=st.lists(st.floats(min_value=0.01, max_value=400.0), min_size=6, max_size=6),
)
def test_sequence_numbers_rise_across_any_rate_changes(rates, gaps):
    """Each change hands over like the producers do: the old worker samples up to the old grid's first slot at or after
    the handover time, the new one from the new grid's first slot: every frame keeps a number of its own, in time order."""
    grids = CameraGrids(epoch_s=1.8e9)
    t = 1.8e9
    grid = grids.follow([("cam", rates[0])], t)["cam"]
    sampler = Sampler(grid, last_slot=grid.first - 1)
    frames: list[tuple[int, float]] = []
    for fps, gap in zip(rates[1:], gaps, strict=False):
        t += gap
        new = grids.follow([("cam", fps)], t)["cam"]
        end = max(sampler.grid.first_at_or_after(t), sampler.grid.first)
        while sampler.next_slot() < end:
            slot = sampler.accept(sampler.next_due())
            frames.append((slot, sampler.grid.time_of(slot)))
        sampler = Sampler(new, last_slot=max(new.first_at_or_after(t), new.first) - 1)
    for _ in range(3):
        slot = sampler.accept(sampler.next_due())
        frames.append((slot, sampler.grid.time_of(slot)))
    seqs = [seq for seq, _ in frames]
    assert seqs == sorted(set(seqs)), "sequence numbers are unique and rising"
    times = [at for _, at in frames]
    assert times == sorted(times), "in capture order"


def test_a_starting_worker_takes_the_slot_in_progress_only_if_it_just_began():
    # Producers start ~15 s after the run's epoch; a file camera at 0.1 fps would otherwise play the slot that began
    # up to 10 s before, a first frame born 10 s old (57 of 150 dropped stale in the benchmark).
    slow = Grid(100.0, 0.1)
    assert slow.fresh_start(115.0) == 2, "slot 1 began 5 s before: the next slot, at 120 s"
    assert slow.fresh_start(110.3) == 1, "slot 1 began 0.3 s before: still fresh"
    fast = Grid(100.0, 5)
    assert fast.fresh_start(101.15) == 5, "at 5 fps the slot in progress began 0.15 s before: taken"
    assert Grid(100.0, 0.1).fresh_start(95.0) == 0, "before the grid: its first slot"
    assert Grid(80.0, 1.0, first=30).fresh_start(105.0) == 30, "never before a continued grid's first slot"
