"""Prometheus endpoint of the `camerafleet run` process itself (prometheus-client, outside Ray): the
run's ledger per camera and outcome, source health and consumer lag, refreshed with each progress line.
Useful where Ray's own metrics agent is not scraped (one machine, a RayJob driver)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from camerafleet.api.outcomes import Outcome
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
        self.lag = Gauge(
            "camerafleet_run_consumer_lag", "Messages not yet consumed, all camera topics.", ("fleet",), registry=self.registry
        )
        start_http_server(port, addr="0.0.0.0", registry=self.registry)

    def update(self, producer: dict[str, ProducerCameraStats], consumers: list[ConsumerStats]) -> None:
        for cam, p in producer.items():
            self.frames.labels(self.fleet, cam, "produced").set(p.produced)
            self.source_up.labels(self.fleet, cam).set(1 if p.source_up else 0)
        for cam, outcomes in merge_outcomes(consumers).items():
            for outcome in Outcome:
                self.frames.labels(self.fleet, cam, outcome.value).set(outcomes.total(outcome))
        self.lag.labels(self.fleet).set(sum(c.total_lag for c in consumers))
