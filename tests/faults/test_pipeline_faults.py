"""Fault injection on the running pipeline, against the real servers (issue #6, "nothing lost").

Why this file exists: the happy-path tests show frames flow; these show what happens when parts of the
pipeline die while frames are in the air, which is what a fleet meets in production. Each test kills or
stops something for real — a consumer's, a producer's or a model replica's worker process with SIGKILL,
the Kafka broker or the object store stopped and started again — and then checks the run's ledger: after
draining, per camera `produced = processed + dropped + failed`, every frame that did not make it carries
a reason, repeats are counted as duplicates, and camera slots no frame came from are named with theirs.
Each test adds a row to the fault report (`out/faults/report.md`), written whether it passes or not.

Tests that stop a server use their own broker or object store, so the session's shared ones (used by
every other test) are never disturbed. The slow ones run in `make test-faults`, not in `make test`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from typing import Any

import pytest
import ray

from camerafleet_dev.devservers.kafka import KafkaServer
from camerafleet_dev.devservers.minio import MinioServer
from tests.fixtures.pipeline import EVENT_TIMEOUT_S, read_results, run_fleet_for, wait_until, write_fleet, yolo_model

pytestmark = [pytest.mark.integration, pytest.mark.faults]

CAMERAS = [{"id": str(i), "source": "synthetic:640x360@20", "inferenceFps": 5} for i in (1, 2)]
PATIENT_CONSUMERS = {"actors": 2, "maxFrameAgeMs": 120_000, "cpusPerActor": 0.25}  # a fault must not turn into stale drops
ONE_PRODUCER = {"actors": 1, "cpusPerActor": 0.25}
# A consumer holds at most maxInFlightBatches x maxBatchFrames frames it has not committed (defaults 4 x 16).
CONSUMER_IN_FLIGHT_BOUND = 4 * 16


# -- helpers ---------------------------------------------------------------------------------------------


async def pid_of(actor) -> int:
    return await actor.__ray_call__.remote(lambda self: os.getpid())


async def sigkill(actor) -> int:
    """SIGKILL the worker process of an actor; returns its pid."""
    pid = await pid_of(actor)
    os.kill(pid, signal.SIGKILL)
    return pid


async def back_with_new_pid(actor, old_pid: int, timeout_s: float = EVENT_TIMEOUT_S) -> tuple[int, float]:
    """Wait until Ray has restarted the actor in a new process; (new pid, seconds it took)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            pid = await asyncio.wait_for(pid_of(actor), timeout=5)
            if pid != old_pid:
                return pid, time.monotonic() - t0
        except Exception:
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"the actor (pid {old_pid}) did not come back within {timeout_s} s")


async def results_at_least(runner, n: int) -> None:
    await wait_until(f"{n} results", lambda: len(read_results(runner)) >= n)


def replicas_of(app: str, deployment: str) -> list[str]:
    """Names of the live Serve replica actors of one deployment."""
    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == "serve" and a["name"].startswith("SERVE_REPLICA::") and f"{app}#{deployment}#" in a["name"]
    ]


def ledger_line(s: dict[str, Any]) -> str:
    cams = "; ".join(
        f"camera {cam}: produced {c['produced']} = processed {c['processed']} + dropped {c['dropped']} + failed {c['failed']} + in flight {c['in_flight']}"
        for cam, c in s["per_camera"].items()
    )
    return f"{cams}; duplicates {s['duplicates']}" + ("" if s["ledger_balanced"] else f"; NO OUTCOME: {no_outcome(s)}")


def no_outcome(s: dict[str, Any]) -> dict[str, list[tuple[int, int]]]:
    """(partition, offset) of the announcements of each camera that have no outcome in the results log."""
    import orjson

    answered: set[tuple[str, int, int]] = set()
    with open(s["results_from"], "rb") as f:
        for line in f:
            r = orjson.loads(line)
            if "offset" in r:
                answered.add((r["topic"], r["partition"], r["offset"]))
    out = {}
    for cam, info in (s.get("kafka_offsets") or {}).items():
        missing = [
            (int(p), o) for p, (lo, hi) in info["offsets"].items() for o in range(lo, hi) if (info["topic"], int(p), o) not in answered
        ]
        if missing:
            out[cam] = missing[:20]
    return out


def processed_after(runner, capture_ms: int) -> list[dict[str, Any]]:
    """Processed results of frames captured after `capture_ms` (epoch ms)."""
    return [r for r in read_results(runner) if r["outcome"] == "processed" and r.get("captureTsMs", 0) > capture_ms]


