"""How big a producer or consumer pool should be: load in, a size and its reason out (pure: no Ray, no clock).

The signals, and why:

- **Busy share** of each actor over the last look. A producer's capacity is one core (one Python
  interpreter: its event loop, and decoding and JPEG encoding in threads that release the GIL), so its
  busy share is CPU seconds per wall second. CPU weights each camera by what it really costs: a live camera
  at 1 fps decoding keyframes only costs a fifth of one decoding every frame, a shed slot costs nothing. A
  consumer's capacity is its `maxInFlightBatches`, so its busy share is the mean number of batches it had at
  the inference service divided by that: a consumer waiting on slow models is busy too, and adding one adds
  the concurrency that lets Serve's own autoscaler add model replicas.
- **Backlog**: consumers whose lag is more than their batches hold never shrink, however idle they look (dropping
  a backlog of stale frames costs them almost nothing).
- **Falling behind**: frames the source admission shed, slots a producer skipped because it was late, and
  Kafka lag that grew over the look. Each means capacity is missing whatever the busy share says (admission
  sheds before anyone is saturated, by design), so the pool asks for one actor more, up to its maximum.
- **What the models can use** (consumers): a consumer busy waiting on models that are at their most replicas
  and cannot take more requests gains nothing from another consumer, which would only wait too
  (`consumers_models_can_use`). Busy consumers grow no further than that, falling behind or not.

The size asked for is Kubernetes' HPA rule: `ceil(actors x busy / target)`, unchanged within 10% of the
target (no flapping under a steady load). A change is made only when every look over the delay asked for it
(the smallest of those asks when growing, the largest when shrinking), counted from the last change.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import StrEnum

from camerafleet.api.manifest import FleetSpec, PoolAutoscalingSpec, PoolSpec
from camerafleet.stats import ConsumerStats, ProducerStats

TOLERANCE = 0.1  # busy within 10% of the target asks for no change (the HPA's default tolerance)


class Pool(StrEnum):
    PRODUCER = "producer"
    CONSUMER = "consumer"


class ScaleReason(StrEnum):
    BUSY = "busy"  # the actors are busier than the target
    FALLING_BEHIND = "falling_behind"  # frames shed, slots skipped or lag growing
    IDLE = "idle"  # the actors are well under the target
    STEADY = "steady"  # no change asked, or not for long enough yet
    BOUNDS = "bounds"  # the pool is outside minActors..maxActors (they were edited): brought in at once
    MANIFEST = "manifest"  # a manifest edit changed a fixed pool's `actors`, or moved an autoscaled one's bounds past it


@dataclass(frozen=True)
class PoolLoad:
    """One pool over one look, as its actors reported it."""

    actors: int
    busy: float  # mean busy share of the pool's actors (0: idle, 1: at capacity; may exceed 1)
    falling_behind: bool = False
    backlog: bool = False  # more work waits than the pool holds in hand: it is not idle, whatever its busy share
    useful_max: int | None = None  # consumers: the most the models can use (busy ones grow no further)


@dataclass(frozen=True)
class Decision:
    actors: int  # the pool's size from now on
    reason: ScaleReason
    asked: int  # what this look alone asked for

    def changes(self, current: int) -> bool:
        return self.actors != current


def ask(load: PoolLoad, spec: PoolAutoscalingSpec) -> tuple[int, ScaleReason]:
    """What one look at the pool asks for, within its bounds, and why."""
    n = load.actors
    ratio = load.busy / spec.target_busy
    wanted = n if abs(ratio - 1) <= TOLERANCE else math.ceil(n * ratio - 1e-9)
    reason = ScaleReason.BUSY if wanted > n else ScaleReason.IDLE if wanted < n else ScaleReason.STEADY
    if load.backlog and wanted < n:  # consumers dropping a stale backlog look idle; shrinking would deepen it
        wanted = n
    if load.falling_behind and wanted <= n:
        wanted, reason = n + 1, ScaleReason.FALLING_BEHIND
    if load.useful_max is not None and load.busy >= spec.target_busy * (1 - TOLERANCE):  # busy waiting on the models
        wanted = min(wanted, max(n, load.useful_max))
    bounded = min(spec.max_actors, max(spec.min_actors, wanted))
    return bounded, reason if bounded != n else ScaleReason.STEADY


@dataclass
class PoolScaler:
    """Turns looks at a pool into changes of its size, each held for its delay."""

    spec: PoolAutoscalingSpec
    asks: deque[tuple[float, int, ScaleReason]] = field(default_factory=deque)
    since: float | None = None  # when the looks that count began: the start, or the last change

    def decide(self, now: float, load: PoolLoad) -> Decision:
        asked, reason = ask(load, self.spec)
        n = load.actors
        if not self.spec.min_actors <= n <= self.spec.max_actors:
            return self._changed(now, Decision(min(self.spec.max_actors, max(self.spec.min_actors, n)), ScaleReason.BOUNDS, asked))
        if self.since is None:
            self.since = now
        self.asks.append((now, asked, reason))
        keep = max(self.spec.upscale_delay_seconds, self.spec.downscale_delay_seconds)
        while self.asks and self.asks[0][0] < now - keep:
            self.asks.popleft()
        up = self._window(now, self.spec.upscale_delay_seconds)
        if up and min(a for _, a, _ in up) > n:
            size = min(a for _, a, _ in up)
            return self._changed(now, Decision(size, _reason_for(up, size), asked))
        down = self._window(now, self.spec.downscale_delay_seconds)
        if down and max(a for _, a, _ in down) < n:
            return self._changed(now, Decision(max(a for _, a, _ in down), ScaleReason.IDLE, asked))
        return Decision(n, ScaleReason.STEADY, asked)

    def _window(self, now: float, delay: float) -> list[tuple[float, int, ScaleReason]]:
        """The looks of the last `delay` seconds, if looks have been counted for that long; else none."""
        assert self.since is not None
        if now - self.since < delay:
            return []
        return [entry for entry in self.asks if entry[0] >= now - delay]

    def _changed(self, now: float, decision: Decision) -> Decision:
        self.asks.clear()
        self.since = now
        return decision


def _reason_for(window: list[tuple[float, int, ScaleReason]], size: int) -> ScaleReason:
    """Why a pool grows: falling behind when any look in the window said so, else busy."""
    reasons = {r for _, a, r in window if a >= size}
    return ScaleReason.FALLING_BEHIND if ScaleReason.FALLING_BEHIND in reasons else ScaleReason.BUSY


@dataclass(frozen=True)
class ActorWork:
    """One actor's cumulative work, as it reports it: seconds of work (a producer: CPU seconds; a consumer:
    batch-seconds at the inference service over its maxInFlightBatches) and seconds alive."""

    key: str  # stable while the actor lives; a restarted actor reports from zero again
    work_s: float
    alive_s: float


@dataclass
class BusyWatch:
    """A pool's mean busy share between two looks, from its actors' cumulative work."""

    last: dict[str, ActorWork] = field(default_factory=dict)

    def look(self, actors: list[ActorWork]) -> float | None:
        """Mean of work over time alive since the last look, across the actors seen both times; None when no
        actor was (the first look, or every actor new or restarted)."""
        shares = []
        for now in actors:
            before = self.last.get(now.key)
            if before is not None and now.alive_s > before.alive_s and now.work_s >= before.work_s:
                shares.append((now.work_s - before.work_s) / (now.alive_s - before.alive_s))
        self.last = {a.key: a for a in actors}
        return sum(shares) / len(shares) if shares else None


@dataclass
class GrowthWatch:
    """Whether a total (slots shed or skipped, Kafka lag) grew by more than `slack` since the last look (lag
    moves by a batch or so from one look to the next under a steady load: that is not falling behind)."""

    slack: int = 0
    last: int | None = None

    def look(self, total: int) -> bool:
        grew = self.last is not None and total > self.last + self.slack
        self.last = total
        return grew


@dataclass
class PoolWatch:
    """One autoscaled pool, look by look: its actors' work and the totals that grow when it falls behind, in;
    a decision, out (None until a look can say how busy the pool is)."""

    scaler: PoolScaler
    busy: BusyWatch = field(default_factory=BusyWatch)
    growth: dict[str, GrowthWatch] = field(default_factory=dict)  # by signal: "lag", "shed", "skipped"
    last_busy: float | None = None

    def look(
        self,
        now: float,
        size: int,
        work: list[ActorWork],
        totals: dict[str, int],
        placing: int = 0,
        backlog: bool = False,
        useful_max: int | None = None,
    ) -> Decision | None:
        """`size`: the pool's actors, `placing` of them new ones Ray has not placed yet; `work`: the reports of
        those that answered (one restarting may not: the others' mean stands for it). Actors being placed count
        as idle (as the HPA counts Pods that are not ready), and while they wait, falling behind asks for nothing
        more: the capacity it would ask for is on its way."""
        share = self.busy.look(work)
        grew = [self.growth.setdefault(name, GrowthWatch()).look(total) for name, total in totals.items()]
        self.last_busy = share
        if share is None or size <= 0:
            return None
        load = PoolLoad(size, share * (size - placing) / size, any(grew) and not placing, backlog, useful_max)
        return self.scaler.decide(now, load)


def keep_order(nodes: list[str]) -> list[int]:
    """The members of a pool (given by the node each runs on, in pool order) in the order to keep them: a pool
    that shrinks drops the last ones. Ray's autoscaler removes only an idle node (a KubeRay worker Pod), so a
    shrinking pool empties whole nodes: those holding fewest of its actors go first, and within a node the
    newest actors. Dropping the newest alone (a pool grown 2 -> 6 over two nodes, SPREAD alternates) would leave
    both nodes half full."""
    count = Counter(nodes)
    return sorted(range(len(nodes)), key=lambda i: (-count[nodes[i]], nodes[i], i))


def consumers_models_can_use(spec: FleetSpec) -> int:
    """The most consumers the fleet's models can use. Serve adds a model's replicas while its requests in flight
    exceed targetOngoingRequests per replica, up to maxReplicas; a consumer keeps maxInFlightBatches batches in
    flight, each sent to a model in chunks of its maxBatchSize. Consumers beyond what keeps every model at
    maxReplicas x target only wait on the models with the others. The bench's elastic phase (2 face replicas,
    fixed) grew its consumer pool 1 -> 2 during a 30 s stall of the face model and its latency got no better."""
    c = spec.consumer
    most = 1
    for m in spec.models:
        per_consumer = c.max_in_flight_batches * math.ceil(c.max_batch_frames / m.batching.max_batch_size)
        most = max(most, math.ceil(m.autoscaling.max_replicas * m.autoscaling.target_ongoing_requests / per_consumer))
    return most


def pool_size_after_edit(pool: PoolSpec, current: int) -> int:
    """A pool's size once its manifest changed: `actors` when fixed; when autoscaled, the size it has, within
    the (maybe new) bounds (an edit elsewhere in the manifest must not reset what the autoscaler chose)."""
    a = pool.autoscaling
    if a is None:
        return pool.actors
    return min(a.max_actors, max(a.min_actors, current)) if current else pool.actors


@dataclass
class FleetPools:
    """The autoscaled pools of one run: their watches, kept across manifest edits that leave them as they are."""

    watches: dict[Pool, PoolWatch] = field(default_factory=dict)
    in_hand: int = 0  # frames one consumer holds in its batches at most (maxBatchFrames x maxInFlightBatches)
    consumers_useful: int = 1  # the most consumers the models can use (`consumers_models_can_use`)

    def update_spec(self, spec: FleetSpec) -> None:
        for pool, pool_spec in ((Pool.PRODUCER, spec.producer), (Pool.CONSUMER, spec.consumer)):
            wanted, watch = pool_spec.autoscaling, self.watches.get(pool)
            if wanted is None:
                self.watches.pop(pool, None)
            elif watch is None or watch.scaler.spec != wanted:
                self.watches[pool] = PoolWatch(PoolScaler(wanted))
            if pool is Pool.CONSUMER and pool in self.watches:
                self.watches[pool].growth.setdefault("lag", GrowthWatch()).slack = spec.consumer.max_batch_frames
        self.in_hand = spec.consumer.max_batch_frames * spec.consumer.max_in_flight_batches
        self.consumers_useful = consumers_models_can_use(spec)

    def look_producers(self, now: float, stats: list[ProducerStats], size: int, placing: int = 0) -> Decision | None:
        """Producers: CPU per core; falling behind when a worker skipped slots (it was late)."""
        watch = self.watches.get(Pool.PRODUCER)
        if watch is None:
            return None
        work = [ActorWork(s.incarnation, s.cpu_seconds, s.alive_seconds) for s in stats]
        skipped = sum(c.skipped_slots for s in stats for c in s.cameras.values())
        return watch.look(now, size, work, {"skipped": skipped}, placing)

    def look_consumers(self, now: float, stats: list[ConsumerStats], shed: int, size: int, placing: int = 0) -> Decision | None:
        """Consumers: batches in flight per maxInFlightBatches; falling behind when lag grew by more than a
        batch or the source admission shed slots (`shed`: slots shed so far, where this run sees producers)."""
        watch = self.watches.get(Pool.CONSUMER)
        if watch is None:
            return None
        work = [ActorWork(c.incarnation, c.busy_seconds, c.alive_seconds) for c in stats]
        lag = sum(c.total_lag for c in stats)
        in_hand = self.in_hand * max(size, 1)  # frames the pool can hold in its batches at once
        return watch.look(now, size, work, {"lag": lag, "shed": shed}, placing, backlog=lag > in_hand, useful_max=self.consumers_useful)
