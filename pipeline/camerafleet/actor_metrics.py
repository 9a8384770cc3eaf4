"""The pipeline's metrics, recorded through Ray's metrics API inside actors and Serve replicas.

Definitions (names, labels, meaning) live in ``camerafleet.api.telemetry``; this module makes the Ray
metric objects from them. Every metric carries the ``fleet`` it belongs to, set once per process with
``bind_fleet``, so that alerts can name the fleet wherever Ray's agent is scraped.

Ray's agent forgets a gauge series that no worker has reported for two report intervals (so that dead
workers' gauges go away); a gauge set once, such as a camera that came up and stays up, would vanish
from Prometheus. ``KeptGauge`` therefore re-reports every value it holds each second from a thread.
"""

from __future__ import annotations

import threading
import time
from functools import cache

from ray.util import metrics as ray_metrics

from camerafleet.api import telemetry as t

# An actor or Serve replica works for one fleet, so its whole process tags everything with that fleet.
_fleet: list[str] = []


def bind_fleet(fleet: str) -> None:
    """Tag every metric this process records with ``fleet``; call it before the first record."""
    _fleet[:] = [fleet]


def _tagged(metric: ray_metrics.Metric, definition: t.MetricDef) -> None:
    if not _fleet:
        raise RuntimeError(f"{definition.name}: camerafleet.actor_metrics.bind_fleet() must be called before metrics are recorded")
    metric.set_default_tags({"fleet": _fleet[0]})


def _counter(definition: t.MetricDef) -> ray_metrics.Counter:
    metric = ray_metrics.Counter(definition.name, definition.help, tag_keys=definition.labels)
    _tagged(metric, definition)
    return metric


class KeptGauge:
    """A Ray gauge whose last value per tag set is reported again every ``REFRESH_S`` until replaced."""

    REFRESH_S = 1.0  # Ray's shortest report interval (its agent keeps a series for two of them)

    def __init__(self, definition: t.MetricDef):
        self.metric = ray_metrics.Gauge(definition.name, definition.help, tag_keys=definition.labels)
        _tagged(self.metric, definition)
        self._values: dict[tuple[tuple[str, str], ...], float] = {}
        self._lock = threading.Lock()
        _kept.append(self)
        _start_refresher()

    def set(self, value: float, tags: dict[str, str]) -> None:
        with self._lock:  # held while reporting, so a refresh can never report an older value after this one
            self._values[tuple(sorted(tags.items()))] = value
            self.metric.set(value, tags=tags)

    def forget(self, tags: dict[str, str]) -> None:
        """Stop reporting this series (Ray's agent drops it after two report intervals)."""
        with self._lock:
            self._values.pop(tuple(sorted(tags.items())), None)

    def refresh(self) -> None:
        with self._lock:
            for tags, value in self._values.items():
                self.metric.set(value, tags=dict(tags))


_kept: list[KeptGauge] = []
_refresher: list[threading.Thread] = []


def _start_refresher() -> None:
    if _refresher:
        return

    def loop() -> None:
        while True:
            time.sleep(KeptGauge.REFRESH_S)
            for gauge in list(_kept):
                gauge.refresh()

    _refresher.append(threading.Thread(target=loop, name="camerafleet-metrics", daemon=True))
    _refresher[0].start()


def _histogram(definition: t.MetricDef) -> ray_metrics.Histogram:
    metric = ray_metrics.Histogram(definition.name, definition.help, boundaries=list(definition.boundaries), tag_keys=definition.labels)
    _tagged(metric, definition)
    return metric


@cache
def frames_produced() -> ray_metrics.Counter:
    return _counter(t.FRAMES_PRODUCED)


@cache
def frames_processed() -> ray_metrics.Counter:
    return _counter(t.FRAMES_PROCESSED)


@cache
def frames_dropped() -> ray_metrics.Counter:
    return _counter(t.FRAMES_DROPPED)


@cache
def frames_failed() -> ray_metrics.Counter:
    return _counter(t.FRAMES_FAILED)


@cache
def e2e_latency_ms() -> ray_metrics.Histogram:
    return _histogram(t.E2E_LATENCY_MS)


@cache
def model_batch_size() -> ray_metrics.Histogram:
    return _histogram(t.MODEL_BATCH_SIZE)


@cache
def model_max_replicas() -> KeptGauge:
    return KeptGauge(t.MODEL_MAX_REPLICAS)


@cache
def consumer_lag() -> KeptGauge:
    return KeptGauge(t.CONSUMER_LAG)


@cache
def consumer_loop_restarts() -> ray_metrics.Counter:
    return _counter(t.CONSUMER_LOOP_RESTARTS)


@cache
def source_problems() -> ray_metrics.Counter:
    return _counter(t.SOURCE_PROBLEMS)


@cache
def source_up() -> KeptGauge:
    return KeptGauge(t.SOURCE_UP)


@cache
def slots_shed() -> ray_metrics.Counter:
    return _counter(t.SLOTS_SHED)


@cache
def events() -> ray_metrics.Counter:
    return _counter(t.EVENTS)
