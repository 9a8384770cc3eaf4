"""Admission at the source (pure parts) and the model replicas' batch queue."""

from __future__ import annotations

import asyncio

import pytest

from camerafleet.admission import AdmissionController, BacklogReading, SlotCredit
from camerafleet.serving.model_deployment import BatchQueue
from camerafleet.sources import Grid, Sampler

PARTS = frozenset({("t", 0)})


def reading(at_s: float, waiting: int, committed: int) -> BacklogReading:
    return BacklogReading(at_s=at_s, waiting=waiting, committed=committed, partitions=PARTS)


def test_share_falls_to_what_the_pipeline_drains_and_rises_again_when_the_backlog_clears():
    c = AdmissionController(offered_fps=40.0, target_wait_s=1.0, min_share=0.05)
    assert c.update(reading(0.0, 0, 0)) == 1.0
    assert c.update(reading(1.0, 50, 10)) == 1.0  # not yet a drain window (2 s): nothing to judge
    # Draining 10 frames/s while 100 wait, 90 more than clear within the target wait: the intake falls to
    # the drain rate minus the excess over two target waits, floored.
    assert c.update(reading(2.0, 100, 20)) == pytest.approx(0.05)
    assert c.drain_fps == pytest.approx(10.0)
    # Backlog well under target (10 frames/s x 1 s): the share grows step by step, never jumps.
    assert c.update(reading(3.0, 2, 30)) == pytest.approx(0.05 * 1.25)
    assert c.update(reading(4.0, 2, 40)) == pytest.approx(0.05 * 1.25**2)


def test_share_settles_at_the_drain_rate_under_a_steady_overload():
    c = AdmissionController(offered_fps=40.0, target_wait_s=2.0, min_share=0.05)
    for t in range(3):
        c.update(reading(float(t), 30, 20 * t))  # 20 frames/s drained, 30 waiting, 40 would clear in time
    assert c.share == pytest.approx((20 + 10 / 4) / 40)  # offered 40: about half is what the pipeline takes
    share = c.update(reading(3.0, 50, 60))  # 50 waiting, 40 clear in time: (20 - 10 / 4) / 40
    assert share == pytest.approx((20 - 10 / 4) / 40)
    share = c.update(reading(4.0, 40, 80))  # at target: intake = drain
    assert share == pytest.approx(20 / 40)


def test_share_never_goes_under_the_floor_even_when_nothing_drains():
    c = AdmissionController(offered_fps=10.0, target_wait_s=1.0, min_share=0.2)
    for t in range(4):
        c.update(reading(float(t), 50 + t, 0))
    assert c.share == pytest.approx(0.2)


def test_a_changed_set_of_partitions_is_not_read_as_a_drain():
    c = AdmissionController(offered_fps=10.0, target_wait_s=1.0, min_share=0.1)
    for t in range(3):
        c.update(reading(float(t), 0, 0))
    c.update(BacklogReading(at_s=3.0, waiting=0, committed=10_000, partitions=frozenset({("t", 0), ("u", 0)})))
    assert c.drain_fps == 0.0  # the last drain measured on the old partitions, not a jump of 10,000
    assert len(c.readings) == 1


@pytest.mark.parametrize("share", [1.0, 0.5, 0.25, 0.1, 1 / 3])
def test_slot_credit_takes_its_share_evenly(share):
    credit = SlotCredit()
    taken = [credit.take(share) for _ in range(300)]
    assert sum(taken) == pytest.approx(300 * share, abs=1.01)
    gaps = [j - i for i, j in zip([k for k, t in enumerate(taken) if t], [k for k, t in enumerate(taken) if t][1:], strict=False)]
    assert max(gaps) - min(gaps) <= 1  # evenly spaced: no burst, no long hole


def test_slot_credit_does_not_bank_a_burst():
    credit = SlotCredit()
    for _ in range(100):
        credit.take(1.0)
    assert [credit.take(0.1) for _ in range(3)].count(True) <= 1


def test_a_shed_slot_is_given_up_without_counting_as_skipped():
    s = Sampler(Grid(0.0, 10.0), shard=1, shards=2, last_slot=2)
    assert s.shed_next() == 1
    assert s.last_slot == 3
    assert s.accept(0.5) == 5  # the shard's next slot after the shed one
    assert s.skipped_slots == 0


def test_batch_queue_answers_each_request_when_its_own_batch_is_done():
    async def scenario() -> None:
        runs: list[list[int]] = []

        def run(frames: list) -> list:
            runs.append(list(frames))
            return [f * 10 for f in frames]

        q = BatchQueue(run, max_frames=4, wait_s=0.05)
        answers = await asyncio.gather(q.submit([1, 2]), q.submit([3, 4]), q.submit([5, 6, 7]), q.submit([8]))
        assert answers == [[10, 20], [30, 40], [50, 60, 70], [80]]
        # Whole requests packed up to 4 frames; a request that would overflow starts the next batch.
        assert runs == [[1, 2, 3, 4], [5, 6, 7, 8]]

    asyncio.run(scenario())


def test_batch_queue_passes_a_model_error_to_every_request_of_the_batch():
    async def scenario() -> None:
        def run(frames: list) -> list:
            raise RuntimeError("model broke")

        q = BatchQueue(run, max_frames=4, wait_s=0.01)
        results = await asyncio.gather(q.submit([1]), q.submit([2]), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        assert await asyncio.wait_for(asyncio.gather(q.submit([3]), return_exceptions=True), timeout=30)  # still serving

    asyncio.run(scenario())