def seqs_by_camera(runner) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in read_results(runner):
        if r.get("epochMs") == runner.epoch_ms and "seq" in r:
            out.setdefault(r["cameraId"], []).append(r["seq"])
    return out


def reasons(s: dict[str, Any]) -> str:
    parts = [
        f"failed {s['failed_by_reason']}" if s["failed_by_reason"] else "",
        f"dropped {s['dropped_by_reason']}" if s["dropped_by_reason"] else "",
    ]
    return ", ".join(p for p in parts if p) or "no failed or dropped frames"


# -- tests -----------------------------------------------------------------------------------------------


def test_consumer_killed_mid_batch_loses_nothing(tmp_path, kafka_server, ray_cluster, fault_report):
    row = fault_report.row(
        "consumer actor's worker process SIGKILLed mid-stream (2 consumers, 2 cameras at 5 fps)",
        "Ray restarts the actor, it rejoins the group and resumes from committed offsets; no frame lost; "
        f"duplicates at most the frames it had not committed (<= {CONSUMER_IN_FLIGHT_BOUND}), counted",
    )
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "fault-consumer",
        kafka_server.bootstrap,
        cameras=CAMERAS,
        models=[yolo_model()],
        producer=ONE_PRODUCER,
        consumer=PATIENT_CONSUMERS,
    )
    seen: dict[str, Any] = {}

    async def kill_consumer(runner):
        await results_at_least(runner, 20)
        victim = runner.pools.consumers[0]
        before = (await victim.stats.remote()).batches
        seen["pid"] = await sigkill(victim)
        seen["batches_before"] = before
        seen["new_pid"], seen["restart_s"] = await back_with_new_pid(victim, seen["pid"])
        await results_at_least(runner, len(read_results(runner)) + 20)  # frames flow on after the restart

    _runner, s = asyncio.run(run_fleet_for(manifest, None, during=kill_consumer))

    fault_report.ledger(row, s)
    row.happened = (
        f"consumer pid {seen.get('pid')} killed after {seen.get('batches_before')} batches; back as pid {seen.get('new_pid')} "
        f"after {seen.get('restart_s', float('nan')):.1f} s. {ledger_line(s)}; {reasons(s)}"
    )
    assert seen.get("new_pid"), "the consumer actor did not come back"
    assert s["ledger_balanced"], s
    assert s["failed"] == 0 and s["dropped"] == 0, reasons(s)
    assert s["processed"] == s["produced"] > 0
    assert s["duplicates"] <= CONSUMER_IN_FLIGHT_BOUND, s["duplicates"]
    assert not s["missed_by_reason"].get("unaccounted"), s["missed_by_reason"]


@pytest.mark.slow
def test_model_replica_killed_loses_nothing(tmp_path, kafka_server, ray_cluster, fault_report):
    row = fault_report.row(
        "Serve model replica's worker process SIGKILLed while frames are being inferred (1 replica)",
        "Serve replaces the replica; the ingress re-sends the frames the dead replica held; no frame lost, none failed",
    )
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "fault-replica",
        kafka_server.bootstrap,
        cameras=CAMERAS,
        models=[yolo_model()],
        producer=ONE_PRODUCER,
        consumer=PATIENT_CONSUMERS,
    )
    seen: dict[str, Any] = {}

    async def kill_replica(runner):
        await results_at_least(runner, 20)
        [name] = replicas_of("fault-replica", "model-objects")
        replica = ray.get_actor(name, namespace="serve")
        seen["pid"] = await sigkill(replica)
        seen["results_at_kill"] = len(read_results(runner))
        seen["replaced_s"] = await wait_until(
            "a new model-objects replica", lambda: [n for n in replicas_of("fault-replica", "model-objects") if n != name], interval_s=0.5
        )
        await results_at_least(runner, seen["results_at_kill"] + 20)  # frames flow through the new replica

    runner, s = asyncio.run(run_fleet_for(manifest, None, during=kill_replica))

    fault_report.ledger(row, s)
    row.happened = (
        f"replica pid {seen.get('pid')} killed after {seen.get('results_at_kill')} results; a new replica after "
        f"{seen.get('replaced_s', float('nan')):.1f} s. {ledger_line(s)}; {reasons(s)}"
    )
    assert "replaced_s" in seen, "Serve did not start a new replica"
    assert s["ledger_balanced"], s
    assert s["failed"] == 0 and s["dropped"] == 0, reasons(s)
    assert s["processed"] == s["produced"] > 0
    late = [q for q in seqs_by_camera(runner)["1"] if q > 0]
    assert late, "no frame was processed after the replica was replaced"


