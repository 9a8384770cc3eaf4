"""Admission at the source: producers take only the frames the pipeline can process before they age out.

Without it an overloaded fleet captures, encodes, stores and announces every slot, and the consumers
then drop most of them as stale: the work spent on a dropped frame is work the frames that could still
make it do not get, and throughput collapses under overload. With it, each producer actor reads the
fleet's backlog from Kafka (messages on the cameras' topics the consumer group has not committed yet,
i.e. not yet consumed or still at the inference service) and how fast it drains, and admits the share
of slots that keeps a new frame's expected wait (backlog / drain rate) under the target. A slot not
admitted is *shed*: nothing is captured, encoded or stored for it, and it is counted as a missed slot.

Kafka is the signal because it is the one thing every producer shares with the consumers, on one
machine and on a cluster (where producers and consumers are separate Ray jobs). Every actor computes
the same share from the same readings, and each camera takes that share of its own slots through a
credit counter, so shedding is spread evenly over the cameras: none is starved while others flow.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from camerafleet.api.manifest import AdmissionMode, FleetSpec
from camerafleet.kafka_access import client_options
from camerafleet.tasks import cancel_until_done

log = logging.getLogger("camerafleet.admission")

DRAIN_WINDOW_S = 4.0  # the drain rate is measured over this long: commits come a batch at a time, seconds apart under load
SHARE_GROWTH = 1.25  # per reading while the backlog is well under target: probes for spare capacity, 0.05 to 1 in ~7 s at 500 ms


@dataclass(frozen=True)
class BacklogReading:
    """The fleet's backlog at one moment, from Kafka."""

    at_s: float  # monotonic time of the reading
    waiting: int  # messages announced and not yet committed by the consumer group
    committed: int  # sum of the group's committed offsets (its growth over time is the drain rate)
    partitions: frozenset[tuple[str, int]]  # partitions summed (a change makes the committed sums incomparable)


@dataclass
class AdmissionController:
    """Turns backlog readings into the share of slots to take (pure; one per producer actor).

    The drain rate is the growth of the group's commits over the last `DRAIN_WINDOW_S` (a drain that stops
    is remembered, fading over one target wait). The backlog that
    clears within the target wait at that rate is the target backlog. Well under it (half), the share
    grows by `SHARE_GROWTH` per reading; otherwise it is set to the rate that brings the backlog to the
    target within one target wait, as a share of the fleet's offered frames per second, never under
    `min_share`. Until a window of readings exists, the share is left as it is."""

    offered_fps: float
    target_wait_s: float
    min_share: float
    share: float = 1.0
    drain_fps: float | None = None
    last_drain_at_s: float | None = None
    readings: deque[BacklogReading] = field(default_factory=deque)

    def update(self, reading: BacklogReading) -> float:
        if self.readings and self.readings[-1].partitions != reading.partitions:
            self.readings.clear()  # partitions came or went: the sums of commits are not comparable
        self.readings.append(reading)
        while len(self.readings) > 2 and reading.at_s - self.readings[1].at_s >= DRAIN_WINDOW_S:
            self.readings.popleft()
        oldest = self.readings[0]
        if reading.at_s - oldest.at_s < DRAIN_WINDOW_S / 2 or self.offered_fps <= 0:
            return self.share
        measured = max(0, reading.committed - oldest.committed) / (reading.at_s - oldest.at_s)
        # A drain that stops (consumers restarting, a rebalance) is remembered, fading over one target wait:
        # a pause of seconds must not shed frames that would still be processed in time, a long one must.
        if self.drain_fps is not None and self.last_drain_at_s is not None:
            remembered = self.drain_fps * math.exp(-(reading.at_s - self.last_drain_at_s) / self.target_wait_s)
            measured = max(measured, remembered)
        self.drain_fps, self.last_drain_at_s = measured, reading.at_s
        target_backlog = self.drain_fps * self.target_wait_s
        if reading.waiting <= target_backlog / 2:
            self.share = min(1.0, self.share * SHARE_GROWTH)
        else:
            # Corrected over two target waits, not one: a backlog just over target is the pipeline's own residence
            # time more often than a trend, and halving the intake for it would idle the models.
            admit_fps = self.drain_fps + (target_backlog - reading.waiting) / (2 * self.target_wait_s)
            self.share = min(1.0, max(self.min_share, admit_fps / self.offered_fps))
        return self.share


@dataclass
class SlotCredit:
    """One camera shard's credit: each slot adds the share; a slot is taken when a whole credit is there.
    Deterministic and even: at share 0.25 every fourth slot is taken, whatever the other cameras do."""

    credit: float = 1.0  # the first slot is always taken

    def take(self, share: float) -> bool:
        self.credit = min(self.credit + share, 1.0 + share)  # no bursts after a long full-share period
        if self.credit >= 1.0 - 1e-9:  # 0.1 added ten times is 0.9999999999999999
            self.credit -= 1.0
            return True
        return False


