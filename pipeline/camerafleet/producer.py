"""Producer actors: capture, sample, JPEG-encode, store in the bucket, announce on the camera's topic.

Each actor runs one worker per camera shard it is assigned. Blocking work (decode, encode, bucket put)
runs in a thread, one hop per frame; Kafka sends are batched by the async client. A worker that is
unassigned finishes the frame in hand and waits for its announcements, so resizing the pool loses no
sampled frame. A failing source is reopened with exponential backoff and reported, never abandoned.

Every sampled frame is announced on Kafka, also one that could not be stored (it carries the reason and
ends `failed`), so the run's ledger can count frames from what reached Kafka, which survives a producer
crash. While Kafka does not acknowledge (broker down), announcements are retried with backoff, up to
`producer.maxBufferedFrames` per camera; a frame sampled beyond that is dropped and counted
(`kafka_unavailable`), never lost silently. The client is idempotent, so its own retries add no duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import uuid
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import cv2
import ray

from camerafleet import actor_metrics as metrics
from camerafleet.admission import Admission, SlotCredit
from camerafleet.announcer import Announcer, Refused
from camerafleet.api.manifest import CameraSpec, FleetSpec
from camerafleet.api.messages import FrameMessage
from camerafleet.api.outcomes import Reason
from camerafleet.bucket import BucketError, FrameBucket, frame_key, open_bucket
from camerafleet.logs import configure_logging
from camerafleet.profiling import stage
from camerafleet.sources import FrameSource, Grid, Sampler, SourceError, SourceProblem, redact
from camerafleet.sources.opening import open_source
from camerafleet.stats import ProducerCameraStats, ProducerStats
from camerafleet.tasks import cancel_until_done

log = logging.getLogger("camerafleet.producer")


class ShardKey(NamedTuple):
    """Which share of a camera a producer worker runs: every `shards`-th slot from `number` (what the runner
    plans and sends; it sorts and compares as a tuple)."""

    camera_id: str
    number: int  # not `index`, which a tuple has as a method
    shards: int

    def __str__(self) -> str:
        return f"{self.camera_id}#{self.number}/{self.shards}"


@dataclass(frozen=True)
class Shard:
    """One producer worker's share of a camera: every `shards`-th sampled slot starting at `index`."""

    camera: CameraSpec
    index: int
    shards: int

    @property
    def key(self) -> ShardKey:
        return ShardKey(self.camera.id, self.index, self.shards)


def plan_shards(spec: FleetSpec, actors: int) -> list[list[Shard]]:
    """Spread the enabled cameras' shards over `actors` actors, round-robin (pure, deterministic)."""
    plan: list[list[Shard]] = [[] for _ in range(actors)]
    if actors == 0:
        return plan
    shards = [Shard(c, i, c.producer_shards) for c in spec.cameras if c.enabled for i in range(c.producer_shards)]
    for n, shard in enumerate(shards):
        plan[n % actors].append(shard)
    return plan


STALL_WARNING_S = 10.0  # a frame's capture and store taking this long is logged (and again each time as long)
STOP_FLUSH_TIMEOUT_S = 30.0  # at stop, how long announcements Kafka has not taken yet may still take


@dataclass
class CameraCounts(ProducerCameraStats):
    """One camera's counters in this actor, and its announcements Kafka has not acknowledged yet."""

    pending: set[asyncio.Task[None]] = field(default_factory=set)

    def note_source(self, source: FrameSource) -> None:
        """Take the source's decoding counts and modes (live cameras)."""
        taken = source.counts.take()
        self.packets_received += taken.packets
        self.frames_decoded += taken.decoded
        self.decode_mode, self.time_source = source.decode_mode, source.time_source

    def snapshot(self) -> ProducerCameraStats:
        copied = {f.name: getattr(self, f.name) for f in fields(ProducerCameraStats)}
        counters = {
            "dropped": Counter(self.dropped),
            "failed": Counter(self.failed),
            "announced_failed": Counter(self.announced_failed),
            "source_problems": Counter(self.source_problems),
        }
        return ProducerCameraStats(**{**copied, **counters, "buffered": len(self.pending)})


def source_url(camera: CameraSpec) -> str:
    if camera.source_secret_env:
        url = os.environ.get(camera.source_secret_env)
        if not url:
            raise SourceError(f"camera {camera.id}: environment variable {camera.source_secret_env} (its source URL) is not set")
        return url
    return camera.source


@dataclass
class _Worker:
    """A running shard of `camera` (as the spec said when it started) on the camera's `grid`: produces slots from
    `first_slot` (None: from now) until `end_slot` or `stop`."""

    camera: CameraSpec
    grid: Grid
    first_slot: int | None = None
    end_slot: int | None = None
    leaving: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


