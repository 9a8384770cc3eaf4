"""Prometheus metrics of the operator itself, served on ``--metrics-port`` (default 9090).

The Helm chart's metrics Service (and its optional ServiceMonitor) scrape this endpoint. Names are part
of the contract the Grafana dashboard in ``charts/camerafleet-stack/dashboards/`` queries.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger("camerafleet.operator")
REGISTRY = CollectorRegistry(auto_describe=True)

#: Reconciles by result: ``ok`` (status published) or ``retry`` (waiting, the operator comes back).
RECONCILES = Counter("camerafleet_operator_reconciles", "Reconciles of CameraFleet resources, by result.", ("result",), registry=REGISTRY)
#: Fleets by their last published phase (set per fleet, summed by phase).
FLEETS = Gauge("camerafleet_operator_fleets", "CameraFleet resources by phase.", ("phase",), registry=REGISTRY)

#: Every metric name this module exports, as Prometheus sees it (counters get ``_total``).
EXPORTED_NAMES = ("camerafleet_operator_reconciles_total", "camerafleet_operator_fleets")

_phases: dict[str, str] = {}  # namespace/name -> last published phase


def record_reconcile(fleet: str, phase: str | None, *, retry: bool) -> None:
    """Count one reconcile of ``fleet`` (``namespace/name``) and update the fleets-by-phase gauge."""
    RECONCILES.labels(result="retry" if retry else "ok").inc()
    if not phase:
        return
    before = set(_phases.values())
    _phases[fleet] = phase
    for known in before | {phase}:
        FLEETS.labels(phase=known).set(sum(1 for p in _phases.values() if p == known))


def serve(port: int, addr: str = "0.0.0.0") -> bool:
    """Serve ``/metrics`` on ``addr:port`` in a daemon thread (``port`` 0: do nothing).

    A port already in use is logged and the operator goes on without metrics: reconciling matters
    more than being scraped. Returns whether the endpoint is up.
    """
    if not port:
        return False
    try:
        start_http_server(port, addr=addr, registry=REGISTRY)
    except OSError as err:
        log.error("cannot serve metrics on %s:%d (%s); running without a metrics endpoint", addr, port, err)
        return False
    log.info("metrics on http://%s:%d/metrics", addr, port)
    return True
