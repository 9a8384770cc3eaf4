"""What the fleet console costs with a large fleet: its process's CPU and memory while 150 cameras'
results stream in and browsers watch the page.

The console runs as it does in `camerafleet run` (the same `Console`, its own process here so its CPU is
its own), reading a real Kafka results topic; a feeder publishes one result record per camera and
sampling slot, with two face detections each, and stores each frame (a 1280x720 JPEG of the demo scene)
in a directory bucket on tmpfs; producer stats say every camera is up. Headless Chromium windows open the grid (1280x800: the
tiles on screen fetch frames, the others only get their counters). Reported: the console process's CPU
(share of one core) and resident memory, and what each viewer receives per second.

    python -m camerafleet_dev.bench.console [--cameras 150] [--fps 1] [--viewers 2] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import yaml
from aiokafka import AIOKafkaProducer

from camerafleet.api.manifest import CameraFleet
from camerafleet.bucket import frame_key
from camerafleet.bucket.local import DirectoryBucket
from camerafleet.topics import ensure_topics
from camerafleet_dev.clips import write_demo_frames
from camerafleet_dev.devservers._process import free_port

FACES = [
    {"box": [505.6, 99.3, 626.0, 252.0], "label": "face", "score": 0.88, "landmarks": [[537.8, 150.0], [595.7, 151.2], [562.6, 179.2]]},
    {"box": [63.9, 222.0, 109.6, 279.3], "label": "face", "score": 0.68, "landmarks": [[93.2, 243.2], [105.6, 244.7], [104.0, 256.4]]},
]


def fleet_document(cameras: int, bootstrap: str, bucket: Path) -> dict[str, Any]:
    return {
        "apiVersion": "camerafleet.io/v1alpha1",
        "kind": "CameraFleet",
        "metadata": {"name": "console-bench"},
        "spec": {
            "cameras": [{"id": f"cam-{i:03d}", "source": "synthetic:"} for i in range(cameras)],
            "models": [{"name": "faces", "type": "camera-health"}, {"name": "health", "type": "camera-health"}],
            "kafka": {"bootstrapServers": bootstrap, "topicPrefix": "consolebench_", "resultsTopic": "consolebench_results"},
            "bucket": {"uri": f"file://{bucket}"},
        },
    }


def serve(manifest: Path, port: int) -> None:
    """The console process: the Console of `camerafleet run`, with producer stats saying every camera is up."""
    from camerafleet.api.manifest import load_manifest
    from camerafleet.console.service import Console, ConsoleOptions
    from camerafleet.stats import ProducerCameraStats

    fleet = load_manifest(manifest)

    async def main() -> None:
        console = Console(fleet.spec, fleet.metadata.name, ConsoleOptions(port))
        await console.start()
        print("ready", flush=True)
        produced = 0
        while True:
            produced += 1
            stats = {c.id: ProducerCameraStats(produced=produced, source_up=True) for c in fleet.spec.cameras}
            console.update_producers(stats, stats)
            await asyncio.sleep(0.5)  # the runner's watch interval

    asyncio.run(main())


async def feed(fleet: CameraFleet, bucket: DirectoryBucket, fps: float, seconds: float) -> int:
    """Publish result records for every camera at `fps`, storing each frame; returns how many."""
    with tempfile.TemporaryDirectory() as tmp:  # a real scene (the demo camera's), not a flat image that compresses to nothing
        jpeg = next(write_demo_frames(Path(tmp), "camera_1", seconds=0.1, width=1280, height=720, fps=10).glob("*.jpg")).read_bytes()
    producer = AIOKafkaProducer(bootstrap_servers=fleet.spec.kafka.bootstrap_servers, linger_ms=20)
    await producer.start()
    epoch = int(time.time() * 1000)
    sent, seq, started = 0, 0, time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            for camera in fleet.spec.cameras:
                uri = bucket.put(frame_key(camera.id, epoch, seq), jpeg)
                record = {
                    "cameraId": camera.id,
                    "seq": seq,
                    "epochMs": epoch,
                    "captureTsMs": int(time.time() * 1000),
                    "uri": uri,
                    "width": 1280,
                    "height": 720,
                    "outcome": "processed",
                    "latencyMs": 150,
                    "models": {
                        "faces": {"detections": FACES, "batchSize": 4, "batchMs": 40.0},
                        "health": {"flags": [], "batchSize": 8, "batchMs": 3.0},
                    },
                    "topic": f"consolebench_{camera.id}",
                    "partition": 0,
                    "offset": seq,
                }
                await producer.send(fleet.spec.kafka.results_topic, orjson.dumps(record), key=camera.id.encode())
                sent += 1
            seq += 1
            await asyncio.sleep(max(0.0, started + seq / fps - time.monotonic()))
    finally:
        await producer.stop()
    return sent


def measure(cameras: int, fps: float, viewers: int, seconds: float, warmup_s: float = 15.0) -> dict[str, Any]:
    from camerafleet_dev.browser import headless_chromium
    from camerafleet_dev.devservers.kafka import KafkaServer

    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp, KafkaServer(Path(tmp) / "kafka") as kafka:
        bucket_dir = Path("/dev/shm") / Path(tmp).name
        document = fleet_document(cameras, kafka.bootstrap, bucket_dir)
        manifest = Path(tmp) / "fleet.yaml"
        manifest.write_text(yaml.safe_dump(document))
        fleet = CameraFleet.model_validate(document)
        asyncio.run(ensure_topics(fleet.spec, kafka.bootstrap))
        bucket = DirectoryBucket(f"file://{bucket_dir}", max_frame_bytes=10_000_000)
        bucket.prepare(300)
        port = free_port()
        console = subprocess.Popen(
            [sys.executable, "-m", "camerafleet_dev.bench.console", "--serve", str(manifest), "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        browsers = []
        try:
            assert console.stdout is not None and console.stdout.readline().strip() == "ready", "the console did not start"
            proc = psutil.Process(console.pid)
            for _ in range(viewers):
                browser = headless_chromium(1280, 800)
                browser.get(f"http://127.0.0.1:{port}/")
                browser.execute_script("performance.setResourceTimingBufferSize(1000000)")  # 250 entries by default
                browsers.append(browser)
            sample = asyncio.run(_feed_and_sample(fleet, bucket, fps, seconds + warmup_s, warmup_s, proc, port))
            frames = [_frames_fetched(b) for b in browsers]
        finally:
            for browser in browsers:
                browser.quit()
            console.terminate()
            console.wait(timeout=30)
            subprocess.run(["rm", "-rf", str(bucket_dir)], check=False)
    total_s = seconds + warmup_s
    return {
        "cameras": cameras,
        "fps_per_camera": fps,
        "results_per_s": round(sample["records"] / total_s, 1),
        "viewers": viewers,
        "console_cpu_share_of_one_core": round(sample["cpu_s"] / sample["window_s"], 3),
        "console_rss_mb_max": round(sample["rss_mb"], 1),
        "live_stream_kb_per_s_per_viewer": round(sample["stream_bytes"] / 1024 / sample["window_s"], 1),
        "tile_frames_per_s_per_viewer": [round(n / total_s, 1) for n, _ in frames],
        "tile_frame_kb_per_s_per_viewer": [round(b / 1024 / total_s, 1) for _, b in frames],
    }


async def _feed_and_sample(
    fleet: CameraFleet, bucket: DirectoryBucket, fps: float, total_s: float, warmup_s: float, proc: psutil.Process, port: int
) -> dict[str, Any]:
    feeder = asyncio.create_task(feed(fleet, bucket, fps, total_s))
    await asyncio.sleep(warmup_s)
    stream_bytes = [0]
    reader = asyncio.create_task(_read_stream(port, stream_bytes))  # what one viewer's live stream carries
    cpu0, t0 = proc.cpu_times(), time.monotonic()
    rss = []
    while not feeder.done():
        rss.append(proc.memory_info().rss / 2**20)
        await asyncio.sleep(1)
    cpu1, t1 = proc.cpu_times(), time.monotonic()
    reader.cancel()
    return {
        "records": await feeder,
        "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        "rss_mb": max(rss),
        "window_s": t1 - t0,
        "stream_bytes": stream_bytes[0],
    }


async def _read_stream(port: int, counted: list[int]) -> None:
    async with httpx.AsyncClient(timeout=None) as client, client.stream("GET", f"http://127.0.0.1:{port}/api/events") as stream:
        async for chunk in stream.aiter_raw():
            counted[0] += len(chunk)


def _frames_fetched(browser: Any) -> tuple[int, int]:
    """Tile frames the page fetched and their bytes, from the browser's resource timing."""
    script = (
        "const f = performance.getEntriesByType('resource').filter((e) => e.name.includes('/frames/'));"
        "return [f.length, f.reduce((n, e) => n + (e.encodedBodySize || 0), 0)];"
    )
    count, size = browser.execute_script(script)
    return int(count), int(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=150)
    parser.add_argument("--fps", type=float, default=1.0, help="results per camera per second")
    parser.add_argument("--viewers", type=int, default=2, help="headless browsers on the page")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window, after 15 s of warm-up")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the console process itself
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    print(json.dumps(measure(args.cameras, args.fps, args.viewers, args.seconds), indent=2))


if __name__ == "__main__":
    main()