@ray.remote(max_restarts=-1, max_task_retries=0)
class ProducerActor:
    """A pool member. Methods are called by the runner; stats are polled."""

    def __init__(self, spec_json: str, epoch_ms: int, fleet: str):
        configure_logging()
        metrics.bind_fleet(fleet)
        self.spec = FleetSpec.model_validate_json(spec_json)
        self.epoch_ms = epoch_ms
        self.bucket: FrameBucket = open_bucket(self.spec.bucket)
        self.kafka = Announcer(self.spec.kafka.bootstrap_servers)
        self.workers: dict[ShardKey, _Worker] = {}
        self.born = time.monotonic()
        self.counts: dict[str, CameraCounts] = {}
        self.pending: set[asyncio.Task[None]] = set()
        # Ray restarts a crashed actor with a fresh state; what the lost one had not announced yet shows as
        # missed slots of its cameras, and the summary names this restart as their reason.
        with warnings.catch_warnings():  # Ray's property uses its own deprecated actor_id inside
            warnings.simplefilter("ignore")
            self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        self.incarnation = uuid.uuid4().hex[:12]
        # A live camera holds a thread while it waits in socket reads (no spinning); threads are created only as needed.
        self.capture_pool = ThreadPoolExecutor(max_workers=1024, thread_name_prefix="capture")
        self.last_sweep: dict[str, float] = {}
        self.admission = Admission(self.spec)

    async def assign(self, spec_json: str, shards: list[ShardKey], grids: dict[str, Grid], handover_s: float | None = None) -> None:
        """Run exactly these (camera id, shard index, shards) workers, on the cameras' sampling grids as the runner
        keeps them (`CameraGrids`). With a handover time, new workers take the slots from that time on and workers
        leaving this actor produce the slots before it, so a shard moving between actors is neither interrupted
        nor doubled."""
        self.spec = FleetSpec.model_validate_json(spec_json)
        self.admission.update_spec(self.spec)
        self.admission.start()
        cameras = {c.id: c for c in self.spec.cameras}
        wanted = {key: Shard(cameras[key.camera_id], key.number, key.shards) for key in shards}
        try:
            await asyncio.wait_for(self.kafka.connect(), timeout=10)
        except Exception as err:  # noqa: BLE001 - workers start anyway: they buffer until Kafka answers
            log.warning(
                "Kafka at %s is not reachable yet (%s); sampling anyway, announcements wait", self.kafka.bootstrap, type(err).__name__
            )
        # A camera whose settings changed (its rate, its source) gets a new worker, handed over like a moving shard.
        replaced = {
            k: w
            for k, w in self.workers.items()
            if k in wanted and not w.leaving and (w.camera != wanted[k].camera or w.grid != grids[k.camera_id])
        }
        leaving = [(k, w) for k, w in self.workers.items() if k not in wanted and not w.leaving] + list(replaced.items())
        for key, shard in wanted.items():
            if key not in self.workers or key in replaced:
                grid = grids[key.camera_id]
                worker = _Worker(shard.camera, grid, first_slot=None if handover_s is None else grid.start_at(handover_s))
                worker.task = asyncio.create_task(self._run_worker(shard, worker))
                self.workers[key] = worker
        await asyncio.gather(*(self._stop_worker(k, w, handover_s) for k, w in leaving))

    async def _stop_worker(self, key: ShardKey, worker: _Worker, handover_s: float | None = None) -> None:
        worker.leaving = True
        if handover_s is not None:
            worker.end_slot = worker.grid.start_at(handover_s)
            await asyncio.sleep(max(0.0, handover_s - time.time()))
        worker.stop.set()
        assert worker.task is not None
        try:
            await asyncio.wait_for(asyncio.shield(worker.task), timeout=30)
        except TimeoutError:
            worker.task.cancel()
            log.warning("worker %s did not stop within 30 s; cancelled", key)
        if self.workers.get(key) is worker:  # not replaced by a worker with the camera's new settings
            del self.workers[key]
        if not any(k.camera_id == key.camera_id for k in self.workers):
            metrics.source_up().forget({"camera": key.camera_id})  # the camera's new actor reports it now

    async def _run_worker(self, shard: Shard, worker: _Worker) -> None:
        cam, stop = shard.camera, worker.stop
        counts = self.counts.setdefault(cam.id, CameraCounts())
        sampler = Sampler(worker.grid, shard.index, shard.shards)
        # Start at the handover slot, or now: a worker that starts late never replays the past. Both are never before the
        # grid's first slot (the run's epoch plus the camera's phase, which may still be ahead, or its last rate change).
        start = worker.first_slot if worker.first_slot is not None else worker.grid.fresh_start(time.time())
        sampler.last_slot = start - 1
        backoff = self.spec.producer.reconnect_initial_seconds
        jitter = random.Random()
        seed = sum(cam.id.encode())
        skipped_seen = 0
        credit = SlotCredit()
        while not stop.is_set():
            source = None
            try:
                source = await asyncio.to_thread(
                    open_source,
                    source_url(cam),
                    epoch_s=self.epoch_ms / 1000,
                    inference_fps=cam.inference_fps,
                    stall_timeout_s=cam.stall_timeout_seconds,
                    max_frame_age_s=self.spec.consumer.max_frame_age_ms / 1000,
                    seed=seed,
                    display_name=redact(cam.source),
                )
                counts.source_up = True
                metrics.source_up().set(1, tags={"camera": cam.id})
                log.info("camera %s: source %s open", cam.id, source.name)
                while not stop.is_set() and (worker.end_slot is None or sampler.next_slot() < worker.end_slot):
                    await self._one_frame(shard, source, sampler, counts, stop, credit)
                    counts.skipped_slots += sampler.skipped_slots - skipped_seen
                    skipped_seen = sampler.skipped_slots
                    backoff = self.spec.producer.reconnect_initial_seconds
                if worker.end_slot is not None:
                    await stop.wait()
            except Exception as raised:  # noqa: BLE001 - a camera is retried, never abandoned: a bug must not end its worker
                # Only the redacted text: an error from a capture library may quote the source URL and its credentials.
                err = (
                    raised if isinstance(raised, SourceError) else SourceError(f"unexpected {type(raised).__name__}: {redact(str(raised))}")
                )
                if source is not None:  # what it decoded before it failed stays reported
                    counts.note_source(source)
                counts.down_slots += sampler.miss_until(time.time())
                # Refused credentials are retried at the slowest pace: soon would not help, and may lock the account.
                if err.problem == SourceProblem.AUTH_FAILED:
                    backoff = self.spec.producer.reconnect_max_seconds
                wait_s = reconnect_wait(backoff, jitter)
                self._source_down(cam, counts, err, wait_s)
                await _wait(stop, wait_s)
                counts.down_slots += sampler.miss_until(time.time())
                backoff = min(backoff * 2, self.spec.producer.reconnect_max_seconds)
            finally:
                if source is not None:
                    await asyncio.to_thread(source.close)
        counts.skipped_slots += sampler.skipped_slots - skipped_seen
        if counts.pending:
            await asyncio.wait(list(counts.pending))

    def _source_down(self, cam: CameraSpec, counts: CameraCounts, error: SourceError, wait_s: float) -> None:
        counts.source_up = False
        counts.reconnects += 1
        counts.last_error = str(error)
        counts.last_problem = error.problem
        counts.source_problems[error.problem] += 1
        metrics.source_up().set(0, tags={"camera": cam.id})
        metrics.source_problems().inc(tags={"camera": cam.id, "problem": error.problem.value})
        log.error("camera %s: %s; retrying in %.1f s", cam.id, error, wait_s)

    async def _one_frame(
        self, shard: Shard, source: FrameSource, sampler: Sampler, counts: CameraCounts, stop: asyncio.Event, credit: SlotCredit
    ) -> None:
        cam = shard.camera
        admitted = credit.take(self.admission.share)
        # Wait here, not in a thread: 150 cameras must not hold 150 pool threads asleep. A live source waits
        # in its own reads, except for a shed slot, which is not read at all.
        if not source.live or not admitted:
            await _wait(stop, max(0.0, sampler.next_due() - time.time()))
            if stop.is_set():  # a slow camera's next slot may be many seconds away: stopping does not wait for it
                return
        if not admitted:  # shed before anything is captured, encoded or stored
            counts.shed_slots += sampler.shed_next()
            metrics.slots_shed().inc(tags={"camera": cam.id})
            return
        # Decided before the frame is stored: a frame Kafka cannot take is not written to the bucket either.
        store = len(counts.pending) < self.spec.producer.max_buffered_frames
        work = asyncio.get_running_loop().run_in_executor(self.capture_pool, self._capture_and_store, shard, source, sampler, store)
        waited = 0.0
        while not (await asyncio.wait([work], timeout=STALL_WARNING_S))[0]:  # a stalled camera is reported, not silent
            waited += STALL_WARNING_S
            counts.last_error = f"capturing and storing a frame has not returned for {waited:.0f} s"
            log.warning("camera %s: %s (bucket %s)", cam.id, counts.last_error, self.bucket.root_uri)
        captured = work.result()
        counts.note_source(source)
        if captured is None:
            return
        msg, error = captured
        counts.produced += 1
        metrics.frames_produced().inc(tags={"camera": cam.id})
        if error == Reason.KAFKA_UNAVAILABLE:
            counts.dropped[error] += 1
            metrics.frames_dropped().inc(tags={"camera": cam.id, "reason": error})
            self.kafka.warn(
                f"camera {cam.id}: {len(counts.pending)} frames wait for Kafka (producer.maxBufferedFrames); "
                f"dropping new frames, {counts.dropped[error]} so far"
            )
            return
        if error is not None:
            counts.announced_failed[error] += 1
            msg = msg.model_copy(update={"producer_error": error})
        task = asyncio.create_task(self._announce(cam.id, counts, msg))
        counts.pending.add(task)
        counts.max_buffered = max(counts.max_buffered, len(counts.pending))
        self.pending.add(task)
        task.add_done_callback(counts.pending.discard)
        task.add_done_callback(self.pending.discard)

    async def _announce(self, camera_id: str, counts: CameraCounts, msg: FrameMessage) -> None:
        """Put one frame's announcement on Kafka (retried with backoff while Kafka does not take it); count how it ended."""

        def retrying(err: BaseException) -> None:
            counts.kafka_retries += 1
            self.kafka.warn(
                f"camera {camera_id}: Kafka did not take an announcement ({type(err).__name__}: {err}); "
                f"retrying with backoff, {len(counts.pending)} frames waiting"
            )

        partition = msg.seq % self.spec.kafka.partitions_per_topic
        try:
            await self.kafka.send(self.spec.topic(camera_id), msg.to_json(), camera_id.encode(), partition, retrying)
            counts.announced += 1
        except Refused as err:
            counts.failed[Reason.KAFKA_SEND_FAILED] += 1
            metrics.frames_failed().inc(tags={"camera": camera_id, "reason": Reason.KAFKA_SEND_FAILED.value})
            log.error("camera %s frame %d: Kafka refused the announcement: %s", camera_id, msg.seq, err)
        except asyncio.CancelledError:
            # Stopping while Kafka still has not taken the frame: it is dropped, and counted.
            counts.dropped[Reason.KAFKA_UNAVAILABLE] += 1
            metrics.frames_dropped().inc(tags={"camera": camera_id, "reason": Reason.KAFKA_UNAVAILABLE.value})
            raise

    def _capture_and_store(
        self, shard: Shard, source: FrameSource, sampler: Sampler, store: bool = True
    ) -> tuple[FrameMessage, Reason | None] | None:
        with stage("capture"):
            t, frame = source.read_due(sampler.next_due())
        seq = sampler.accept(t)
        if seq is None:
            return None
        h, w = frame.shape[:2]
        key = frame_key(shard.camera.id, self.epoch_ms, seq)
        msg = FrameMessage(
            camera_id=shard.camera.id,
            seq=seq,
            epoch_ms=self.epoch_ms,
            capture_ts_ms=int(t * 1000),
            uri=self.bucket.uri_of(key),
            width=w,
            height=h,
        )
        if not store:
            return msg, Reason.KAFKA_UNAVAILABLE
        with stage("encode"):
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.spec.bucket.jpeg_quality])
        if not ok:
            return msg, Reason.ENCODE_ERROR
        try:
            with stage("bucket put"):
                uri = self.bucket.put(key, jpeg.tobytes())
        except BucketError as err:
            log.warning("camera %s frame %d: %s", shard.camera.id, seq, err)
            return msg, err.reason
        self._maybe_sweep(shard)
        return msg.model_copy(update={"uri": uri}), None

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

    def stats(self) -> ProducerStats:
        """Per camera: frames sampled, those that never reached Kafka by reason, those announced with a
        producer error, buffered announcements, source health; and this incarnation's identity."""
        return ProducerStats(
            incarnation=self.incarnation,
            restarted=self.restarted,
            cameras={cid: c.snapshot() for cid, c in self.counts.items()},
            admission_share=self.admission.share,
            cpu_seconds=time.process_time(),
            alive_seconds=time.monotonic() - self.born,
            node=ray.get_runtime_context().get_node_id(),
        )

    async def stop(self) -> ProducerStats:
        """Stop every worker, wait for the announcements Kafka has not taken yet (a while), close Kafka;
        returns the final stats. Announcements still waiting after that are dropped and counted."""
        await asyncio.gather(*(self._stop_worker(key, worker) for key, worker in list(self.workers.items())))
        await self.admission.stop()
        if self.pending:
            await asyncio.wait(list(self.pending), timeout=STOP_FLUSH_TIMEOUT_S)
        left = list(self.pending)
        if left:
            await cancel_until_done(left)
            log.error(
                "stopping: Kafka did not take %d announcements within %.0f s; counted as dropped (kafka_unavailable)",
                len(left),
                STOP_FLUSH_TIMEOUT_S,
            )
        await self.kafka.close()
        return self.stats()


def reconnect_wait(backoff: float, rng: random.Random) -> float:
    """Between half the backoff and all of it ("equal jitter"): the cameras of a recorder that went down
    together (a reboot, a switch) come back spread over that window, not all in the same second."""
    return backoff * (0.5 + 0.5 * rng.random())


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
