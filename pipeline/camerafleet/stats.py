"""What producer and consumer actors report to the runner while a fleet runs, as typed records.

The runner polls them for progress lines, the run's Prometheus endpoint and the summary; Ray pickles
them between processes. Counts by reason are `Counter[Reason]`, so nothing downstream splits strings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from camerafleet.api.outcomes import Outcome, Reason
from camerafleet.api.source_report import DecodeMode, SourceProblem, TimeSource


@dataclass
class ProducerCameraStats:
    """One camera in one producer actor (or, merged, across actors and their restarts). Frames that never
    reach Kafka are counted here by reason; all others reach the consumers and are counted from the results log."""

    produced: int = 0  # frames sampled
    announced: int = 0  # announcements Kafka acknowledged (stored frames and frames announced as failed)
    dropped: Counter[Reason] = field(default_factory=Counter)  # never announced on purpose: kafka_unavailable
    failed: Counter[Reason] = field(default_factory=Counter)  # never announced, Kafka refused: kafka_send_failed
    announced_failed: Counter[Reason] = field(default_factory=Counter)  # announced with a producer error
    buffered: int = 0  # announcements waiting for Kafka now
    max_buffered: int = 0
    kafka_retries: int = 0
    skipped_slots: int = 0
    down_slots: int = 0  # slots given up while the source was down
    shed_slots: int = 0  # slots not admitted: the pipeline could not have processed them in time
    reconnects: int = 0
    source_problems: Counter[SourceProblem] = field(default_factory=Counter)
    decode_mode: DecodeMode | None = None  # live cameras and files: which frames are decoded (last seen)
    time_source: TimeSource | None = None  # live cameras: where capture times come from (last seen)
    packets_received: int = 0  # live cameras and files: video packets read
    frames_decoded: int = 0  # live cameras and files: frames decoded (sampled or needed as references)
    restarts: int = 0  # merged stats only: actor incarnations Ray restarted
    source_up: bool = False
    last_problem: SourceProblem | None = None  # why the source went down last (the console shows it while down)
    last_error: str | None = None

    @property
    def unannounced(self) -> int:
        """Sampled frames that never reached Kafka (dropped or failed before their announcement)."""
        return sum(self.dropped.values()) + sum(self.failed.values())


@dataclass
class ProducerStats:
    """One producer actor incarnation: an actor Ray restarts comes back as a new incarnation with zeroed
    counts, so the runner keeps the last stats of every incarnation and merges them."""

    incarnation: str
    restarted: bool
    cameras: dict[str, ProducerCameraStats] = field(default_factory=dict)
    admission_share: float = 1.0  # share of slots this actor admits now
    cpu_seconds: float = 0.0  # CPU time of the actor's process (its threads too): the producer pool's busy share
    alive_seconds: float = 0.0
    node: str = ""  # the Ray node the actor runs on


def merge_producer_stats(stats: Iterable[ProducerStats]) -> dict[str, ProducerCameraStats]:
    """Sum the per-camera stats of several producer actors, or of successive incarnations of one, into one
    entry per camera; `restarts` counts incarnations that Ray restarted."""
    merged: dict[str, ProducerCameraStats] = {}
    for actor in stats:
        for cam, s in actor.cameras.items():
            m = merged.setdefault(cam, ProducerCameraStats())
            m.produced += s.produced
            m.announced += s.announced
            m.dropped.update(s.dropped)
            m.failed.update(s.failed)
            m.announced_failed.update(s.announced_failed)
            m.buffered += s.buffered
            m.max_buffered = max(m.max_buffered, s.max_buffered)
            m.kafka_retries += s.kafka_retries
            m.skipped_slots += s.skipped_slots
            m.down_slots += s.down_slots
            m.shed_slots += s.shed_slots
            m.reconnects += s.reconnects
            m.source_problems.update(s.source_problems)
            m.decode_mode = s.decode_mode or m.decode_mode
            m.time_source = s.time_source or m.time_source
            m.packets_received += s.packets_received
            m.frames_decoded += s.frames_decoded
            m.restarts += s.restarts + actor.restarted
            m.source_up = m.source_up or s.source_up
            m.last_problem = s.last_problem or m.last_problem
            m.last_error = s.last_error or m.last_error
    return merged


@dataclass
class CameraOutcomes:
    """How a camera's consumed frames ended, as far as one consumer (or, merged, all) saw."""

    processed: int = 0
    dropped: Counter[Reason] = field(default_factory=Counter)
    failed: Counter[Reason] = field(default_factory=Counter)

    def add(self, outcome: Outcome, reason: Reason | None) -> None:
        if outcome == Outcome.PROCESSED:
            self.processed += 1
        elif reason is not None:
            (self.dropped if outcome == Outcome.DROPPED else self.failed)[reason] += 1

    def total(self, outcome: Outcome) -> int:
        if outcome == Outcome.PROCESSED:
            return self.processed
        return sum((self.dropped if outcome == Outcome.DROPPED else self.failed).values())


@dataclass
class ConsumerStats:
    """One consumer actor's view: outcomes per camera, recent latencies, lag per partition."""

    cameras: dict[str, CameraOutcomes] = field(default_factory=dict)
    latencies_ms: list[int] = field(default_factory=list)  # the most recent processed frames'
    lag: dict[str, int] = field(default_factory=dict)  # "topic/partition" -> messages not yet consumed
    batches: int = 0
    loop_restarts: int = 0
    last_error: str | None = None
    incarnation: str = ""
    busy_seconds: float = 0.0  # batch-seconds at the inference service / maxInFlightBatches: the pool's busy share
    alive_seconds: float = 0.0
    node: str = ""  # the Ray node the actor runs on

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())


def merge_outcomes(consumers: Iterable[ConsumerStats]) -> dict[str, CameraOutcomes]:
    """Outcomes per camera across consumer actors."""
    merged: dict[str, CameraOutcomes] = {}
    for c in consumers:
        for cam, o in c.cameras.items():
            m = merged.setdefault(cam, CameraOutcomes())
            m.processed += o.processed
            m.dropped.update(o.dropped)
            m.failed.update(o.failed)
    return merged
