"""Live cameras on real stream servers (GStreamer's RTSP server, an MJPEG-over-HTTP camera): frames are
processed end to end with the faces the clip shows, only what is sampled is decoded, and a stalled,
killed, restarted or password-protected camera is reported as such while the ledger still balances.

Waits are generous: the test cameras encode 1080p30 live on the same 2 cores as the pipeline, so a
busy machine makes the streams late, never wrong. `maxFrameAgeMs` is high for the same reason.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import pytest

from camerafleet.api.source_report import DecodeMode, SourceProblem, TimeSource
from camerafleet_dev.devservers._process import free_port
from tests.fixtures.pipeline import (
    PATIENT_CONSUMER,
    camera_stats,
    face_model,
    health_model,
    read_results,
    run_fleet_for,
    until_processed,
    wait_until,
    write_fleet,
)

pytestmark = pytest.mark.integration

STREAMED_PACKETS = 25 * 30  # 25 s of a 30 fps camera
AUTH_WATCH_S = 20  # how long a refused camera is watched for its retries: more than two of its shortest waits (8 s)


def scrape(port: int) -> str:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def test_rtsp_h264_h265_and_mjpeg_cameras_are_processed_with_their_faces(tmp_path, kafka_server, ray_cluster, camera_server):
    cams = camera_server(rtsp={"lobby-h264": "h264", "lobby-h265": "h265"}, mjpeg=["lobby-mjpeg"])
    cameras = [
        # 1 fps with a 1 s keyframe interval: keyframes only. 5 fps: each group decoded up to its last slot.
        {"id": "h264", "source": cams.rtsp_url("lobby-h264"), "inferenceFps": 1},
        {"id": "h265", "source": cams.rtsp_url("lobby-h265"), "inferenceFps": 5},
        {"id": "mjpeg", "source": cams.mjpeg_url("lobby-mjpeg"), "inferenceFps": 2},
    ]
    manifest = write_fleet(
        tmp_path / "fleet.yaml", "live", kafka_server.bootstrap, cameras=cameras, models=[face_model()], consumer=PATIENT_CONSUMER
    )

    async def sampled_and_processed(runner) -> None:
        # Decoding only what is sampled shows once the first two groups (decoded whole, while the decoder
        # settles) are a small part of what was read: 25 s of a 30 fps stream. The stream servers send in real
        # time however busy the machine is; the pipeline's pace does not matter.
        def streamed_long_enough() -> bool:
            return all(camera_stats(runner, cam).packets_received >= STREAMED_PACKETS for cam in ("h264", "mjpeg"))

        await wait_until(f"{STREAMED_PACKETS} packets read from the h264 and MJPEG cameras", streamed_long_enough)
        # A camera's decoding mode is decided once two keyframes have come; a live H.265 encoder on a busy machine
        # sends them seconds apart.
        await wait_until(
            "a decoding mode decided for every camera",
            lambda: all(camera_stats(runner, c["id"]).decode_mode not in (None, DecodeMode.EVERY_FRAME) for c in cameras),
            context=lambda: {c["id"]: camera_stats(runner, c["id"]).decode_mode for c in cameras},
        )
        await until_processed(runner, 5)

    runner, s = asyncio.run(run_fleet_for(manifest, None, sampled_and_processed))

    assert s["ledger_balanced"], s
    assert s["failed"] == 0, s
    per = s["per_camera"]
    assert per["h264"]["decode_mode"] == DecodeMode.KEYFRAMES_ONLY, per["h264"]
    assert per["h265"]["decode_mode"] == DecodeMode.UNTIL_LAST_SAMPLED, per["h265"]
    assert per["mjpeg"]["decode_mode"] == DecodeMode.KEYFRAMES_ONLY, per["mjpeg"]  # every MJPEG frame is a keyframe
    assert per["h264"]["time_source"] == per["h265"]["time_source"] == TimeSource.CAMERA_CLOCK, per
    assert per["mjpeg"]["time_source"] == TimeSource.ARRIVAL, per["mjpeg"]
    # Decoding what is sampled: at 1 fps from a 30 fps stream, keyframes only after the first two groups.
    h264 = per["h264"]
    assert h264["frames_decoded"] < h264["packets_received"] / 5, h264
    assert per["mjpeg"]["frames_decoded"] < per["mjpeg"]["packets_received"] / 5, per["mjpeg"]

    processed = [r for r in read_results(runner) if r["outcome"] == "processed"]
    for cam in ("h264", "h265", "mjpeg"):
        frames = [r for r in processed if r["cameraId"] == cam]
        assert len(frames) >= 5, (cam, per[cam])
        with_face = [r for r in frames if r["models"]["faces"]["detections"]]
        # The poster's face is in every frame of the clip (CenterFace finds it in 180 of 180 raw frames), but the
        # test cameras' live 4 Mbit/s zero-latency encoders starve some keyframes of bits: 19 of 26 keyframes
        # kept it in one CI run. A decoder that gave garbage would find none; half tells the two apart.
        assert len(with_face) >= 0.5 * len(frames), (cam, len(with_face), len(frames))


def test_stalled_killed_and_restarted_camera_is_reported_and_resumes(tmp_path, kafka_server, ray_cluster, camera_server):
    cams = camera_server(rtsp={"dock": "h264"})
    metrics_port = free_port()
    camera = {"id": "dock", "source": cams.rtsp_url("dock"), "inferenceFps": 2, "stallTimeoutSeconds": 2}
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "livefaults",
        kafka_server.bootstrap,
        cameras=[camera],
        models=[health_model()],
        consumer=PATIENT_CONSUMER,
        producer={"reconnectInitialSeconds": 0.5, "reconnectMaxSeconds": 2},
    )
    seen: dict[str, Any] = {}

    async def faults(runner) -> None:
        async def wait_for(what: str, check) -> float:
            return await wait_until(
                f"{what} (camera dock)", lambda: check(camera_stats(runner, "dock")), context=lambda: camera_stats(runner, "dock")
            )

        await wait_for("frames flowing", lambda p: p.source_up and p.produced >= 4)
        cams.pause()
        seen["stall_noticed_s"] = await wait_for("stall reported", lambda p: p.source_problems[SourceProblem.STALLED] >= 1)

        # The run's /metrics is refreshed with each progress line (every second here), after the stats the
        # check above polled: wait for the refresh that carries the stall (the source is down for seconds).
        def stall_on_metrics() -> bool:
            seen["metrics_while_down"] = scrape(metrics_port)
            return (
                'problem="stalled"' in seen["metrics_while_down"]
                and 'camerafleet_run_source_up{camera="dock",fleet="livefaults"} 0.0' in seen["metrics_while_down"]
            )

        await wait_until("the stall on the run's /metrics", stall_on_metrics, timeout_s=120)
        await asyncio.sleep(3)  # the stream stays paused a little longer: a stall, not a blip
        cams.resume()
        await wait_for("back after the stall", lambda p: p.source_up)
        produced = camera_stats(runner, "dock").produced
        await wait_for("frames after the stall", lambda p: p.produced >= produced + 3)
        cams.stop()
        await wait_for("a killed server reported", lambda p: not p.source_up)
        await asyncio.sleep(4)  # the server stays down for several reconnect attempts
        cams.start()
        seen["restarted_at"] = time.time()
        produced = camera_stats(runner, "dock").produced
        await wait_for("frames after the restart", lambda p: p.source_up and p.produced >= produced + 4)

    runner, s = asyncio.run(run_fleet_for(manifest, None, faults, metrics_port=metrics_port))

    dock = s["per_camera"]["dock"]
    assert s["ledger_balanced"], s
    assert s["failed"] == 0, s
    assert dock["source_problems"][SourceProblem.STALLED] >= 1, dock
    assert dock["reconnects"] >= 2 and dock["source_up"], dock
    assert dock["missed_by_reason"].get("source_down", 0) >= 2, dock
    assert 'camerafleet_run_source_problems{camera="dock",fleet="livefaults",problem="stalled"}' in seen["metrics_while_down"]
    assert 'camerafleet_run_source_up{camera="dock",fleet="livefaults"} 0.0' in seen["metrics_while_down"]
    processed = [r for r in read_results(runner) if r["outcome"] == "processed"]
    assert any(r["captureTsMs"] / 1000 > seen["restarted_at"] for r in processed), "no frame processed after the restart"


def test_wrong_password_is_an_auth_failure_retried_slowly_and_never_shown(tmp_path, kafka_server, ray_cluster, camera_server):
    password, wrong = "Corr3ct-Horse", "n0t-the-Passw0rd"
    cams = camera_server(rtsp={"gate": "h264"}, user="viewer", password=password)
    cameras = [
        {"id": "gate", "source": cams.rtsp_url("gate", "viewer", wrong), "inferenceFps": 2},
        {"id": "gate-ok", "source": cams.rtsp_url("gate", "viewer", password), "inferenceFps": 2},
    ]
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "liveauth",
        kafka_server.bootstrap,
        cameras=cameras,
        models=[health_model()],
        consumer=PATIENT_CONSUMER,
        producer={"reconnectInitialSeconds": 0.5, "reconnectMaxSeconds": 16},
    )
    observed: dict[str, float] = {}

    async def refused_for_a_while(runner) -> None:
        await wait_until("the wrong password refused", lambda: camera_stats(runner, "gate").source_problems[SourceProblem.AUTH_FAILED] >= 1)
        observed["first_refusal"] = time.monotonic()
        await until_processed(runner, 5, ["gate-ok"])
        # The retry interval is judged over AUTH_WATCH_S of the camera's own time, however fast the machine.
        await asyncio.sleep(max(0.0, observed["first_refusal"] + AUTH_WATCH_S - time.monotonic()))
        observed["watched_s"] = time.monotonic() - observed["first_refusal"]

    runner, s = asyncio.run(run_fleet_for(manifest, None, refused_for_a_while))

    gate, ok = s["per_camera"]["gate"], s["per_camera"]["gate-ok"]
    assert s["ledger_balanced"], s
    assert gate["produced"] == 0 and not gate["source_up"], gate
    assert set(gate["source_problems"]) == {SourceProblem.AUTH_FAILED}, gate
    # Retried at reconnectMaxSeconds with equal jitter (8 to 16 s), not every 0.5-1-2-4-8 s (at least 6 refusals in
    # 20 s): the first refusal, then one every 8 s at most (plus one for the stop racing an attempt), while the test
    # watched. With reconnectMaxSeconds 8 the shortest wait (4 s) let 5 refusals into 20 s, against a bound of 4.
    most = 2 + int(observed["watched_s"] // 8)
    assert 1 <= gate["source_problems"][SourceProblem.AUTH_FAILED] <= most, (gate, observed)
    assert "refused the credentials" in gate["last_error"] and f"rtsp://***@127.0.0.1:{cams.rtsp_port}/gate" in gate["last_error"]
    assert gate["missed_by_reason"].get("source_down", 0) >= 10, gate
    assert ok["processed"] >= 5 and ok["source_up"], ok  # the right password on the same server works
    shown = json.dumps(s) + runner.results_log.read_text() + "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.log"))
    assert wrong not in shown and password not in shown
