"""Prometheus endpoint of the `camerafleet run` process itself (prometheus-client, outside Ray): the
run's ledger per camera and outcome, source health and consumer lag, refreshed with each progress line.
Useful where Ray's own metrics agent is not scraped (one machine, a RayJob driver)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server


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

    def update(self, producer: dict[str, dict[str, Any]], consumers: list[dict[str, Any]]) -> None:
        for cam, p in producer.items():
            self.frames.labels(self.fleet, cam, "produced").set(p["produced"])
            self.source_up.labels(self.fleet, cam).set(1 if p["sourceUp"] else 0)
        totals: dict[tuple[str, str], int] = {}
        for c in consumers:
            for cam, counts in c["counts"].items():
                for key, value in counts.items():
                    outcome = key.split(":")[0]
                    totals[(cam, outcome)] = totals.get((cam, outcome), 0) + value
        for (cam, outcome), value in totals.items():
            self.frames.labels(self.fleet, cam, outcome).set(value)
        self.lag.labels(self.fleet).set(sum(v for c in consumers for v in c["lag"].values()))
