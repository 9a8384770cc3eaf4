"""Every Prometheus metric CameraFleet exports, declared once: name, type, labels and meaning.

Three processes export them: the pipeline's Ray actors and Serve replicas (through Ray's metrics agent,
which prefixes ``ray_`` and appends ``_total`` to counters), the ``camerafleet run`` process (its own
endpoint, ``--metrics-port``) and the operator (``--metrics-port``, default 9090). The code that records
them, the Grafana dashboard, the alerting rules and the README's metrics reference all start here, so a
renamed metric or label cannot silently empty a panel or an alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class MetricType(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class Exporter(StrEnum):
    """Which process exports a metric, and so which scrape target carries it."""

    RAY = "Ray metrics agent of the fleet's Ray cluster(s)"
    RUN = "`camerafleet run --metrics-port`"
    OPERATOR = "the operator's `--metrics-port` (9090)"


LATENCY_BOUNDARIES_MS: tuple[float, ...] = (10, 25, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 30000)
BATCH_BOUNDARIES: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class MetricDef:
    name: str  # as the code records it (Ray adds its prefix and suffixes on export)
    type: MetricType
    help: str
    labels: tuple[str, ...]
    exporter: Exporter
    boundaries: tuple[float, ...] = field(default=())

    @property
    def exported(self) -> str:
        """The name Prometheus stores (histograms add ``_bucket``, ``_sum`` and ``_count`` to it)."""
        name = f"ray_{self.name}" if self.exporter is Exporter.RAY else self.name
        return f"{name}_total" if self.type is MetricType.COUNTER else name

    @property
    def series_names(self) -> tuple[str, ...]:
        if self.type is MetricType.HISTOGRAM:
            return tuple(f"{self.exported}_{suffix}" for suffix in ("bucket", "sum", "count"))
        return (self.exported,)


def _ray(name: str, type_: MetricType, help_: str, *labels: str, boundaries: tuple[float, ...] = ()) -> MetricDef:
    return MetricDef(name, type_, help_, ("fleet", *labels), Exporter.RAY, boundaries)


C, G, H = MetricType.COUNTER, MetricType.GAUGE, MetricType.HISTOGRAM

FRAMES_PRODUCED = _ray("camerafleet_frames_produced", C, "Frames sampled by producers and stored in the bucket.", "camera")
FRAMES_PROCESSED = _ray("camerafleet_frames_processed", C, "Frames whose results were written.", "camera")
FRAMES_DROPPED = _ray("camerafleet_frames_dropped", C, "Frames dropped on purpose, by reason (see the reasons table).", "camera", "reason")
FRAMES_FAILED = _ray("camerafleet_frames_failed", C, "Frames that failed, by reason (see the reasons table).", "camera", "reason")
E2E_LATENCY_MS = _ray(
    "camerafleet_e2e_latency_ms", H, "Capture to result written, in milliseconds.", "camera", boundaries=LATENCY_BOUNDARIES_MS
)
MODEL_BATCH_SIZE = _ray("camerafleet_model_batch_size", H, "Frames per model batch.", "model", boundaries=BATCH_BOUNDARIES)
MODEL_MAX_REPLICAS = _ray(
    "camerafleet_model_max_replicas",
    G,
    "The model's autoscaling ceiling, reported by each running replica: the number of series is the replicas running.",
    "model",
)
CONSUMER_LAG = _ray("camerafleet_consumer_lag", G, "Messages not yet consumed, per camera topic partition.", "topic", "partition")
CONSUMER_LOOP_RESTARTS = _ray(
    "camerafleet_consumer_loop_restarts",
    C,
    "Times a consumer's loop died of an unexpected error and was started again from the committed offsets.",
)
SOURCE_PROBLEMS = _ray(
    "camerafleet_source_problems",
    C,
    "Times a camera's source went down, by problem (unreachable, auth_failed, stalled, ended, unreadable).",
    "camera",
    "problem",
)
SOURCE_UP = _ray("camerafleet_source_up", G, "1 while the camera's source delivers frames, 0 while it is down (reconnecting).", "camera")
SLOTS_SHED = _ray(
    "camerafleet_slots_shed", C, "Sampling slots not admitted at the source because the pipeline could not process them in time.", "camera"
)
EVENTS = _ray(
    "camerafleet_events",
    C,
    "Events that started, by camera, kind (object, zone, loiter, line), zone or line (`where`, `-` for object) and "
    "direction (line crossings: in or out; `-` otherwise). Bounded by the manifest: its cameras' zones and lines.",
    "camera",
    "kind",
    "where",
    "direction",
)

RUN_FRAMES = MetricDef(
    "camerafleet_run_frames", G, "Frames of this run by camera and outcome.", ("fleet", "camera", "outcome"), Exporter.RUN
)
RUN_SOURCE_UP = MetricDef("camerafleet_run_source_up", G, "1 while a camera's source delivers frames.", ("fleet", "camera"), Exporter.RUN)
RUN_SOURCE_PROBLEMS = MetricDef(
    "camerafleet_run_source_problems",
    G,
    "Times a camera's source went down in this run, by problem.",
    ("fleet", "camera", "problem"),
    Exporter.RUN,
)
RUN_MISSED_SLOTS = MetricDef(
    "camerafleet_run_missed_slots",
    G,
    "Sampling slots of this run that produced no frame, by reason (skipped, source_down, shed).",
    ("fleet", "camera", "reason"),
    Exporter.RUN,
)
RUN_CONSUMER_LAG = MetricDef("camerafleet_run_consumer_lag", G, "Messages not yet consumed, all camera topics.", ("fleet",), Exporter.RUN)
RUN_POOL_ACTORS = MetricDef(
    "camerafleet_run_pool_actors", G, "Actors in the run's producer and consumer pools now.", ("fleet", "pool"), Exporter.RUN
)
RUN_POOL_BUSY = MetricDef(
    "camerafleet_run_pool_busy",
    G,
    "Mean busy share of a pool's actors at the autoscaler's last look (producers: CPU per core; consumers: batches in "
    "flight per maxInFlightBatches); the pool aims for its autoscaling.targetBusy.",
    ("fleet", "pool"),
    Exporter.RUN,
)
RUN_POOL_DECISIONS = MetricDef(
    "camerafleet_run_pool_scaling_decisions",
    C,
    "Changes of a pool's size by its autoscaler, by direction (up, down) and reason (busy, falling_behind, idle, bounds).",
    ("fleet", "pool", "direction", "reason"),
    Exporter.RUN,
)

OPERATOR_RECONCILES = MetricDef(
    "camerafleet_operator_reconciles",
    C,
    "Reconciles of CameraFleet resources, by result: ok (status published), retry (waiting on something), "
    "error (a Kubernetes API call failed).",
    ("namespace", "fleet", "result"),
    Exporter.OPERATOR,
)
OPERATOR_FLEET_PHASE = MetricDef(
    "camerafleet_operator_fleet_phase",
    G,
    "1 for the phase each CameraFleet last published (one series per fleet).",
    ("namespace", "fleet", "phase"),
    Exporter.OPERATOR,
)

PIPELINE_METRICS = (
    FRAMES_PRODUCED,
    FRAMES_PROCESSED,
    FRAMES_DROPPED,
    FRAMES_FAILED,
    E2E_LATENCY_MS,
    MODEL_BATCH_SIZE,
    MODEL_MAX_REPLICAS,
    CONSUMER_LAG,
    CONSUMER_LOOP_RESTARTS,
    SOURCE_PROBLEMS,
    SOURCE_UP,
    SLOTS_SHED,
    EVENTS,
)
RUN_METRICS = (
    RUN_FRAMES,
    RUN_SOURCE_UP,
    RUN_SOURCE_PROBLEMS,
    RUN_MISSED_SLOTS,
    RUN_CONSUMER_LAG,
    RUN_POOL_ACTORS,
    RUN_POOL_BUSY,
    RUN_POOL_DECISIONS,
)
OPERATOR_METRICS = (OPERATOR_RECONCILES, OPERATOR_FLEET_PHASE)
ALL_METRICS = PIPELINE_METRICS + RUN_METRICS + OPERATOR_METRICS


def metrics_table() -> str:
    """The README's metrics reference (Markdown)."""
    rows = ["| Metric (as stored) | Type | Labels | Exported by | Meaning |", "|---|---|---|---|---|"]
    for m in ALL_METRICS:
        labels = ", ".join(f"`{label}`" for label in m.labels)
        rows.append(f"| `{m.exported}` | {m.type.value} | {labels} | {m.exporter.value} | {m.help} |")
    return "\n".join(rows)
