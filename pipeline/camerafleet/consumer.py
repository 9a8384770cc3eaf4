"""Consumer actors: one Kafka consumer group over all camera topics, micro-batches to the inference
service, results out, offsets committed only after the results of those frames are written.

Every message ends in exactly one outcome, counted by camera and reason: `processed`, `dropped`
(stale: older than maxFrameAgeMs, a real-time system prefers fresh frames to a backlog) or `failed`
(malformed message, unknown camera, frame missing or corrupt, model error, inference unreachable, or
the producer's own reason when it could not store the frame). Each result carries the message's Kafka
position (topic, partition, offset), by which the run's ledger tells a redelivery from a new frame.
Failed messages also go to the dead-letter topic. If results cannot be written, the batch's offsets are
rewound and the batch is retried: delivery is at-least-once, never at-most-once.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass

import ray
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from camerafleet import actor_metrics as metrics
from camerafleet.api.manifest import FleetSpec
from camerafleet.api.messages import FrameMessage, InferenceReply, KafkaPosition, MessageError, ResultRecord, parse_frame_message, past
from camerafleet.api.outcomes import Reason
from camerafleet.kafka_access import client_options
from camerafleet.logs import configure_logging
from camerafleet.profiling import stage
from camerafleet.removed_cameras import DRAIN_MOST_S, UNREAD_LOOK_S, RemovedCameras
from camerafleet.results_out import OutcomeTally, ResultsOut
from camerafleet.stats import ConsumerStats
from camerafleet.topics import KafkaUnavailable, unread_topics
from camerafleet.transport import InferenceUnavailable, Transport, make_transport

log = logging.getLogger("camerafleet.consumer")

INFER_RETRIES = 3
# Lag is read from the group and set as one gauge per partition at most this often, not on every turn of the
# consume loop, which came every batchWaitMs (20 ms) with nothing to read: an idle consumer of the bench's 8 cameras
# used 0.029 of a core, 0.019 since (with IDLE_WAIT_MS). Progress and pool scaling look every 5 s.
LAG_LOOK_S = 1.0
IDLE_WAIT_MS = 250  # how long a read waits for a first record when no batch is in flight (it returns on the first)
EXPIRED_WRITE_CHUNK = 5000  # expired announcements written per results write: a day's gap goes in bounded pieces


@dataclass
class _Batch:
    """A micro-batch being processed; its offsets are committed once it and every earlier batch are done."""

    first: dict[TopicPartition, int]
    next: dict[TopicPartition, int]
    task: asyncio.Task


class _FinishBatchesBeforeRevoke(ConsumerRebalanceListener):
    """Lets the batches in hand be written and committed before their partitions move to another member."""

    def __init__(self, actor: ConsumerActor):
        self.actor = actor

    async def on_partitions_revoked(self, revoked):
        await self.actor.settle(wait_all=True)
        for tp in revoked:
            self.actor.expected.pop(tp, None)

    async def on_partitions_assigned(self, assigned):
        await self.actor.expect_from_committed(assigned)


@ray.remote(max_restarts=-1, max_task_retries=0)
class ConsumerActor:
    def __init__(self, spec_json: str, results_log: str, fleet: str):
        configure_logging()
        metrics.bind_fleet(fleet)
        self.spec = FleetSpec.model_validate_json(spec_json)
        self.out = ResultsOut(results_log if self.spec.results.local_log else None)
        self.tally = OutcomeTally()
        self.settle_lock = asyncio.Lock()
        self.inflight: deque[_Batch] = deque()
        self.consumer: AIOKafkaConsumer | None = None
        self.transport: Transport | None = None
        self.task: asyncio.Task | None = None
        self.stopping = False
        self.lag: dict[str, int] = {}
        self.lag_looked = 0.0  # when lag was last read (time.monotonic())
        self.behind: set[str] = set()  # topics with a partition here not read to its high watermark
        self.expected: dict[TopicPartition, int] = {}  # the next offset each partition here should give (`_expired`)
        self.removed = RemovedCameras()
        self.unread_looked = 0.0  # when removed cameras' unread topics were last looked for (time.monotonic())
        self.incarnation = uuid.uuid4().hex
        self.born = time.monotonic()
        self.batch_seconds = 0.0  # summed over batches: the time integral of the batches in flight
        self.loop_restarts = 0
        self.last_error: str | None = None

    @property
    def group(self) -> AIOKafkaConsumer:
        """The consumer-group member (after `start`)."""
        assert self.consumer is not None, "start() first"
        return self.consumer

    async def start(self, spec_json: str | None = None) -> None:
        """Join the consumer group and start consuming, with the runner's current spec (idempotent; called again
        after an actor restart: Ray restarts an actor with its constructor's arguments, the spec it started with,
        which may lack cameras added since)."""
        if spec_json is not None:
            await self.update_spec(spec_json)
        if self.task is not None:
            return
        self.transport = make_transport(self.spec)
        bootstrap = self.spec.kafka.bootstrap_servers
        await self.out.start(bootstrap)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=self.spec.kafka.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            max_poll_interval_ms=300_000,
            **client_options(),
        )
        await self.consumer.start()
        await self._find_unread_removed_cameras()
        self._subscribe()
        self.task = asyncio.create_task(self._supervised())

    def _camera_of(self) -> dict[str, str]:
        """topic -> camera of every topic read: the fleet's cameras and those removed but not drained yet."""
        return self.removed.cameras() | {self.spec.topic(c.id): c.id for c in self.spec.cameras}

    def _subscribe(self) -> None:
        self.group.subscribe(sorted(self._camera_of()), listener=_FinishBatchesBeforeRevoke(self))

    async def update_spec(self, spec_json: str) -> None:
        """Apply a changed manifest: new cameras are subscribed, limits take effect on the next batch, a removed
        camera's topic is read until drained (`removed_cameras.py`)."""
        old_topics = self._camera_of()
        before = {self.spec.topic(c.id): c.id for c in self.spec.cameras}
        self.spec = FleetSpec.model_validate_json(spec_json)
        self.removed.edit(before, {self.spec.topic(c.id): c.id for c in self.spec.cameras}, time.monotonic())
        if self.consumer is not None and self._camera_of().keys() != old_topics.keys():
            self._subscribe()

    async def _find_unread_removed_cameras(self) -> list[str]:
        """Topics of removed cameras with frames the group never answered, now drained; see `removed_cameras`."""
        kafka = self.spec.kafka
        fleet = {self.spec.topic(c.id) for c in self.spec.cameras}
        self.unread_looked = time.monotonic()
        try:
            topics = await unread_topics(kafka.bootstrap_servers, kafka.consumer_group, kafka.topic_prefix, besides=fleet)
        except KafkaUnavailable as err:
            log.warning("could not look for removed cameras' unread frames: %s", err)
            return []
        return self.removed.unread({t: t.removeprefix(kafka.topic_prefix) for t in topics}, time.monotonic())

    def _leave_drained_topics(self) -> None:
        drained = self.removed.settle(self.behind, time.monotonic())
        for d in drained:
            if d.complete:
                log.info("camera %s was removed: its topic %s is read to its end and left", d.camera, d.topic)
            else:
                self._note_error(
                    f"camera {d.camera} was removed {DRAIN_MOST_S / 60:.0f} min ago and its topic {d.topic} still gets frames: "
                    "left, the rest unread (is a producer still running with the old manifest?)"
                )
        if drained:
            self._subscribe()

    async def _supervised(self) -> None:
        """The consume loop, started again when it dies of an unexpected error: the group member would keep
        heartbeating with no loop behind it, its partitions never reassigned and nothing alerting. It resumes
        from the committed offsets, so what was in flight is read again (at-least-once), and counts it."""
        resume = False
        while True:
            try:
                if resume:
                    await self._resume_from_committed()
                await self._loop()
                return
            except Exception as err:  # noqa: BLE001 - whatever killed it, the partitions must keep moving
                if self.stopping:
                    self._note_error(f"the consume loop died while stopping: {type(err).__name__}: {err}")
                    return
                self.loop_restarts += 1
                metrics.consumer_loop_restarts().inc()
                self._note_error(f"the consume loop died ({type(err).__name__}: {err}); starting it again from the committed offsets")
                resume = True  # a resume that fails (a rebalance took the partitions meanwhile) is tried again
                await asyncio.sleep(1)

    async def _resume_from_committed(self) -> None:
        await asyncio.gather(*(b.task for b in self.inflight), return_exceptions=True)
        self.inflight.clear()
        if assigned := list(self.group.assignment()):
            committed = await self.group.seek_to_committed(*assigned)
            if never := [tp for tp, offset in committed.items() if not offset]:
                await self.group.seek_to_beginning(*never)
            self.expected = {tp: offset for tp, offset in committed.items() if offset is not None and offset >= 0}

    async def expect_from_committed(self, assigned: set[TopicPartition]) -> None:
        """Where reading each newly assigned partition resumes: its committed offset (never committed: wherever)."""
        for tp in assigned:
            try:
                committed = await self.group.committed(tp)
            except KafkaError as err:  # not known: no gap is looked for on that partition until it is
                log.warning("could not read the committed offset of %s/%s: %s", tp.topic, tp.partition, err)
                committed = None
            if committed is None or committed < 0:
                self.expected.pop(tp, None)
            else:
                self.expected[tp] = committed

    async def _expired(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> dict[TopicPartition, range]:
        """Per partition, the announcements between where reading should have resumed and the batch's first record
        that the topic's retention deleted unread (aiokafka moves to the log's start without a word: a fleet stopped
        for longer than the topic keeps frames lost them uncounted). Only offsets below the log's start count: a
        batch that starts later for another reason (a race with a rebalance) is not taken for a deletion."""
        suspects = {tp: recs[0].offset for tp, recs in batch.items() if recs[0].offset > self.expected.get(tp, recs[0].offset)}
        expected = {tp: self.expected[tp] for tp in suspects}
        for tp, recs in batch.items():
            self.expected[tp] = recs[-1].offset + 1
        if not suspects:
            return {}
        starts = await self.group.beginning_offsets(list(suspects))
        gaps = {tp: range(expected[tp], min(first, starts[tp])) for tp, first in suspects.items()}
        return {tp: gap for tp, gap in gaps.items() if gap}

    async def _write_expired(self, gaps: dict[TopicPartition, range]) -> None:
        """Each expired announcement's outcome, by its Kafka position: dropped, `expired_unread`."""
        camera_of = self._camera_of()
        where = ", ".join(f"{tp.topic}/{tp.partition} {gap.start}..{gap.stop - 1}" for tp, gap in gaps.items())
        self._note_error(
            f"{sum(map(len, gaps.values()))} announcements were deleted by their topic's retention before any consumer read them: {where}"
        )
        records = (
            ResultRecord.expired(camera_of.get(tp.topic, tp.topic), KafkaPosition(topic=tp.topic, partition=tp.partition, offset=offset))
            for tp, gap in gaps.items()
            for offset in gap
        )
        while chunk := list(itertools.islice(records, EXPIRED_WRITE_CHUNK)):
            await self.out.write(chunk, self.spec.kafka)
            self.tally.add(chunk)

    async def _loop(self) -> None:
        while not self.stopping:
            c = self.spec.consumer
            await self.settle(wait_all=False)
            self._leave_drained_topics()
            if time.monotonic() - self.unread_looked >= UNREAD_LOOK_S and await self._find_unread_removed_cameras():
                self._subscribe()
            if len(self.inflight) >= c.max_in_flight_batches:
                await asyncio.wait([self.inflight[0].task])
                continue
            try:
                # A read returns on its first record: waiting longer while nothing is in flight delays no frame, and
                # spares 50 empty loop turns a second; with batches in flight the loop comes back soon to commit them.
                wait_ms = max(c.batch_wait_ms, 1 if self.inflight else IDLE_WAIT_MS)
                batch = await self.group.getmany(timeout_ms=wait_ms, max_records=c.max_batch_frames)
            except KafkaError as err:
                self._note_error(f"fetch failed: {err}")
                await asyncio.sleep(1)
                continue
            if batch:
                if expired := await self._expired(batch):
                    self.inflight.append(
                        _Batch(
                            first={tp: gap.start for tp, gap in expired.items()},
                            next={tp: gap.stop for tp, gap in expired.items()},
                            task=asyncio.create_task(self._write_expired(expired)),
                        )
                    )
                self.inflight.append(
                    _Batch(
                        first={tp: recs[0].offset for tp, recs in batch.items()},
                        next={tp: recs[-1].offset + 1 for tp, recs in batch.items()},
                        task=asyncio.create_task(self._handle_batch(batch)),
                    )
                )
        await self.settle(wait_all=True)

    async def settle(self, wait_all: bool) -> None:
        """Commit the offsets of finished batches, in order. If a batch could not write its results,
        rewind its partitions so it is read again (at-least-once), after the later batches finish."""
        async with self.settle_lock:
            while self.inflight and (wait_all or self.inflight[0].task.done()):
                head = self.inflight[0]
                await asyncio.wait([head.task])
                failure = head.task.exception()
                if failure is not None:
                    await self._rewind(failure)
                    return
                self.inflight.popleft()
                try:
                    await self.group.commit(head.next)
                except (CommitFailedError, IllegalStateError) as err:
                    # The partitions moved to another member: it re-reads them, results may repeat (at-least-once).
                    log.warning("commit failed during a rebalance; the new owner re-reads those frames (at-least-once): %s", err)
            if wait_all or time.monotonic() - self.lag_looked >= LAG_LOOK_S:
                await self._update_lag()

    async def _rewind(self, err: BaseException) -> None:
        self._note_error(f"writing results failed, re-reading the batch: {type(err).__name__}: {err}")
        await asyncio.wait([b.task for b in self.inflight])
        first: dict[TopicPartition, int] = {}
        for b in self.inflight:
            for tp, off in b.first.items():
                first[tp] = min(off, first.get(tp, off))
        self.inflight.clear()
        assigned = self.group.assignment()
        for tp, off in first.items():
            if tp in assigned:
                self.group.seek(tp, off)
                self.expected[tp] = off
        await asyncio.sleep(1)

    def _note_error(self, text: str) -> None:
        self.last_error = text
        log.error(text)

    async def _handle_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        began = time.monotonic()  # the batch's seconds in flight: the consumer's busy share
        try:
            spec = self.spec
            camera_of = self._camera_of()
            now_ms = int(time.time() * 1000)
            records: list[ResultRecord] = []
            live: list[tuple[FrameMessage, KafkaPosition]] = []
            with stage("consume", frames=sum(len(m) for m in batch.values())):
                for tp, msgs in batch.items():
                    for rec in msgs:
                        outcome = self._before_inference(spec, camera_of, tp.topic, rec, now_ms)
                        if isinstance(outcome, ResultRecord):
                            records.append(outcome)
                        else:
                            live.append(outcome)
            if live:
                # One request per model batch's worth of frames, all at once: a frame's result is taken when its own
                # request answers, not after the slowest of the micro-batch (which would add batches to its latency).
                size = min((m.batching.max_batch_size for m in spec.models), default=len(live))
                chunks = [live[i : i + size] for i in range(0, len(live), size)]
                for chunk, (replies, done_ms) in zip(chunks, await asyncio.gather(*(self._infer(chunk) for chunk in chunks)), strict=True):
                    records += [
                        ResultRecord.of_frame(msg, at, done_ms, reply=reply) for (msg, at), reply in zip(chunk, replies, strict=True)
                    ]
            await self.out.write(records, spec.kafka)
            self.tally.add(records)
        finally:
            self.batch_seconds += time.monotonic() - began

    def _before_inference(
        self, spec: FleetSpec, camera_of: dict[str, str], topic: str, rec: ConsumerRecord, now_ms: int
    ) -> ResultRecord | tuple[FrameMessage, KafkaPosition]:
        """The outcome of a message decided before inference (malformed, foreign, failed at the producer,
        stale), or the frame and its position when it goes to the models. A message that is not its topic's
        camera's is counted under that camera: an id read from the message would add a metric label and a
        ledger row per message."""
        at = KafkaPosition(topic=rec.topic, partition=rec.partition, offset=rec.offset)
        topic_camera = camera_of.get(topic, topic)  # the group reads the fleet's topics only
        try:
            msg = parse_frame_message(rec.value)
        except MessageError as err:
            return ResultRecord.unreadable(topic_camera, at, str(err), rec.value)
        if msg.camera_id != camera_of.get(topic):
            text = f"camera {msg.camera_id!r} is not a camera of this fleet on topic {topic}"
            foreign = ResultRecord.of_frame(msg, at, now_ms, reason=Reason.UNKNOWN_CAMERA, message=text)
            return foreign.model_copy(update={"camera_id": topic_camera})
        if msg.producer_error is not None:  # sampled but never stored: announced so it is not lost silently
            return ResultRecord.of_frame(msg, at, now_ms, reason=msg.producer_error, message="the producer could not store this frame")
        if past(msg.deadline_ms(spec.consumer.max_frame_age_ms), now_ms):
            return ResultRecord.of_frame(msg, at, now_ms, reason=Reason.STALE, message="older than maxFrameAgeMs when consumed")
        return msg, at

    async def _infer(self, frames: list[tuple[FrameMessage, KafkaPosition]]) -> tuple[list[InferenceReply], int]:
        """The frames' replies (asked again while the service is unavailable), and when they came (ms since the epoch)."""
        assert self.transport is not None
        references = [m.reference() for m, _ in frames]
        delay = 0.5
        for attempt in range(INFER_RETRIES + 1):
            try:
                replies = await self.transport.infer(references)
            except TimeoutError:
                replies = [InferenceReply.ended(Reason.INFERENCE_TIMEOUT, "no answer within inferenceTimeoutSeconds")] * len(frames)
            except InferenceUnavailable as err:
                if attempt < INFER_RETRIES:
                    log.warning("inference unavailable (%s), retrying in %.1f s", err, delay)
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                replies = [InferenceReply.ended(Reason.INFERENCE_UNAVAILABLE, str(err))] * len(frames)
            return replies, int(time.time() * 1000)
        raise AssertionError("unreachable")

    async def _update_lag(self) -> None:
        self.lag_looked = time.monotonic()
        assigned = self.group.assignment()
        behind: set[str] = set()
        for tp in assigned:
            high = self.group.highwater(tp)
            if high is None:
                behind.add(tp.topic)
                continue
            lag = max(0, high - await self.group.position(tp))
            if lag:
                behind.add(tp.topic)
            self.lag[f"{tp.topic}/{tp.partition}"] = lag
            metrics.consumer_lag().set(lag, tags={"topic": tp.topic, "partition": str(tp.partition)})
        self.behind = behind
        # Partitions another consumer took over are its to report: counted twice otherwise.
        for key in set(self.lag) - {f"{tp.topic}/{tp.partition}" for tp in assigned}:
            del self.lag[key]
            topic, partition = key.rsplit("/", 1)
            metrics.consumer_lag().forget({"topic": topic, "partition": partition})

    def stats(self) -> ConsumerStats:
        return ConsumerStats(
            cameras=copy.deepcopy(self.tally.counts),
            latencies_ms=list(self.tally.latencies_ms),
            lag=dict(self.lag),
            batches=self.tally.batches,
            loop_restarts=self.loop_restarts,
            last_error=self.last_error,
            incarnation=self.incarnation,
            busy_seconds=self.batch_seconds / self.spec.consumer.max_in_flight_batches,
            alive_seconds=time.monotonic() - self.born,
            node=ray.get_runtime_context().get_node_id(),
        )

    async def stop(self) -> ConsumerStats:
        """Finish the batch in hand, commit, leave the group."""
        self.stopping = True
        if self.task is not None:
            await asyncio.wait([self.task], timeout=60)
        if self.consumer is not None:
            await self.consumer.stop()
        await self.out.close()
        if self.transport is not None:
            await self.transport.close()
        return self.stats()
