"""Prometheus endpoint of the `camerafleet run` process itself (prometheus-client, outside Ray): the
run's ledger per camera and outcome, source health and consumer lag, refreshed with each progress line.
Useful where Ray's own metrics agent is not scraped (one machine, a RayJob driver)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from camerafleet.api import telemetry as t
from camerafleet.api.outcomes import MissedReason, Outcome
from camerafleet.stats import CameraOutcomes, ProducerCameraStats


class RunMetrics:
    def __init__(self, port: int, fleet: str):
        self.registry = CollectorRegistry()
        self.fleet = fleet
        self.frames = self._gauge(t.RUN_FRAMES)
        self.source_up = self._gauge(t.RUN_SOURCE_UP)
        self.source_problems = self._gauge(t.RUN_SOURCE_PROBLEMS)
        self.missed_slots = self._gauge(t.RUN_MISSED_SLOTS)
        self.lag = self._gauge(t.RUN_CONSUMER_LAG)
        self.pool_actors = self._gauge(t.RUN_POOL_ACTORS)
        self.pool_busy = self._gauge(t.RUN_POOL_BUSY)
        d = t.RUN_POOL_DECISIONS
        self.pool_decisions = Counter(d.name, d.help, d.labels, registry=self.registry)
        start_http_server(port, addr="0.0.0.0", registry=self.registry)

    def _gauge(self, definition: t.MetricDef) -> Gauge:
        return Gauge(definition.name, definition.help, definition.labels, registry=self.registry)

    def update(self, producer: dict[str, ProducerCameraStats], outcomes: dict[str, CameraOutcomes], lag: int) -> None:
        for cam, p in producer.items():
            self.frames.labels(self.fleet, cam, "produced").set(p.produced)
            self.source_up.labels(self.fleet, cam).set(1 if p.source_up else 0)
            for problem, times in p.source_problems.items():
                self.source_problems.labels(self.fleet, cam, problem.value).set(times)
            self.missed_slots.labels(self.fleet, cam, MissedReason.SKIPPED.value).set(p.skipped_slots)
            self.missed_slots.labels(self.fleet, cam, MissedReason.SOURCE_DOWN.value).set(p.down_slots)
            self.missed_slots.labels(self.fleet, cam, MissedReason.SHED.value).set(p.shed_slots)
        for cam, counts in outcomes.items():
            for outcome in Outcome:
                self.frames.labels(self.fleet, cam, outcome.value).set(counts.total(outcome))
        self.lag.labels(self.fleet).set(lag)

    def pool(self, pool: str, actors: int, busy: float | None = None) -> None:
        self.pool_actors.labels(self.fleet, pool).set(actors)
        if busy is not None:
            self.pool_busy.labels(self.fleet, pool).set(busy)

    def pool_scaled(self, pool: str, before: int, after: int, reason: str) -> None:
        self.pool_decisions.labels(self.fleet, pool, "up" if after > before else "down", reason).inc()
        self.pool(pool, after)
