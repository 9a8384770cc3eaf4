"""Prometheus metrics of the operator itself, served on ``--metrics-port`` (default 9090).

The Helm chart's metrics Service (and its optional ServiceMonitor) scrape this endpoint. The definitions
are in ``camerafleet.api.telemetry``, the contract the Grafana dashboard and the alerting rules query.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from camerafleet.api import telemetry as t

log = logging.getLogger("camerafleet.operator")
REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(t.OPERATOR_RECONCILES.name, t.OPERATOR_RECONCILES.help, t.OPERATOR_RECONCILES.labels, registry=REGISTRY)
FLEET_PHASE = Gauge(t.OPERATOR_FLEET_PHASE.name, t.OPERATOR_FLEET_PHASE.help, t.OPERATOR_FLEET_PHASE.labels, registry=REGISTRY)

_phases: dict[tuple[str, str], str] = {}  # (namespace, name) -> last published phase


def record_reconcile(namespace: str, name: str, phase: str | None, *, retry: bool) -> None:
    """Count one reconcile of a fleet and keep its phase series (one per fleet, value 1) current."""
    RECONCILES.labels(namespace=namespace, fleet=name, result="retry" if retry else "ok").inc()
    if not phase or _phases.get((namespace, name)) == phase:
        return
    forget_fleet(namespace, name)
    _phases[(namespace, name)] = phase
    FLEET_PHASE.labels(namespace=namespace, fleet=name, phase=phase).set(1)


def record_error(namespace: str, name: str) -> None:
    """Count a reconcile that a failed Kubernetes API call cut short (kopf retries it)."""
    RECONCILES.labels(namespace=namespace, fleet=name, result="error").inc()


def forget_fleet(namespace: str, name: str) -> None:
    """Drop a fleet's phase series (it changed phase, or the fleet is gone)."""
    phase = _phases.pop((namespace, name), None)
    if phase is not None:
        FLEET_PHASE.remove(namespace, name, phase)


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