class KafkaBacklog:
    """Reads the fleet's backlog: end offsets of the cameras' topics and the consumer group's commits."""

    def __init__(self, bootstrap: str, group: str):
        self.bootstrap, self.group = bootstrap, group
        self.admin: AIOKafkaAdminClient | None = None
        self.offsets: AIOKafkaConsumer | None = None
        self.assigned: frozenset[TopicPartition] = frozenset()

    async def read(self, partitions: list[TopicPartition]) -> BacklogReading:
        if self.admin is None or self.offsets is None:
            self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000, **client_options())
            self.offsets = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False, request_timeout_ms=5000, **client_options()
            )
            await self.admin.start()
            await self.offsets.start()
            self.assigned = frozenset()
        if frozenset(partitions) != self.assigned:
            self.offsets.assign(partitions)  # loads these topics' metadata, so end_offsets does not wait for it
            self.assigned = frozenset(partitions)
        committed = await self.admin.list_consumer_group_offsets(self.group, partitions=partitions)
        ends = await self.offsets.end_offsets(partitions)
        waiting = total = 0
        counted = set()
        for tp in partitions:
            done = committed.get(tp)
            if done is None or done.offset < 0 or tp not in ends:
                continue  # the group has not committed here yet: no backlog information
            waiting += max(0, ends[tp] - done.offset)
            total += done.offset
            counted.add((tp.topic, tp.partition))
        return BacklogReading(at_s=time.monotonic(), waiting=waiting, committed=total, partitions=frozenset(counted))

    async def close(self) -> None:
        offsets, admin, self.offsets, self.admin = self.offsets, self.admin, None, None
        for stop in (offsets.stop if offsets else None, admin.close if admin else None):
            if stop is None:
                continue
            try:
                await asyncio.wait_for(stop(), timeout=5)
            except (KafkaError, OSError, TimeoutError):
                pass
            except asyncio.CancelledError:
                # A client stopped after one of its requests timed out can raise CancelledError from a future of
                # its own; let it through only when the caller itself is being cancelled, else its loop would end.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise


class Admission:
    """A producer actor's admission: reads the backlog every `intervalMs` and keeps the current share."""

    def __init__(self, spec: FleetSpec):
        self.spec = spec
        self.controller = self._controller(spec)
        self.backlog = KafkaBacklog(spec.kafka.bootstrap_servers, spec.kafka.consumer_group)
        self.task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    @staticmethod
    def _controller(spec: FleetSpec, share: float = 1.0) -> AdmissionController:
        a = spec.producer.admission
        target_ms = a.target_wait_ms or spec.consumer.max_frame_age_ms / 2
        offered = sum(c.inference_fps for c in spec.cameras if c.enabled)
        return AdmissionController(offered_fps=offered, target_wait_s=target_ms / 1000, min_share=a.min_share, share=share)

    @property
    def share(self) -> float:
        return 1.0 if self.spec.producer.admission.mode == AdmissionMode.OFF else self.controller.share

    def update_spec(self, spec: FleetSpec) -> None:
        """A changed manifest (cameras, rates, settings): same share, new offered rate and target."""
        self.spec = spec
        kept = self.controller
        self.controller = self._controller(spec, kept.share)
        self.controller.drain_fps, self.controller.last_drain_at_s, self.controller.readings = (
            kept.drain_fps,
            kept.last_drain_at_s,
            kept.readings,
        )

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            interval_s = self.spec.producer.admission.interval_ms / 1000
            if self.spec.producer.admission.mode == AdmissionMode.BACKLOG:
                partitions = [
                    TopicPartition(self.spec.topic(c.id), p) for c in self.spec.cameras for p in range(self.spec.kafka.partitions_per_topic)
                ]
                try:
                    self.controller.update(await asyncio.wait_for(self.backlog.read(partitions), timeout=max(5.0, interval_s)))
                    self.last_error = None
                except (KafkaError, OSError, TimeoutError) as err:  # Kafka down: keep the last share; announcements wait anyway
                    if self.last_error is None:
                        log.warning(
                            "admission: cannot read the backlog from Kafka (%s); keeping share %.2f", type(err).__name__, self.share
                        )
                    self.last_error = f"{type(err).__name__}: {err}"
                    await self.backlog.close()
            await asyncio.sleep(interval_s)

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            await cancel_until_done([task])  # its wait_for can swallow one cancel (Python 3.11)
        await self.backlog.close()
