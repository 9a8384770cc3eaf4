"""Bad input over the HTTP transport: every bad frame message ends `failed` with its reason, goes to the
dead-letter topic, and the committed offset moves past it; the good frame next to them is processed."""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from ray import serve

from camerafleet.bucket import open_bucket
from camerafleet.manifest import load_manifest
from camerafleet.serving.app import fleet_app
from tests.fixtures.pipeline import read_results, run_fleet_for, write_fleet, yolo_model
from tests.integration.test_pipeline import topic_values

pytestmark = pytest.mark.integration


def frame(cam: str, seq: int, uri: str, **extra) -> bytes:
    now = int(time.time() * 1000)
    return orjson.dumps({"cameraId": cam, "seq": seq, "epochMs": 7, "captureTsMs": now, "uri": uri, "width": 320, "height": 240, **extra})


def test_bad_input_fails_with_reasons_and_offsets_advance(tmp_path, kafka_server, ray_cluster):
    import os

    port = int(os.environ["CAMERAFLEET_SERVE_PORT"])
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "badinput",
        kafka_server.bootstrap,
        cameras=[{"id": "1", "source": "synthetic:"}],
        models=[yolo_model()],
        producer={"actors": 0},
        consumer={"actors": 1, "maxFrameAgeMs": 60000},
    )
    fleet = load_manifest(manifest).spec
    serve.run(fleet_app(fleet), name="badinput-service", route_prefix="/badinput-service")
    manifest.write_text(manifest.read_text().replace("  serving:\n", f"  serving:\n    url: http://127.0.0.1:{port}/badinput-service\n", 1))

    bucket = open_bucket(fleet.bucket)
    bucket.prepare(300)
    good = cv2.imencode(".jpg", np.full((240, 320, 3), 128, np.uint8))[1].tobytes()
    root = bucket.root_uri
    cases = {
        0: (frame("1", 0, bucket.put("1/good.jpg", good)), "processed"),
        1: (frame("1", 1, bucket.put("1/random.jpg", np.random.default_rng(1).bytes(5000))), "decode_error"),
        2: (frame("1", 2, bucket.put("1/truncated.jpg", good[: len(good) // 3])), "decode_error"),
        3: (frame("1", 3, f"{root}/1/never-written.jpg"), "frame_missing"),
        4: (b"{this is not json", "malformed_message"),
        5: (orjson.dumps({"cameraId": "1", "seq": "five"}), "malformed_message"),
        6: (frame("99", 6, bucket.put("1/other.jpg", good)), "unknown_camera"),
        7: (frame("1", 7, f"{root}/../../etc/passwd"), "uri_outside_bucket"),
        8: (frame("1", 8, "file:///etc/passwd"), "uri_outside_bucket"),
        9: (frame("1", 9, "s3://another-bucket/1/x.jpg"), "uri_outside_bucket"),
    }

    async def inject(runner):
        producer = AIOKafkaProducer(bootstrap_servers=kafka_server.bootstrap)
        await producer.start()
        try:
            for value, _ in cases.values():
                await producer.send_and_wait("badinput_camera_1", value, key=b"1")
        finally:
            await producer.stop()
        for _ in range(100):
            if runner.results_log.exists() and len(read_results(runner)) >= len(cases):
                break
            await asyncio.sleep(0.2)
        runner.stop_event.set()

    runner, summary = asyncio.run(run_fleet_for(manifest, seconds=30, during=inject))
    serve.delete("badinput-service")

    results = read_results(runner)
    assert len(results) == len(cases), results
    by_seq = {r.get("seq"): r for r in results}
    for seq, (_, expected) in cases.items():
        if expected == "malformed_message":
            continue
        r = by_seq[seq]
        assert (r["outcome"] if expected == "processed" else r["reason"]) == expected, r
    malformed = [r for r in results if r.get("reason") == "malformed_message"]
    assert len(malformed) == 2 and all(r["cameraId"] == "1" and "offset" in r for r in malformed)
    assert by_seq[0]["models"]["objects"]["detections"], "the good frame went through the HTTP transport"

    dead = asyncio.run(topic_values(kafka_server.bootstrap, "badinput_deadletter", len(cases) - 1))
    assert sorted(d["reason"] for d in dead) == sorted(e for _, e in cases.values() if e != "processed")

    async def committed() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets("badinput")
        finally:
            await admin.close()
        return offsets[TopicPartition("badinput_camera_1", 0)].offset

    assert asyncio.run(committed()) == len(cases)
