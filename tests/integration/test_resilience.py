"""While a fleet runs: its manifest gains a camera and a producer actor (applied in place), a camera's rate is
lowered and raised again, a consumer actor is killed mid-stream and comes back, the added camera is removed. No
frame is lost: every sampled frame is processed, and every frame keeps a sequence number of its own."""

from __future__ import annotations

import asyncio
import itertools

import pytest
import ray

from tests.fixtures.pipeline import read_results, run_fleet_for, until_processed, wait_until, write_fleet, yolo_model

pytestmark = pytest.mark.integration


def test_resize_reload_and_consumer_kill_lose_nothing(tmp_path, kafka_server, ray_cluster):
    cameras = [
        {"id": "1", "source": "synthetic:640x360@20", "inferenceFps": 5},
        {"id": "2", "source": "synthetic:640x360@20", "inferenceFps": 5},
    ]
    common = {
        "models": [yolo_model()],
        "consumer": {"actors": 2, "maxFrameAgeMs": 120000, "cpusPerActor": 0.25},
    }
    # Producers take every slot: while the consumers restart the backlog grows, and admission would rightly shed
    # slots (gaps in the sequences) for as long as that takes on this machine. Shedding is tested in test_overload.
    every_slot = {"cpusPerActor": 0.25, "admission": {"mode": "off"}}
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "resilience",
        kafka_server.bootstrap,
        cameras=cameras,
        producer={"actors": 1, **every_slot},
        **common,
    )

    async def disturb(runner):
        await until_processed(runner, 5)
        # Camera 2 goes to 1 fps: its grid goes on from its next slot (numbered from the epoch at 1 fps instead, its
        # frames would reuse the sequence numbers of its first seconds at 5 fps).
        slower = [
            cameras[0],
            {**cameras[1], "inferenceFps": 1},
            {"id": "3", "source": "synthetic:640x360@20", "inferenceFps": 5, "producerShards": 2},
        ]
        write_fleet(
            tmp_path / "fleet.yaml",
            "resilience",
            kafka_server.bootstrap,
            cameras=slower,
            producer={"actors": 2, **every_slot},
            **common,
        )
        # The runner reads the manifest every watch interval and starts a producer actor (a new Ray worker).
        await wait_until("the manifest change applied", lambda: len(runner.pools.producers) == 2 and len(runner.spec.cameras) == 3)
        await until_processed(runner, 3, ["3"])
        # Every consumer at once (as when their Pod goes): Ray restarts each with the spec it was created with,
        # which lacks camera 3; the runner must hand them the current one.
        before = len(read_results(runner))
        for consumer in runner.pools.consumers:
            ray.kill(consumer, no_restart=False)
        await wait_until(
            "results for every camera after the consumers came back",
            lambda: {r["cameraId"] for r in read_results(runner)[before:]} == {"1", "2", "3"},
        )
        faster = [cameras[0], cameras[1], slower[2]]  # camera 2 back at 5 fps
        write_fleet(
            tmp_path / "fleet.yaml", "resilience", kafka_server.bootstrap, cameras=faster, producer={"actors": 2, **every_slot}, **common
        )
        await wait_until("camera 2 back at 5 fps", lambda: runner.spec.cameras[1].inference_fps == 5)
        before = len(read_results(runner))
        await wait_until(
            "camera 2's frames at 5 fps processed", lambda: sum(r["cameraId"] == "2" for r in read_results(runner)[before:]) >= 10
        )
        # Camera 3 goes: the consumers hear of it before its producer stops, and what it announced until then (and
        # any backlog) is still read from its topic and answered, not left unread, also by consumers restarted then.
        write_fleet(
            tmp_path / "fleet.yaml",
            "resilience",
            kafka_server.bootstrap,
            cameras=faster[:2],
            producer={"actors": 2, **every_slot},
            **common,
        )
        await wait_until("camera 3 removed", lambda: len(runner.spec.cameras) == 2)
        for consumer in runner.pools.consumers:  # restarted, they find what camera 3 left unread in Kafka itself
            ray.kill(consumer, no_restart=False)
        before = len(read_results(runner))
        await wait_until("more frames of camera 1", lambda: sum(r["cameraId"] == "1" for r in read_results(runner)[before:]) >= 10)

    runner, s = asyncio.run(run_fleet_for(manifest, None, during=disturb))

    assert s["per_camera"]["3"]["processed"] > 0, "the camera added while running was not served"
    assert s["ledger_balanced"], s
    assert s["dropped"] == 0 and s["failed"] == 0, s
    assert s["processed"] == s["produced"] > 0
    assert {(c["pool"], c["from"], c["to"], c["reason"]) for c in s["pools"]["changes"]} == {("producer", 1, 2, "manifest")}
    seqs: dict[str, set[int]] = {}
    positions: dict[tuple[str, int], set[tuple[int, int]]] = {}
    captured: dict[str, dict[int, int]] = {}
    for r in read_results(runner):
        seqs.setdefault(r["cameraId"], set()).add(r["seq"])
        positions.setdefault((r["cameraId"], r["seq"]), set()).add((r["partition"], r["offset"]))
        captured.setdefault(r["cameraId"], {})[r["seq"]] = r["captureTsMs"]
    reused = {frame: where for frame, where in positions.items() if len(where) > 1}
    assert not reused, f"sequence numbers used by more than one frame (camera, seq) -> Kafka positions: {reused}"
    for cam in ("1", "2"):
        assert seqs[cam] == set(range(min(seqs[cam]), max(seqs[cam]) + 1)), f"camera {cam} has gaps in its sequence"
    # Camera 2 ran at both rates, its frames in capture order: 200 ms apart at 5 fps, a second apart at 1 fps.
    times = [captured["2"][seq] for seq in sorted(seqs["2"])]
    steps = {b - a for a, b in itertools.pairwise(times)}
    assert times == sorted(times), "camera 2's sequence numbers follow its capture times"
    assert {200, 1000} <= {round(step, -2) for step in steps}, sorted(steps)
