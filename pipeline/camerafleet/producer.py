"""Producer actors: capture, sample, JPEG-encode, store in the bucket, announce on the camera's topic.

Each actor runs one worker per camera shard it is assigned. Blocking work (decode, encode, bucket put)
runs in a thread, one hop per frame; Kafka sends are batched by the async client. A worker that is
unassigned finishes the frame in hand and waits for its announcements, so resizing the pool loses no
sampled frame. A failing source is reopened with exponential backoff and reported, never abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import ray
from aiokafka import AIOKafkaProducer

from camerafleet import metrics
from camerafleet.profiling import stage
from camerafleet.logs import configure_logging
from camerafleet.bucket import BucketError, FrameBucket, frame_key, open_bucket
from camerafleet.manifest import CameraSpec, FleetSpec
from camerafleet.messages import FrameMessage
from camerafleet.sources import SLOT_EPSILON, FrameSource, Sampler, SourceError, open_source, redact

log = logging.getLogger("camerafleet.producer")


@dataclass(frozen=True)
class Shard:
    """One producer worker's share of a camera: every `shards`-th sampled slot starting at `index`."""

    camera: CameraSpec
    index: int
    shards: int

    @property
    def key(self) -> str:
        return f"{self.camera.id}#{self.index}/{self.shards}"


def plan_shards(spec: FleetSpec, actors: int) -> list[list[Shard]]:
    """Spread the enabled cameras' shards over `actors` actors, round-robin (pure, deterministic)."""
    plan: list[list[Shard]] = [[] for _ in range(actors)]
    if actors == 0:
        return plan
    shards = [Shard(c, i, c.producer_shards) for c in spec.cameras if c.enabled for i in range(c.producer_shards)]
    for n, shard in enumerate(shards):
        plan[n % actors].append(shard)
    return plan


@dataclass
class CameraCounts:
    produced: int = 0
    announced: int = 0
    failed: Counter = field(default_factory=Counter)
    skipped_slots: int = 0
    reconnects: int = 0
    source_up: bool = False
    last_error: str | None = None


def source_url(camera: CameraSpec) -> str:
    if camera.source_secret_env:
        url = os.environ.get(camera.source_secret_env)
        if not url:
            raise SourceError(f"camera {camera.id}: environment variable {camera.source_secret_env} (its source URL) is not set")
        return url
    return camera.source


@dataclass
class _Worker:
    """A running shard: produces slots from `first_slot` (None: from now) until `end_slot` or `stop`."""

    first_slot: int | None = None
    end_slot: int | None = None
    leaving: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