@pytest.mark.slow
def test_producer_killed_loses_nothing_and_reports_the_missed_slots(tmp_path, kafka_server, ray_cluster, fault_report):
    row = fault_report.row(
        "producer actor's worker process SIGKILLed (1 producer, 2 cameras at 5 fps)",
        "Ray restarts the actor and the runner gives it its cameras again; every frame that reached Kafka gets an "
        "outcome (ledger from Kafka offsets, not the dead actor's counters); the slots no frame came from while it "
        "was down are reported as missed with reason producer_restart",
    )
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "fault-producer",
        kafka_server.bootstrap,
        cameras=CAMERAS,
        models=[yolo_model()],
        producer=ONE_PRODUCER,
        consumer=PATIENT_CONSUMERS,
    )
    seen: dict[str, Any] = {}

    async def kill_producer(runner):
        await results_at_least(runner, 20)
        victim = runner.pools.producers[0]
        seen["sampled_before"] = sum(c.produced for c in (await victim.stats.remote()).cameras.values())
        seen["pid"] = await sigkill(victim)
        seen["new_pid"], seen["restart_s"] = await back_with_new_pid(victim, seen["pid"])

        async def sampling_again() -> bool:
            stats = await victim.stats.remote()
            seen["restarted_flag"] = stats.restarted
            return bool(stats.cameras) and all(c.produced > 0 for c in stats.cameras.values())

        seen["resumed_s"] = seen["restart_s"] + await wait_until("the restarted producer sampling every camera", sampling_again)
        await results_at_least(runner, len(read_results(runner)) + 20)  # its frames reach the results

    _runner, s = asyncio.run(run_fleet_for(manifest, None, during=kill_producer))

    fault_report.ledger(row, s)
    missed = {cam: c["missed_by_reason"] for cam, c in s["per_camera"].items()}
    row.happened = (
        f"producer pid {seen.get('pid')} killed after sampling {seen.get('sampled_before')} frames; back as pid {seen.get('new_pid')} "
        f"after {seen.get('restart_s', float('nan')):.1f} s, sampling again after {seen.get('resumed_s', float('nan')):.1f} s. "
        f"{ledger_line(s)}; {reasons(s)}; missed slots {missed}"
    )
    assert seen.get("resumed_s"), "the restarted producer did not sample again"
    assert seen.get("restarted_flag"), "the restarted producer does not know it was restarted"
    assert s["produced_from"] == "kafka_offsets"
    assert s["ledger_balanced"], s
    assert s["failed"] == 0 and s["dropped"] == 0, reasons(s)
    assert s["processed"] == s["produced"] > 0
    assert s["produced"] > seen["sampled_before"], "frames announced before the kill are missing from the ledger"
    for cam, c in s["per_camera"].items():
        assert c["producer_restarts"] == 1, c
        assert c["missed_by_reason"].get("producer_restart", 0) > 0, f"camera {cam}: the restart's gap is not reported: {c}"
        assert not c["missed_by_reason"].get("unaccounted"), c
    assert s["duplicates"] == 0


@pytest.fixture
def own_kafka(tmp_path):
    """A broker of this test's own: stopping it must not disturb the session's shared one."""
    server = KafkaServer(tmp_path / "kafka")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_kafka_down_20s_producers_buffer_within_bound_and_count_drops(tmp_path, own_kafka, ray_cluster, fault_report):
    bound = 40
    row = fault_report.row(
        f"Kafka broker stopped for 20 s, then started again (2 cameras at 5 fps, producer.maxBufferedFrames {bound})",
        "producers retry with backoff and hold up to the bound per camera, count frames beyond it as dropped "
        "(kafka_unavailable); consumers resume from committed offsets; ledger balances, nothing silently lost",
    )
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "fault-kafka",
        own_kafka.bootstrap,
        cameras=CAMERAS,
        models=[yolo_model()],
        producer={**ONE_PRODUCER, "maxBufferedFrames": bound},
        consumer=PATIENT_CONSUMERS,
    )
    seen: dict[str, Any] = {}

    async def broker_outage(runner):
        await results_at_least(runner, 20)
        seen["results_before"] = len(read_results(runner))
        t0 = time.monotonic()
        await asyncio.to_thread(own_kafka.stop)
        await asyncio.sleep(20)
        seen["down_s"] = time.monotonic() - t0
        await asyncio.to_thread(own_kafka.start)
        seen["restart_s"] = own_kafka.startup_seconds
        seen["back_ms"] = int(time.time() * 1000)
        await wait_until(
            "11 frames captured after the broker came back, processed", lambda: len(processed_after(runner, seen["back_ms"])) > 10
        )

    runner, s = asyncio.run(run_fleet_for(manifest, None, during=broker_outage))

    fault_report.ledger(row, s)
    row.happened = (
        f"broker down {seen.get('down_s', float('nan')):.0f} s + {seen.get('restart_s') or float('nan'):.0f} s to start again; "
        f"producers held at most {max((c['max_buffered'] for c in s['per_camera'].values()), default=0)} frames per camera "
        f"(bound {bound}). {ledger_line(s)}; {reasons(s)}; missed slots {s['missed_by_reason']}"
    )
    assert s["produced_from"] == "kafka_offsets"
    assert s["ledger_balanced"], s
    for cam, c in s["per_camera"].items():
        assert c["max_buffered"] <= bound, c
        assert c["dropped_by_reason"].get("kafka_unavailable", 0) > 0, (
            f"camera {cam}: an outage longer than the buffer dropped nothing? {c}"
        )
        assert set(c["dropped_by_reason"]) <= {"kafka_unavailable"}, c
        assert c["failed"] == 0, c
        assert not c["missed_by_reason"].get("unaccounted"), c
    after = processed_after(runner, seen["back_ms"])
    assert len(after) > 10, "frames did not flow again after the broker came back"
    assert s["duplicates"] <= 2 * CONSUMER_IN_FLIGHT_BOUND, s["duplicates"]


