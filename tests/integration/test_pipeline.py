"""End to end on the real Kafka broker, MinIO and Ray Serve: frames flow from synthetic cameras to
results with exact boxes, batches form, the ledger balances, a broken camera does not stop the others."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from ray import serve

from tests.fixtures.pipeline import (
    EVENT_TIMEOUT_S,
    camera_stats,
    health_model,
    read_results,
    run_fleet_for,
    until_processed,
    wait_until,
    write_fleet,
    yolo_model,
)

pytestmark = pytest.mark.integration

# yolo_test.onnx reports two boxes (prepare.YOLO_TEST_BOXES) in 640x640 letterbox pixels; on a 1280x720
# frame the letterbox scale is 0.5 with 140 px of padding above, so in frame pixels they are:
FAST_AUTOSCALING = {
    "minReplicas": 1,
    "maxReplicas": 2,
    "targetOngoingRequests": 1,
    "upscaleDelaySeconds": 1,
    "downscaleDelaySeconds": 60,
    "metricsIntervalSeconds": 0.5,
    "lookBackPeriodSeconds": 2,
}
EXPECTED_BOXES = [
    {"box": [440.0, 260.0, 840.0, 460.0], "label": "person", "score": 0.9},
    {"box": [256.0, 72.0, 384.0, 328.0], "label": "bicycle", "score": 0.6},
]


async def topic_values(bootstrap: str, topic: str, expected: int, timeout_s: float = EVENT_TIMEOUT_S) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    values: list[dict] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(values) < expected and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values += [orjson.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    return values


def test_frames_flow_end_to_end_over_s3_and_models_scale_up(tmp_path, kafka_server, minio_server, ray_cluster):
    cameras = [{"id": str(i), "source": "synthetic:1280x720@30", "inferenceFps": 8} for i in (1, 2, 3)]
    cameras.append({"id": "broken", "source": str(tmp_path / "no-such-clip.mp4")})
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "e2e",
        kafka_server.bootstrap,
        cameras=cameras,
        models=[yolo_model(autoscaling=FAST_AUTOSCALING), health_model()],
        bucket={"uri": "s3://e2e-frames/run", "endpoint": minio_server.endpoint},
        producer={"actors": 2, "cpusPerActor": 0.25, "reconnectInitialSeconds": 0.5},
        consumer={"actors": 1, "maxBatchFrames": 16, "batchWaitMs": 100, "maxFrameAgeMs": 60000},
    )
    replicas: list[int] = []

    def objects_replicas() -> int:
        replicas.append(serve.status().applications["e2e"].deployments["model-objects"].replica_states.get("RUNNING", 0))
        return replicas[-1]

    async def scale_up_under_load(runner):
        # The app is deployed and no frame has reached it yet: minReplicas. Once frames flow, Serve decides to scale
        # up after upscaleDelaySeconds of load and starts a replica, which takes seconds more on a busy machine.
        assert objects_replicas() == 1, f"model-objects started with {replicas[-1]} replicas, not minReplicas 1"
        await until_processed(runner, 1, ["1", "2", "3"])
        await wait_until("a second model-objects replica", lambda: objects_replicas() == 2, context=lambda: replicas[-20:])
        await until_processed(runner, 20, ["1", "2", "3"])
        await wait_until("two reconnects of the broken camera", lambda: camera_stats(runner, "broken").reconnects >= 2)

    runner, s = asyncio.run(run_fleet_for(manifest, None, during=scale_up_under_load))

    assert s["ledger_balanced"], s
    assert s["failed"] == 0 and s["dropped"] == 0, s
    for cam in ("1", "2", "3"):
        assert s["per_camera"][cam]["processed"] >= 20, s["per_camera"][cam]
    broken = s["per_camera"]["broken"]
    assert broken["produced"] == 0 and not broken["source_up"] and broken["reconnects"] >= 2
    assert "no-such-clip.mp4" in broken["last_error"]

    processed = [r for r in read_results(runner) if r["outcome"] == "processed"]
    assert len(processed) == s["processed"]
    for r in processed:
        dets = r["models"]["objects"]["detections"]
        assert [{k: d[k] for k in ("box", "label", "score")} for d in dets] == EXPECTED_BOXES
        assert r["models"]["health"]["flags"] == []
        assert r["latencyMs"] >= 0 and r["uri"].startswith("s3://e2e-frames/run/")
    assert s["batch_size"]["objects"]["max"] > 1, "no batch of more than one frame formed under load"

    every = s["processed"] + s["dropped"] + s["failed"]
    on_topic = asyncio.run(topic_values(kafka_server.bootstrap, "e2e_results", every))
    assert len(on_topic) >= every, "every frame's record is on the results topic, whatever its outcome"
    assert sorted((v["cameraId"], v["seq"]) for v in on_topic if v["outcome"] == "processed") == sorted(
        (r["cameraId"], r["seq"]) for r in processed
    )


def test_kafka_unreachable_at_start_is_a_clear_message(tmp_path):
    import subprocess
    import sys

    manifest = write_fleet(
        tmp_path / "fleet.yaml", "nokafka", "127.0.0.1:1", cameras=[{"id": "1", "source": "synthetic:"}], models=[health_model()]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "camerafleet.cli", "run", str(manifest), "--duration", "1"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "cannot reach Kafka at 127.0.0.1:1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_without_a_local_results_log_the_ledger_is_counted_from_the_results_topic_and_the_summary_kept_in_the_bucket(
    tmp_path, kafka_server, minio_server, ray_cluster
):
    """The Kubernetes layout's bookkeeping (issue 23, defect 1): consumers on worker Pods keep no file, so the
    run's outcomes are read back from its span of the results topic, and the summary outlives the Pod in the
    bucket. On one machine the consumers share the driver's disk; here nothing may be read from it."""
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "nolog",
        kafka_server.bootstrap,
        cameras=[{"id": str(i), "source": "synthetic:640x360@10", "inferenceFps": 5} for i in (1, 2)],
        models=[health_model()],
        bucket={"uri": "s3://nolog-frames/run", "endpoint": minio_server.endpoint},
        producer={"actors": 1, "cpusPerActor": 0.25},
        consumer={"actors": 1, "maxFrameAgeMs": 60000},
        results={"logDir": str(tmp_path / "runs"), "localLog": False},
    )
    runner, s = asyncio.run(run_fleet_for(manifest, None, during=lambda r: until_processed(r, 10, ["1", "2"])))

    assert not runner.results_log.exists(), "no results file on the consumers' disk"
    assert s["results_from"] == "kafka topic nolog_results" and s["produced_from"] == "kafka_offsets"
    assert s["ledger_balanced"] and s["failed"] == 0, s
    assert all(s["per_camera"][cam]["processed"] >= 10 for cam in ("1", "2")), s["per_camera"]
    from camerafleet.api.manifest import BucketSpec
    from camerafleet.bucket import open_bucket, summary_key

    bucket = open_bucket(BucketSpec(uri="s3://nolog-frames/run", endpoint=minio_server.endpoint))
    kept = orjson.loads(bucket.get(bucket.uri_of(summary_key("nolog", runner.run_id, "all"))))
    assert (kept["run_id"], kept["processed"], kept["ledger_balanced"]) == (runner.run_id, s["processed"], True)