@ray.remote(max_restarts=-1, max_task_retries=0)
class ProducerActor:
    """A pool member. Methods are called by the runner; stats are polled."""

    def __init__(self, spec_json: str, epoch_ms: int, bootstrap: str):
        configure_logging()
        self.spec = FleetSpec.model_validate_json(spec_json)
        self.epoch_ms = epoch_ms
        self.bootstrap = bootstrap
        self.bucket: FrameBucket = open_bucket(self.spec.bucket)
        self.kafka: AIOKafkaProducer | None = None
        self.workers: dict[str, _Worker] = {}
        self.counts: dict[str, CameraCounts] = {}
        self.pending: set[asyncio.Future] = set()
        # Live streams block a thread each while they grab frames; threads are created only as needed.
        self.capture_pool = ThreadPoolExecutor(max_workers=1024, thread_name_prefix="capture")
        self.last_sweep: dict[str, float] = {}

    async def _producer(self) -> AIOKafkaProducer:
        if self.kafka is None:
            self.kafka = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks="all", request_timeout_ms=30_000)
            await self.kafka.start()
        return self.kafka

    async def assign(self, spec_json: str, shards: list[tuple[str, int, int]], handover_s: float | None = None) -> None:
        """Run exactly these (camera id, shard index, shards) workers. With a handover time, new workers
        take the slots from that time on and workers leaving this actor produce the slots before it, so a
        shard moving between actors is neither interrupted nor doubled."""
        self.spec = FleetSpec.model_validate_json(spec_json)
        cameras = {c.id: c for c in self.spec.cameras}
        wanted = {f"{cid}#{i}/{n}": Shard(cameras[cid], i, n) for cid, i, n in shards}
        await self._producer()
        for key, shard in wanted.items():
            if key not in self.workers:
                worker = _Worker(first_slot=self._slot_at(shard.camera, handover_s))
                worker.task = asyncio.create_task(self._run_worker(shard, worker))
                self.workers[key] = worker
        leaving = [k for k, w in self.workers.items() if k not in wanted and not w.leaving]
        await asyncio.gather(*(self._stop_worker(k, handover_s) for k in leaving))

    def _slot_at(self, camera: CameraSpec, t: float | None) -> int | None:
        return None if t is None else math.ceil((t - self.epoch_ms / 1000) * camera.inference_fps - SLOT_EPSILON)

    async def _stop_worker(self, key: str, handover_s: float | None = None) -> None:
        worker = self.workers[key]
        worker.leaving = True
        if handover_s is not None:
            cam_id = key.split("#")[0]
            camera = next((c for c in self.spec.cameras if c.id == cam_id), None)
            worker.end_slot = self._slot_at(camera, handover_s) if camera else None
            await asyncio.sleep(max(0.0, handover_s - time.time()))
        worker.stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(worker.task), timeout=30)
        except asyncio.TimeoutError:
            worker.task.cancel()
            log.warning("worker %s did not stop within 30 s; cancelled", key)
        self.workers.pop(key, None)

    async def _run_worker(self, shard: Shard, worker: _Worker) -> None:
        cam, stop = shard.camera, worker.stop
        counts = self.counts.setdefault(cam.id, CameraCounts())
        sampler = Sampler(self.epoch_ms / 1000, cam.inference_fps, shard.index, shard.shards)
        # Start at the handover slot, or now: a worker that starts late never replays the past.
        sampler.last_slot = (worker.first_slot if worker.first_slot is not None else sampler.slot_of(time.time())) - 1
        backoff = self.spec.producer.reconnect_initial_seconds
        seed = sum(cam.id.encode())
        while not stop.is_set():
            source = None
            try:
                source = await asyncio.to_thread(open_source, source_url(cam), epoch_s=self.epoch_ms / 1000, seed=seed, display_name=redact(cam.source))
                counts.source_up = True
                metrics.source_up().set(1, tags={"camera": cam.id})
                log.info("camera %s: source %s open", cam.id, source.name)
                while not stop.is_set() and (worker.end_slot is None or sampler.next_slot() < worker.end_slot):
                    await self._one_frame(shard, source, sampler, counts)
                    backoff = self.spec.producer.reconnect_initial_seconds
                if worker.end_slot is not None:
                    await stop.wait()
            except SourceError as err:
                self._source_down(cam, counts, str(err), backoff)
                await _wait(stop, backoff)
                backoff = min(backoff * 2, self.spec.producer.reconnect_max_seconds)
            finally:
                if source is not None:
                    await asyncio.to_thread(source.close)
        counts.skipped_slots += sampler.skipped_slots
        if self.pending:
            await asyncio.wait(list(self.pending))

    def _source_down(self, cam: CameraSpec, counts: CameraCounts, error: str, backoff: float) -> None:
        counts.source_up = False
        counts.reconnects += 1
        counts.last_error = error
        metrics.source_up().set(0, tags={"camera": cam.id})
        log.error("camera %s: %s; retrying in %.1f s", cam.id, error, backoff)

    async def _one_frame(self, shard: Shard, source: FrameSource, sampler: Sampler, counts: CameraCounts) -> None:
        cam = shard.camera
        if not source.live:  # wait here, not in a thread: 150 cameras must not hold 150 pool threads asleep
            await asyncio.sleep(max(0.0, sampler.next_due() - time.time()))
        captured = await asyncio.get_running_loop().run_in_executor(self.capture_pool, self._capture_and_store, shard, source, sampler)
        if captured is None:
            return
        msg, error = captured
        counts.produced += 1
        metrics.frames_produced().inc(tags={"camera": cam.id})
        if error is not None:
            counts.failed[error] += 1
            metrics.frames_failed().inc(tags={"camera": cam.id, "reason": error})
            return
        kafka = await self._producer()
        partition = msg.seq % self.spec.kafka.partitions_per_topic
        try:
            with stage("produce"):  # send() only appends to the client's batch unless it must wait for metadata
                fut = await kafka.send(self.spec.topic(cam.id), msg.to_json(), key=cam.id.encode(), partition=partition)
        except Exception as err:  # noqa: BLE001 - any send failure is counted with its type
            self._announce_failed(cam.id, counts, err)
            return
        self.pending.add(fut)
        fut.add_done_callback(lambda f: self._announced(cam.id, counts, f))

    def _capture_and_store(self, shard: Shard, source: FrameSource, sampler: Sampler) -> tuple[FrameMessage, str | None] | None:
        with stage("capture"):
            t, frame = source.read_due(sampler.next_due())
        seq = sampler.accept(t)
        if seq is None:
            return None
        h, w = frame.shape[:2]
        msg_fields = dict(cameraId=shard.camera.id, seq=seq, epochMs=self.epoch_ms, captureTsMs=int(t * 1000), width=w, height=h)
        with stage("encode"):
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.spec.bucket.jpeg_quality])
        key = frame_key(shard.camera.id, self.epoch_ms, seq)
        if not ok:
            return FrameMessage(uri=self.bucket.uri_of(key), **msg_fields), "encode_error"
        try:
            with stage("bucket put"):
                uri = self.bucket.put(key, jpeg.tobytes())
        except BucketError as err:
            log.warning("camera %s frame %d: %s", shard.camera.id, seq, err)
            return FrameMessage(uri=self.bucket.uri_of(key), **msg_fields), err.reason
        self._maybe_sweep(shard)
        return FrameMessage(uri=uri, **msg_fields), None

    def _maybe_sweep(self, shard: Shard) -> None:
        if shard.index != 0:
            return
        now = time.monotonic()
        if now - self.last_sweep.get(shard.camera.id, 0.0) < self.spec.bucket.sweep_interval_seconds:
            return
        self.last_sweep[shard.camera.id] = now
        try:
            self.bucket.sweep(shard.camera.id, self.spec.bucket.ttl_seconds)
        except BucketError as err:
            log.warning("camera %s: frame sweep failed: %s", shard.camera.id, err)

    def _announced(self, camera_id: str, counts: CameraCounts, fut: asyncio.Future) -> None:
        self.pending.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            self._announce_failed(camera_id, counts, fut.exception() if not fut.cancelled() else asyncio.CancelledError())
        else:
            counts.announced += 1

    def _announce_failed(self, camera_id: str, counts: CameraCounts, err: BaseException | None) -> None:
        counts.failed["kafka_send_failed"] += 1
        metrics.frames_failed().inc(tags={"camera": camera_id, "reason": "kafka_send_failed"})
        log.error("camera %s: announcing a frame failed: %s", camera_id, type(err).__name__)

    def stats(self) -> dict[str, dict]:
        return {
            cid: {
                "produced": c.produced,
                "announced": c.announced,
                "failed": dict(c.failed),
                "skippedSlots": c.skipped_slots,
                "reconnects": c.reconnects,
                "sourceUp": c.source_up,
                "lastError": c.last_error,
            }
            for cid, c in self.counts.items()
        }

    async def stop(self) -> dict[str, dict]:
        """Stop every worker, wait for all announcements, close Kafka; returns the final stats."""
        for key in list(self.workers):
            await self._stop_worker(key)
        if self.pending:
            await asyncio.wait(list(self.pending), timeout=60)
        if self.kafka is not None:
            await self.kafka.stop()
            self.kafka = None
        return self.stats()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass
