"""Overload: a model far slower than the cameras. With admission, producers shed slots (counted, spread
evenly over the cameras, the ledger balanced); without it, frames age out, and no processed frame's
latency exceeds maxFrameAgeMs plus its model batch.

The model is CenterFace at a 1920x1088 input on one single-threaded replica: about half a second per
frame on the machines this runs on, against 20 frames/s offered. A machine would need to be some
thirty times faster per core for this not to be a 3x overload; the tests check that it is one, and say
so if not, instead of assuming it.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from camerafleet.stats import merge_outcomes
from tests.fixtures.pipeline import (
    camera_stats,
    health_model,
    read_results,
    run_fleet_for,
    slow_face_model,
    until_processed,
    wait_until,
    write_fleet,
)

pytestmark = pytest.mark.integration

MAX_FRAME_AGE_MS = 3000
# Between the end of a frame's model batch and its result: the replica's answer, the ingress merging the
# models, the consumer's bookkeeping. The benchmark holds this to 100 ms on an idle machine; here other
# tests' servers share two cores, so the test allows a second. It checks that nothing waits past its
# deadline (which would add whole batches or maxFrameAgeMs), not how fast the machine is.
TRANSIT_ALLOWANCE_MS = 1000
# Slots each camera sheds before the run stops: enough to judge the spread over the cameras (a camera's share
# of shed slots differs from the others' by a slot or two per admission change).
SHED_PER_CAMERA = 60


def slow_fleet(tmp_path, name: str, bootstrap: str, admission: dict) -> object:
    cameras = [{"id": str(i), "source": "synthetic:640x360@10", "inferenceFps": 5} for i in range(1, 5)]
    return write_fleet(
        tmp_path / "fleet.yaml",
        name,
        bootstrap,
        cameras=cameras,
        models=[slow_face_model(), health_model()],
        producer={"actors": 1, "cpusPerActor": 0.25, "admission": admission},
        consumer={"actors": 1, "maxBatchFrames": 8, "maxFrameAgeMs": MAX_FRAME_AGE_MS, "cpusPerActor": 0.25},
    )


def test_a_slow_model_makes_producers_shed_evenly_and_the_ledger_balances(tmp_path, kafka_server, ray_cluster):
    manifest = slow_fleet(tmp_path, "admission", kafka_server.bootstrap, {"mode": "backlog", "intervalMs": 250})

    async def shedding(runner) -> None:
        await until_processed(runner, 1)

        def shed_enough() -> bool:
            return min(camera_stats(runner, c.id).shed_slots for c in runner.spec.cameras) >= SHED_PER_CAMERA

        await wait_until(f"{SHED_PER_CAMERA} slots shed by every camera", shed_enough, context=lambda: runner.pools.producer_stats)

    runner, s = asyncio.run(run_fleet_for(manifest, None, shedding))

    shed = {cam: c["missed_by_reason"].get("shed", 0) for cam, c in s["per_camera"].items()}
    assert all(n > 0 for n in shed.values()), f"every camera sheds under overload: {shed}"
    assert min(shed.values()) >= 0.7 * max(shed.values()), f"shedding is spread evenly over the cameras: {shed}"
    assert all(c["processed"] > 0 for c in s["per_camera"].values()), f"no camera is starved: {s['per_camera']}"
    # Shed slots are counted as missed slots with their reason, and nothing is left unexplained.
    assert s["missed_by_reason"].get("unaccounted", 0) == 0, s["missed_by_reason"]
    assert s["ledger_balanced"], s
    # Admission took most of the overload off the pipeline: more slots shed than frames produced.
    assert sum(shed.values()) > s["produced"], (shed, s["produced"])
    assert all(r["outcome"] != "failed" for r in read_results(runner))


def test_no_processed_frame_exceeds_max_age_plus_its_batch_under_a_3x_overload(tmp_path, kafka_server, ray_cluster):
    manifest = slow_fleet(tmp_path, "latencybound", kafka_server.bootstrap, {"mode": "off"})

    async def aging(runner) -> None:
        await until_processed(runner, 2)
        stale: list[int] = []

        async def frames_aged_out() -> bool:
            _, consumers = await runner.gather_stats()
            stale.append(sum(o.dropped.get("stale", 0) for o in merge_outcomes(consumers).values()))
            return stale[-1] >= 10

        await wait_until("10 frames dropped as stale", frames_aged_out, context=lambda: stale[-1:])

    runner, s = asyncio.run(run_fleet_for(manifest, None, aging))

    assert s["ledger_balanced"], s
    assert s["processed"] > 0, s
    assert s["produced"] >= 3 * s["processed"], (
        f"the scenario must be a 3x overload to test the bound: {s['produced']} produced, {s['processed']} processed"
    )
    assert s["dropped_by_reason"].get("stale", 0) > 0, s["dropped_by_reason"]
    over = []
    for r in read_results(runner):
        if r["outcome"] != "processed":
            continue
        batch_ms = max(result["batchMs"] for result in r["models"].values())
        if r["latencyMs"] > MAX_FRAME_AGE_MS + batch_ms + TRANSIT_ALLOWANCE_MS:
            over.append((r["cameraId"], r["seq"], r["latencyMs"], batch_ms))
    assert not over, f"processed frames past maxFrameAgeMs {MAX_FRAME_AGE_MS} + their batch + {TRANSIT_ALLOWANCE_MS} ms: {over[:10]}"
    assert Counter(r["outcome"] for r in read_results(runner))["processed"] == s["processed"]
