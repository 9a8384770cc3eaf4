"""Prometheus endpoint of the `camerafleet run` process itself (prometheus-client, outside Ray): the
run's ledger per camera and outcome, source health and consumer lag, refreshed with each progress line.
Useful where Ray's own metrics agent is not scraped (one machine, a RayJob driver)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from camerafleet.api.outcomes import MissedReason, Outcome
from camerafleet.stats import ConsumerStats, ProducerCameraStats, merge_outcomes


class RunMetrics:
    def __init__(self, port: int, fleet: str):
        self.registry = CollectorRegistry()
        self.fleet = fleet
        self.frames = Gauge(
            "camerafleet_run_frames", "Frames of this run by camera and outcome.", ("fleet", "camera", "outcome"), registry=self.registry
        )
        self.source_up = Gauge(
            "camerafleet_run_source_up", "1 while a camera's source delivers frames.", ("fleet", "camera"), registry=self.registry
        )
        self.source_problems = Gauge(
            "camerafleet_run_source_problems",
            "Times a camera's source went down in this run, by problem (unreachable, auth_failed, stalled, ended, unreadable).",
            ("fleet", "camera", "problem"),
            registry=self.registry,
        )
        self.missed_slots = Gauge(
            "camerafleet_run_missed_slots",
            "Sampling slots of this run that produced no frame, by reason (skipped, source_down, shed).",
            ("fleet", "camera", "reason"),
            registry=self.registry,
        )
        self.lag = Gauge(
            "camerafleet_run_consumer_lag", "Messages not yet consumed, all camera topics.", ("fleet",), registry=self.registry
        )
        start_http_server(port, addr="0.0.0.0", registry=self.registry)

    def update(self, producer: dict[str, ProducerCameraStats], consumers: list[ConsumerStats]) -> None:
        for cam, p in producer.items():
            self.frames.labels(self.fleet, cam, "produced").set(p.produced)
            self.source_up.labels(self.fleet, cam).set(1 if p.source_up else 0)
            for problem, times in p.source_problems.items():
                self.source_problems.labels(self.fleet, cam, problem.value).set(times)
            self.missed_slots.labels(self.fleet, cam, MissedReason.SKIPPED.value).set(p.skipped_slots)
            self.missed_slots.labels(self.fleet, cam, MissedReason.SOURCE_DOWN.value).set(p.down_slots)
            self.missed_slots.labels(self.fleet, cam, MissedReason.SHED.value).set(p.shed_slots)
        for cam, outcomes in merge_outcomes(consumers).items():
            for outcome in Outcome:
                self.frames.labels(self.fleet, cam, outcome.value).set(outcomes.total(outcome))
        self.lag.labels(self.fleet).set(sum(c.total_lag for c in consumers))
