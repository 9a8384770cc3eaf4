"""Bad input over the HTTP transport: every bad frame message ends `failed` with its reason, goes to the
dead-letter topic, and the committed offset moves past it; the good frame next to them is processed.
The inference endpoint itself also gets a batch over its limit and bodies that are not batches. One
fault-report row per input."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from ray import serve

from camerafleet.api.manifest import load_manifest
from camerafleet.api.messages import MAX_DEAD_LETTER_VALUE_BYTES
from camerafleet.bucket import open_bucket
from camerafleet.serving.app import fleet_app
from camerafleet.serving.ingress import MAX_FRAMES_PER_REQUEST
from tests.fixtures.pipeline import read_results, run_fleet_for, wait_until, write_fleet, yolo_model
from tests.integration.test_pipeline import topic_values

pytestmark = pytest.mark.integration


def frame(cam: str, seq: int, uri: str, **extra) -> bytes:
    now = int(time.time() * 1000)
    return orjson.dumps({"cameraId": cam, "seq": seq, "epochMs": 7, "captureTsMs": now, "uri": uri, "width": 320, "height": 240, **extra})


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.faults
def test_bad_input_fails_with_reasons_and_offsets_advance(tmp_path, kafka_server, ray_cluster, fault_report):
    import os

    port = int(os.environ["CAMERAFLEET_SERVE_PORT"])
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "badinput",
        kafka_server.bootstrap,
        cameras=[{"id": "1", "source": "synthetic:"}],
        models=[yolo_model()],
        producer={"actors": 0},
        consumer={"actors": 1, "maxFrameAgeMs": 120_000},  # the messages are stamped before the fleet starts
    )
    fleet = load_manifest(manifest).spec
    serve.run(fleet_app(fleet.serving_app("badinput")), name="badinput-service", route_prefix="/badinput-service")
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
        10: (np.random.default_rng(10).bytes(2 * 2**20), "malformed_message"),
        11: (frame("cam-" + "x" * 59, 11, bucket.put("1/free-text.jpg", good)), "unknown_camera"),
    }
    inputs = {
        0: "a good frame among the bad ones",
        1: "frame whose object is 5000 random bytes",
        2: "frame whose JPEG is truncated to a third",
        3: "frame whose object was never written",
        4: "message that is not JSON",
        5: "JSON message with a string seq and fields missing",
        6: "frame of a camera the fleet does not have",
        7: "frame URI <bucket>/../../etc/passwd",
        8: "frame URI file:///etc/passwd",
        9: "frame URI in another S3 bucket",
        10: "2 MB of random bytes (the topic takes messages up to 4 MB)",
        11: "frame of a 63-character camera id the fleet does not have",
    }
    rows = {
        seq: fault_report.row(
            f"HTTP transport: {inputs[seq]}",
            "processed" if expected == "processed" else f"failed ({expected}), on the dead-letter topic, offset committed past it",
        )
        for seq, (_, expected) in cases.items()
    }

    async def inject(runner):
        # A broker set up for large messages (some are): the 2 MB message is accepted, and its dead-letter record
        # must still fit the dead-letter topic's default limit (1 MB).
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        await admin.start()
        try:
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, "badinput_camera_1", {"max.message.bytes": str(4 * 2**20)})]
            )
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_server.bootstrap, max_request_size=4 * 2**20)
        await producer.start()
        try:
            for value, _ in cases.values():
                await producer.send_and_wait("badinput_camera_1", value, key=b"1")
        finally:
            await producer.stop()
        await wait_until(f"a result for each of the {len(cases)} messages", lambda: len(read_results(runner)) >= len(cases))

    runner, _summary = asyncio.run(run_fleet_for(manifest, None, during=inject))

    # The endpoint itself: a batch over the limit, bodies that are not batches.
    url = f"http://127.0.0.1:{port}/badinput-service"
    too_many = orjson.loads(frame("1", 0, f"{root}/1/good.jpg"))
    endpoint_rows = {
        "batch": fault_report.row(
            f"HTTP inference request with {MAX_FRAMES_PER_REQUEST + 1} frames (limit {MAX_FRAMES_PER_REQUEST})",
            "every frame failed with reason batch_too_large",
        ),
        "not json": fault_report.row("HTTP inference request whose body is not JSON", "400 with a message saying what the body must be"),
        "no frames": fault_report.row('HTTP inference request {"frames": "all"}', "400 with a message saying what the body must be"),
    }
    status, body = post(url, orjson.dumps({"frames": [too_many] * (MAX_FRAMES_PER_REQUEST + 1)}))
    batch = orjson.loads(body)["results"] if status == 200 else []
    endpoint_rows["batch"].happened = f"HTTP {status}, {len(batch)} results, reasons {sorted({r.get('reason') for r in batch})}"
    refusals = {"not json": post(url, b"\x00garbage"), "no frames": post(url, b'{"frames": "all"}')}
    for key, (code, text) in refusals.items():
        endpoint_rows[key].happened = f"HTTP {code}: {text.decode(errors='replace')[:100]}"
    serve.delete("badinput-service")

    results = read_results(runner)
    by_seq = {r.get("seq"): r for r in results if r.get("reason") != "malformed_message"}
    malformed = [r for r in results if r.get("reason") == "malformed_message"]
    for seq, row in rows.items():
        if cases[seq][1] == "malformed_message":
            row.happened = f"{len(malformed)} malformed_message result(s) at offsets {sorted(r.get('offset') for r in malformed)}"
        elif seq in by_seq:
            r = by_seq[seq]
            row.happened = r["outcome"] + (f" ({r['reason']})" if r.get("reason") else "")
        else:
            row.happened = "no result"
    assert len(batch) == MAX_FRAMES_PER_REQUEST + 1 and {r["reason"] for r in batch} == {"batch_too_large"}
    assert all(code == 400 and b"frames" in text for code, text in refusals.values()), refusals
    assert len(results) == len(cases), results
    for seq, (_, expected) in cases.items():
        if expected == "malformed_message":
            continue
        r = by_seq[seq]
        assert (r["outcome"] if expected == "processed" else r["reason"]) == expected, r
    assert len(malformed) == 3 and all(r["cameraId"] == "1" and "offset" in r for r in malformed)
    assert {r["cameraId"] for r in results} == {"1"}, "every outcome counted under the topic's camera: no label from a message"
    assert by_seq[0]["models"]["objects"]["detections"], "the good frame went through the HTTP transport"

    dead = asyncio.run(topic_values(kafka_server.bootstrap, "badinput_deadletter", len(cases) - 1))
    assert sorted(d["reason"] for d in dead) == sorted(e for _, e in cases.values() if e != "processed")
    [junk] = [d for d in dead if d.get("valueBytes") == 2 * 2**20]
    assert len(junk["value"].encode()) <= 3 * MAX_DEAD_LETTER_VALUE_BYTES, "the dead-letter record keeps the start of the message"

    async def committed() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets("badinput")
        finally:
            await admin.close()
        return offsets[TopicPartition("badinput_camera_1", 0)].offset

    offset = asyncio.run(committed())
    for seq, row in rows.items():
        if cases[seq][1] != "processed":
            row.happened += f"; dead-letter topic has {len(dead)} messages, committed offset {offset} of {len(cases)}"
    assert offset == len(cases)