@pytest.fixture
def own_minio(tmp_path, minio_server):
    """An object store of this test's own, with the session's credentials (Ray's workers have those)."""
    server = MinioServer(tmp_path / "minio", access_key=minio_server.access_key, secret_key=minio_server.secret_key)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_object_store_down_fails_frames_with_a_reason_and_recovers(tmp_path, kafka_server, own_minio, ray_cluster, fault_report):
    row = fault_report.row(
        "object store (MinIO) stopped for 10 s, then started again (2 cameras at 5 fps)",
        "frames that cannot be stored or fetched end failed with reason bucket_unavailable; nothing crashes; "
        "after the restart frames are processed again; ledger balances",
    )
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "fault-store",
        kafka_server.bootstrap,
        cameras=CAMERAS,
        models=[yolo_model()],
        bucket={"uri": "s3://fault-store/frames", "endpoint": own_minio.endpoint},
        producer=ONE_PRODUCER,
        consumer=PATIENT_CONSUMERS,
    )
    seen: dict[str, Any] = {}

    async def store_outage(runner):
        await results_at_least(runner, 20)
        t0 = time.monotonic()
        await asyncio.to_thread(own_minio.stop)
        await asyncio.sleep(10)
        seen["down_s"] = time.monotonic() - t0
        await asyncio.to_thread(own_minio.start)
        seen["back_ms"] = int(time.time() * 1000)
        seen["restart_s"] = own_minio.startup_seconds
        settled_ms = seen["back_ms"] + 1000

        def both_cameras_flow() -> bool:
            after = processed_after(runner, settled_ms)
            return len(after) > 10 and all(sum(r["cameraId"] == cam for r in after) > 5 for cam in ("1", "2"))

        await wait_until("both cameras' frames processed again after the store came back", both_cameras_flow)

    runner, s = asyncio.run(run_fleet_for(manifest, None, during=store_outage))

    fault_report.ledger(row, s)
    after = Counter(r["outcome"] for r in read_results(runner) if r.get("captureTsMs", 0) > seen.get("back_ms", 0) + 1000)
    after_by_camera = Counter(r["cameraId"] for r in read_results(runner) if r.get("captureTsMs", 0) > seen.get("back_ms", 0) + 1000)
    row.happened = (
        f"store down {seen.get('down_s', float('nan')):.0f} s + {seen.get('restart_s') or float('nan'):.1f} s to start again. "
        f"{ledger_line(s)}; {reasons(s)}; after it was back: {dict(after)} (by camera {dict(after_by_camera)}); missed slots {s['missed_by_reason']}"
    )
    assert s["ledger_balanced"], s
    assert s["failed_by_reason"].get("bucket_unavailable", 0) > 0, "no frame failed while the store was down?"
    assert set(s["failed_by_reason"]) <= {"bucket_unavailable"}, s["failed_by_reason"]
    assert s["dropped"] == 0, reasons(s)
    assert after.get("processed", 0) > 10 and not after.get("failed"), f"frames did not flow again after the store came back: {after}"
    for cam in ("1", "2"):
        assert after_by_camera[cam] > 5, f"camera {cam} stopped after the store came back: {dict(after_by_camera)}"
    assert not s["missed_by_reason"].get("unaccounted"), s["missed_by_reason"]
