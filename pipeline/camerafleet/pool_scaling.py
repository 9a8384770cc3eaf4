"""How big a producer or consumer pool should be: load in, a size and its reason out (pure: no Ray, no clock).

The signals, and why:

- **Busy share** of each actor over the last look. A producer's capacity is one core (one Python
  interpreter: its event loop, and decoding and JPEG encoding in threads that release the GIL), so its
  busy share is CPU seconds per wall second. CPU weights each camera by what it really costs: a live camera
  at 1 fps decoding keyframes only costs a fifth of one decoding every frame, a shed slot costs nothing. A
  consumer's capacity is its `maxInFlightBatches`, so its busy share is the mean number of batches it had at
  the inference service divided by that: a consumer waiting on slow models is busy too, and adding one adds
  the concurrency that lets Serve's own autoscaler add model replicas.
- **Falling behind**: frames the source admission shed, slots a producer skipped because it was late, and
  Kafka lag that grew over the look. Each means capacity is missing whatever the busy share says (admission
  sheds before anyone is saturated, by design), so the pool asks for one actor more, up to its maximum.

The size asked for is Kubernetes' HPA rule: `ceil(actors x busy / target)`, unchanged within 10% of the
target (no flapping under a steady load). A change is made only when every look over the delay asked for it
(the smallest of those asks when growing, the largest when shrinking), counted from the last change.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from camerafleet.api.manifest import PoolAutoscalingSpec

TOLERANCE = 0.1  # busy within 10% of the target asks for no change (the HPA's default tolerance)


class ScaleReason(StrEnum):
    BUSY = "busy"  # the actors are busier than the target
    FALLING_BEHIND = "falling_behind"  # frames shed, slots skipped or lag growing
    IDLE = "idle"  # the actors are well under the target
    STEADY = "steady"  # no change asked, or not for long enough yet
    BOUNDS = "bounds"  # the pool is outside minActors..maxActors (they were edited): brought in at once


@dataclass(frozen=True)
class PoolLoad:
    """One pool over one look, as its actors reported it."""

    actors: int
    busy: float  # mean busy share of the pool's actors (0: idle, 1: at capacity; may exceed 1)
    falling_behind: bool = False


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
    if load.falling_behind and wanted <= n:
        wanted, reason = n + 1, ScaleReason.FALLING_BEHIND
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
