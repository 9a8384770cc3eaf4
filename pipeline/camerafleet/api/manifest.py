"""The `CameraFleet` manifest: the one description of a fleet that every runtime reads.

The same YAML runs on one machine (`camerafleet run fleet.yaml`) and is the spec of the Kubernetes
`CameraFleet` resource, whose CRD schema is generated from these models. So the models are strict
(unknown keys are refused), every field has a description, names carry their units, and whatever a
JSON schema cannot say (unique ids, consistent batch limits) is checked by validators whose messages
name the field and the values.
"""

from __future__ import annotations

import math
import unicodedata
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from camerafleet.api.geometry import Anchor, line_problem, polygon_problem

# The Kubernetes resource a manifest is (its CRD is generated from the models below).
GROUP, VERSION = "camerafleet.io", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "CameraFleet"
PLURAL, SINGULAR, SHORT_NAMES = "camerafleets", "camerafleet", ["cfleet"]

_ID_PATTERN = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"
_TOPIC_PATTERN = r"^[a-zA-Z0-9._-]{1,200}$"
# Upper bound of otherwise unbounded integers: Kafka configs are Java longs and Kubernetes stores int64,
# but CRD schema bounds are float64, exact only up to 2**53 (2**63 - 1 rounds up and overflows there).
MAX_INT = 2**53
# Bounds the API server enforces too (the CRD is generated from these models): a fleet's size is the
# operator's and Kafka's work, so no manifest may ask for an unbounded amount of either.
MAX_CAMERAS = 4096
MAX_MODELS = 16
CONFIG_MAP_KEY = "fleet.yaml"  # the key of the manifest in the ConfigMap the operator writes for a fleet
CA_DIR = "/etc/camerafleet/ca"  # where a fleet's caSecret is mounted in its Ray pods


class Strict(BaseModel):
    """Base of every manifest model: camelCase keys in YAML, unknown keys refused, numbers finite (YAML has
    .inf and .nan; JSON, Kubernetes and every limit below do not)."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        validate_default=True,
        frozen=True,
        allow_inf_nan=False,
    )


MAX_FRAME_SIDE = 16384  # pixels, as frame messages allow
_Coordinate = Annotated[float, Field(ge=0, le=MAX_FRAME_SIDE)]
_PointList = list[Annotated[list[_Coordinate], Field(min_length=2, max_length=2)]]
MAX_SHAPES = 32  # zones and lines per camera


class _Shape(Strict):
    """What zones and lines share: a name, and which tracks they count."""

    name: str = Field(pattern=_ID_PATTERN, description="Its name, unique among the camera's zones and lines; labels its events and counts.")
    models: list[str] = Field(
        default_factory=list, max_length=MAX_MODELS, description="The models whose tracks it counts, by name (empty: every detector)."
    )
    labels: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="The labels it counts, as the models name them (empty: all), e.g. person, car, face.",
    )
    anchor: Anchor = Field(
        default=Anchor.BOTTOM_CENTER,
        description="The point of a box that stands for the object: bottomCenter (where a person or vehicle stands: zones "
        "and lines drawn on the floor) or center (faces; objects seen from above).",
    )


class ZoneSpec(_Shape):
    points: _PointList = Field(
        min_length=3, max_length=64, description="The zone's corners, [x, y] in frame pixels (x to the right, y down), in order around it."
    )
    loiter_seconds: float | None = Field(
        default=None,
        gt=0,
        le=86400,
        description="A loitering event when a track has been in the zone this long (none: no loitering events).",
    )

    @model_validator(mode="after")
    def _a_polygon(self) -> ZoneSpec:
        if problem := polygon_problem([(x, y) for x, y in self.points]):
            raise ValueError(f"zone {self.name!r}: {problem}")
        return self


class LineSpec(_Shape):
    points: _PointList = Field(
        min_length=2,
        max_length=2,
        description="From and to, [x, y] in frame pixels. An object that crosses to the right of the line as seen walking from "
        "`from` to `to` on the frame crosses `in`; the other way `out`. Only the drawn segment counts, not its extension.",
    )

    @model_validator(mode="after")
    def _a_segment(self) -> LineSpec:
        (ax, ay), (bx, by) = self.points
        if problem := line_problem((ax, ay), (bx, by)):
            raise ValueError(f"line {self.name!r}: {problem}")
        return self


class CameraSpec(Strict):
    id: str = Field(
        pattern=_ID_PATTERN,
        description="Camera id, unique in the fleet: lower-case letters, digits, '-' and '_'. "
        "The camera's Kafka topic is `<topicPrefix><id>`.",
    )
    source: str = Field(
        min_length=1,
        max_length=2048,
        description="Where frames come from: a video file path (played at its own frame rate, looping), "
        "a live camera URL (rtsp:// or rtsps:// H.264/H.265, RTSP over TCP; http:// or https:// MJPEG or another "
        "stream FFmpeg reads), or `synthetic:` (optionally `synthetic:WIDTHxHEIGHT@FPS`) for a built-in generated scene.",
    )
    source_secret_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Name of an environment variable (set from a Kubernetes Secret) that holds the full "
        "source URL with credentials; when set it replaces `source`, which then only names the camera in "
        "logs. Keeps passwords out of manifests, logs and status.",
    )
    inference_fps: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="Frames per second sampled from the source and sent to inference. The capture rate itself is the source's.",
    )
    producer_shards: int = Field(
        default=1,
        ge=1,
        le=16,
        description="How many producer actors share this camera's sampled frames (each takes every n-th "
        "frame), for cameras whose encoding does not fit one actor.",
    )
    stall_timeout_seconds: float = Field(
        default=5.0,
        ge=0.5,
        le=300,
        description="A live camera that sends nothing for this long while its connection stays open is reported "
        "down (`stalled`) and reconnected; its slots until it is back are missed with reason `source_down`.",
    )
    enabled: bool = Field(default=True, description="A disabled camera keeps its topic but produces nothing.")
    zones: list[ZoneSpec] = Field(
        default_factory=list,
        max_length=MAX_SHAPES,
        description=f"Areas of the frame (at most {MAX_SHAPES}) whose entries, exits and loitering are events (needs events.enabled). "
        "A zone outside the camera's actual frame is left out and reported when its first frame comes.",
    )
    lines: list[LineSpec] = Field(
        default_factory=list,
        max_length=MAX_SHAPES,
        description=f"Directed counting lines (at most {MAX_SHAPES}) whose crossings are events, by direction (needs events.enabled).",
    )

    @model_validator(mode="after")
    def _shape_names_unique(self) -> CameraSpec:
        names = [z.name for z in self.zones] + [ln.name for ln in self.lines]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"camera {self.id}: zone and line names must be unique; more than once: {', '.join(dupes)}")
        return self


# Kafka names a fleet on Kubernetes leaves unset are its own, `<namespace>.<fleet>.<name>` (the operator's
# `tenancy.per_fleet`): two fleets made from one example in two namespaces share no topic and no consumer
# group. The CRD gives these fields no default, so the operator can tell them from names a manifest sets.
PER_FLEET_ON_KUBERNETES: dict[str, Any] = {"x-camerafleet-per-fleet": True}


class KafkaSpec(Strict):
    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        min_length=1,
        description="Kafka bootstrap servers, comma-separated host:port. The environment variable KAFKA_BOOTSTRAP overrides it.",
    )
    topic_prefix: str = Field(
        default="camera_",
        pattern=r"^[a-zA-Z0-9._-]{0,100}$",
        description="Prefix of the per-camera topics: camera `1` publishes to `camera_1` by default (on Kubernetes, unless "
        "set: `<namespace>.<fleet>.camera_`).",
        json_schema_extra=PER_FLEET_ON_KUBERNETES,
    )
    partitions_per_topic: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Partitions of each camera topic; several consumers can share one camera when > 1.",
    )
    replication_factor: int = Field(default=1, ge=1, le=16, description="Replication factor of every topic the fleet creates.")
    retention_ms: int = Field(
        default=600_000,
        ge=60_000,
        le=MAX_INT,
        description="Retention of camera topics in milliseconds; frame messages are only useful while the frame is in the bucket.",
    )
    results_retention_ms: int = Field(
        default=7 * 86_400_000,
        ge=60_000,
        le=MAX_INT,
        description="Retention of the results and dead-letter topics in milliseconds (7 days): a reader that is down for "
        "a weekend still finds every result when it comes back.",
    )
    results_topic: str = Field(
        default="camerafleet_results",
        pattern=_TOPIC_PATTERN,
        description="Topic that receives one JSON result record per frame, whatever its outcome (consumers of detections "
        "take those with outcome `processed`). On Kubernetes, unless set: `<namespace>.<fleet>.results`.",
        json_schema_extra=PER_FLEET_ON_KUBERNETES,
    )
    dead_letter_topic: str = Field(
        default="camerafleet_deadletter",
        pattern=_TOPIC_PATTERN,
        description="Topic that receives every frame message that failed, with the reason. On Kubernetes, unless set: "
        "`<namespace>.<fleet>.deadletter`.",
        json_schema_extra=PER_FLEET_ON_KUBERNETES,
    )
    events_topic: str = Field(
        default="camerafleet_events",
        pattern=_TOPIC_PATTERN,
        description="Topic that receives the events of `events` (JSON, keyed by camera; read it with isolation.level "
        "read_committed). Its tracking state goes to `<eventsTopic>.state` (compacted), and each tracked frame's track ids to "
        "`<eventsTopic>.tracks` (kept as long as camera topics; the console labels its tiles from it). On Kubernetes, unless set: "
        "`<namespace>.<fleet>.events`.",
        json_schema_extra=PER_FLEET_ON_KUBERNETES,
    )
    consumer_group: str = Field(
        default="camerafleet",
        min_length=1,
        max_length=255,
        description="Consumer group shared by all consumer actors of the fleet. On Kubernetes, unless set: `<namespace>.<fleet>`.",
        json_schema_extra=PER_FLEET_ON_KUBERNETES,
    )
    topic_deletion_policy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="What the Kubernetes operator does with the fleet's topics when the CameraFleet is deleted: "
        "`Retain` keeps them, `Delete` deletes them (through a finalizer).",
    )

    @property
    def events_state_topic(self) -> str:
        """Where the events stage keeps each camera's tracking state (compacted, keyed by camera)."""
        return f"{self.events_topic}.state"

    @property
    def events_tracks_topic(self) -> str:
        """Where the events stage writes each tracked frame's tracks (keyed by camera): what the console labels boxes with."""
        return f"{self.events_topic}.tracks"

    @property
    def events_group(self) -> str:
        """The events stage's consumer group on the results topic."""
        return f"{self.consumer_group}.events"


SHARED_BUCKET_HINT = (
    "a fleet's frames need a folder of their own (its lifecycle rule and its sweeper act on everything under it, and "
    "a bucket is often shared with other data): write s3://<bucket>/<prefix>"
)


class BucketSpec(Strict):
    uri: str = Field(
        default="file:///dev/shm/camerafleet/frames",
        description="Where frames are stored: `file:///path` for a shared local directory (a tmpfs such as "
        "/dev/shm is the in-memory bucket of one node) or `s3://bucket/prefix` for S3-compatible storage. "
        "The environment variable CAMERAFLEET_BUCKET_URI overrides it.",
    )
    endpoint: str | None = Field(
        default=None,
        description="S3 endpoint URL such as http://minio:9000 (s3:// buckets only; default the AWS endpoint "
        "of `region`). Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment. "
        "The environment variable CAMERAFLEET_S3_ENDPOINT overrides it.",
    )
    region: str | None = Field(default=None, description="S3 region, when the store needs one.")
    ttl_seconds: int = Field(
        default=300,
        ge=10,
        le=7 * 86400,
        description="Frames are deleted this many seconds after they were written, so storage stays bounded.",
    )
    sweep_interval_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="How often producers delete expired frames of their cameras."
    )
    jpeg_quality: int = Field(default=85, ge=10, le=100, description="JPEG quality of stored frames (OpenCV scale 0-100).")
    max_frame_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        le=MAX_INT,
        description="Largest frame object the inference service will fetch; larger ones fail with a reason.",
    )

    @field_validator("uri")
    @classmethod
    def _s3_has_prefix(cls, uri: str) -> str:
        if uri.startswith("s3://") and not uri[len("s3://") :].partition("/")[2].strip("/"):
            raise ValueError(f"{uri!r} has no prefix: {SHARED_BUCKET_HINT}")
        return uri


class AdmissionMode(StrEnum):
    """Whether producers admit frames by the pipeline's backlog."""

    BACKLOG = "backlog"
    OFF = "off"


class AdmissionSpec(Strict):
    mode: AdmissionMode = Field(
        default=AdmissionMode.BACKLOG,
        description="`backlog`: producers read the consumer group's backlog from Kafka and take only the share of slots the "
        "pipeline can process before they age out; the others are shed (missed slots with reason `shed`, counted per camera) "
        "before anything is captured, encoded or stored. `off`: every slot is taken and what ages out is dropped as `stale`.",
    )
    target_wait_ms: int | None = Field(
        default=None,
        ge=1,
        le=MAX_INT,
        description="How long a new frame may expect to wait in Kafka and at the inference service (backlog / drain rate) "
        "before producers shed slots. Default: half of consumer.maxFrameAgeMs.",
    )
    min_share: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Share of each camera's slots always taken, however large the backlog: no camera is ever starved, and the "
        "backlog's drain keeps being measured.",
    )
    interval_ms: int = Field(default=500, ge=50, le=60_000, description="How often each producer actor reads the backlog from Kafka.")


class PoolAutoscalingSpec(Strict):
    """A producer or consumer pool that sizes itself to its load (see `pool_scaling.py` for the signals)."""

    min_actors: int = Field(default=1, ge=1, le=1024, description="Fewest actors in the pool.")
    max_actors: int = Field(default=8, ge=1, le=1024, description="Most actors in the pool; each needs its cpusPerActor free in Ray.")
    target_busy: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="Share of its capacity each actor should be busy (a producer: one core; a consumer: its in-flight "
        "batches). Above it actors are added, well below it removed; frames shed, slots skipped or Kafka lag growing "
        "add one more whatever the share. 0.6 leaves room for a camera's keyframe bursts.",
    )
    upscale_delay_seconds: float = Field(
        default=15.0, ge=0, le=3600, description="How long every look at the pool must ask for more actors before they are added."
    )
    downscale_delay_seconds: float = Field(
        default=120.0, ge=0, le=86400, description="How long every look at the pool must ask for fewer actors before they are removed."
    )

    @model_validator(mode="after")
    def _ordered(self) -> PoolAutoscalingSpec:
        if self.min_actors > self.max_actors:
            raise ValueError(f"minActors ({self.min_actors}) is larger than maxActors ({self.max_actors})")
        return self


class PoolSpec(Strict):
    """What producer and consumer pools share: their size, fixed or autoscaled."""

    actors: int = Field(
        default=1,
        ge=0,
        le=1024,
        description="Actors in the pool; with autoscaling, the size it starts at (between minActors and maxActors). Changing it "
        "while running resizes the pool without losing frames.",
    )
    autoscaling: PoolAutoscalingSpec | None = Field(
        default=None, description="Let the pool size itself to its load between minActors and maxActors; unset, `actors` is fixed."
    )

    @model_validator(mode="after")
    def _starts_within_bounds(self) -> PoolSpec:
        a = self.autoscaling
        if a is not None and not a.min_actors <= self.actors <= a.max_actors:
            raise ValueError(
                f"actors ({self.actors}) is where the autoscaled pool starts and must lie between autoscaling.minActors "
                f"({a.min_actors}) and autoscaling.maxActors ({a.max_actors})"
            )
        return self


class ProducerSpec(PoolSpec):
    actors: int = Field(
        default=1,
        ge=0,
        le=1024,
        description="Producer actors in the pool; camera shards are spread over them round-robin. Changing it "
        "while running moves shards without losing sampled frames. With autoscaling, the size it starts at.",
    )
    cpus_per_actor: float = Field(default=0.5, ge=0, le=64, description="Ray CPUs reserved by each producer actor.")
    reconnect_initial_seconds: float = Field(
        default=1.0, gt=0, le=60, description="First wait before reopening a failed source; doubles up to the maximum."
    )
    reconnect_max_seconds: float = Field(default=30.0, gt=0, le=3600, description="Longest wait between reopening attempts.")
    max_buffered_frames: int = Field(
        default=300,
        ge=1,
        le=100_000,
        description="Frames (per camera, per producer actor) announced to Kafka but not yet acknowledged, e.g. "
        "while the broker is down: they are retried with backoff. A frame sampled while this many are waiting is "
        "dropped and counted with reason `kafka_unavailable`. 300 holds one minute of a 5 fps camera.",
    )
    admission: AdmissionSpec = Field(
        default_factory=AdmissionSpec, description="Admission at the source: shed slots the pipeline could not process in time."
    )


class ConsumerSpec(PoolSpec):
    actors: int = Field(
        default=1,
        ge=0,
        le=1024,
        description="Consumer actors in the fleet's consumer group; with autoscaling, the size it starts at.",
    )
    cpus_per_actor: float = Field(default=0.25, ge=0, le=64, description="Ray CPUs reserved by each consumer actor.")
    max_batch_frames: int = Field(
        default=16, ge=1, le=1024, description="Most frames one consumer sends to the inference service in one call."
    )
    batch_wait_ms: int = Field(
        default=50, ge=0, le=10_000, description="How long a consumer waits to fill a micro-batch before sending it."
    )
    max_in_flight_batches: int = Field(
        default=4,
        ge=1,
        le=256,
        description="Micro-batches one consumer has at the inference service at once; offsets are still committed in order.",
    )
    max_frame_age_ms: int = Field(
        default=5_000,
        ge=1,
        le=MAX_INT,
        description="Frames older than this (capture to consume) are dropped with reason `stale`: a real-time "
        "system prefers fresh frames to a growing backlog.",
    )
    inference_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Longest wait for one inference call before its frames fail with reason `inference_timeout`.",
    )


class BatchingSpec(Strict):
    max_batch_size: int = Field(default=8, ge=1, le=1024, description="Largest batch one model call runs (Ray Serve `@serve.batch`).")
    batch_wait_timeout_ms: int = Field(
        default=20, ge=0, le=10_000, description="How long a replica waits for a batch to fill before running it."
    )
    max_ongoing_requests: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Requests one replica accepts at once; must be at least `maxBatchSize` or batches never "
        "fill. Default: 2 x maxBatchSize + 2.",
    )

    @model_validator(mode="after")
    def _batches_can_fill(self) -> BatchingSpec:
        if self.max_ongoing_requests is not None and self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"maxOngoingRequests ({self.max_ongoing_requests}) is smaller than maxBatchSize "
                f"({self.max_batch_size}): batches could never fill; raise maxOngoingRequests or lower maxBatchSize"
            )
        return self

    @property
    def effective_max_ongoing_requests(self) -> int:
        return self.max_ongoing_requests or 2 * self.max_batch_size + 2


class AutoscalingSpec(Strict):
    min_replicas: int = Field(default=1, ge=0, le=1000, description="Fewest replicas of the model deployment.")
    max_replicas: int = Field(default=1, ge=1, le=1000, description="Most replicas of the model deployment.")
    initial_replicas: int | None = Field(default=None, ge=0, le=1000, description="Replicas at start (default minReplicas).")
    target_ongoing_requests: float = Field(
        default=2.0, gt=0, le=100_000, description="Ongoing requests per replica the autoscaler aims for."
    )
    upscale_delay_seconds: float = Field(default=30.0, ge=0, le=3600, description="Sustained demand needed before adding replicas.")
    downscale_delay_seconds: float = Field(
        default=600.0, ge=0, le=86400, description="Sustained low demand needed before removing replicas."
    )
    metrics_interval_seconds: float = Field(default=10.0, gt=0, le=600, description="How often replicas report load to the autoscaler.")
    look_back_period_seconds: float = Field(default=30.0, gt=0, le=3600, description="Window over which load is averaged.")

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) is larger than maxReplicas ({self.max_replicas})")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError(
                f"initialReplicas ({self.initial_replicas}) must lie between minReplicas ({self.min_replicas}) "
                f"and maxReplicas ({self.max_replicas})"
            )
        return self


class ResourcesSpec(Strict):
    cpus: float = Field(
        default=1.0,
        ge=0,
        le=256,
        description="Ray CPUs per replica (also the inference threads, rounded up, unless runtime.intraOpThreads says).",
    )
    gpus: float = Field(default=0.0, ge=0, le=16, description="Ray GPUs per replica; with > 0 the CUDA execution provider is used.")
    memory_bytes: int | None = Field(default=None, ge=0, le=MAX_INT, description="Ray memory reserved per replica, in bytes.")


InferenceEngine = Literal["onnxruntime", "openvino"]
GraphOptimization = Literal["disabled", "basic", "extended", "all"]
InferencePrecision = Literal["fp32", "bf16"]


class RuntimeSpec(Strict):
    """How a replica runs its model file: the same ONNX file, preprocessing and postprocessing on either engine."""

    engine: InferenceEngine = Field(
        default="onnxruntime",
        description="Inference engine of each replica: `onnxruntime` (its CPU provider, or CUDA with resources.gpus > 0) or "
        "`openvino` (OpenVINO on the CPU, from the `openvino` package; CPU only, so resources.gpus must be 0).",
    )
    intra_op_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Threads one inference of a replica uses. Default: the replica's resources.cpus rounded up, at least 1.",
    )
    graph_optimization: GraphOptimization = Field(
        default="all",
        description="onnxruntime's graph optimization level (`all` is onnxruntime's own default: constant folding, fusions "
        "and the CPU's blocked layouts). OpenVINO always optimizes the graph and ignores it.",
    )
    precision: InferencePrecision = Field(
        default="fp32",
        description="Arithmetic of the model's floating-point layers: `fp32`, or `bf16` (openvino only; fast on CPUs with "
        "AVX512-BF16 or AMX, elsewhere OpenVINO keeps fp32; 8-bit mantissas, so check the accuracy with the benchmark). "
        "An INT8 (QDQ) model file runs its quantized layers in INT8 either way.",
    )

    @model_validator(mode="after")
    def _engine_supports(self) -> RuntimeSpec:
        if self.precision == "bf16" and self.engine != "openvino":
            raise ValueError("runtime.precision bf16 needs runtime.engine openvino (onnxruntime's CPU provider computes in fp32)")
        return self


class FaceParams(Strict):
    input_width: int = Field(default=640, ge=32, le=4096, multiple_of=32, description="Network input width in pixels (multiple of 32).")
    input_height: int = Field(default=384, ge=32, le=4096, multiple_of=32, description="Network input height in pixels (multiple of 32).")
    score_threshold: float = Field(default=0.5, gt=0, lt=1, description="Faces scoring below this are discarded.")
    nms_iou_threshold: float = Field(default=0.3, gt=0, le=1, description="Overlapping faces above this IoU are merged by NMS.")


class YoloParams(Strict):
    input_size: int = Field(default=640, ge=32, le=4096, multiple_of=32, description="Square letterbox input side in pixels.")
    score_threshold: float = Field(default=0.25, gt=0, lt=1, description="Boxes scoring below this are discarded.")
    nms_iou_threshold: float = Field(default=0.45, gt=0, le=1, description="Same-class boxes overlapping above this IoU are suppressed.")
    max_detections: int = Field(default=300, ge=1, le=10_000, description="Most boxes kept per frame after NMS.")
    class_names: list[str] = Field(
        default_factory=list, max_length=10_000, description="Label of each class index; class indices are used as labels when empty."
    )


class CameraHealthParams(Strict):
    input_width: int = Field(default=320, ge=16, le=4096, description="Frames are resized to this width before measuring.")
    input_height: int = Field(default=180, ge=16, le=4096, description="Frames are resized to this height before measuring.")
    dark_brightness_max: float = Field(default=40.0, ge=0, le=255, description="Mean grey level (0-255) below which a camera is `dark`.")
    covered_contrast_max: float = Field(
        default=8.0, ge=0, le=255, description="Grey-level standard deviation below which a camera is `covered` (uniform view)."
    )
    blurred_sharpness_max: float = Field(
        default=20.0,
        ge=0,
        le=1020**2,  # the 4-neighbour Laplacian of 8-bit pixels lies in [-1020, 1020]
        description="Variance of the Laplacian below which a camera is `blurred`.",
    )


ModelType = Literal["face", "yolo", "camera-health"]


class ModelSpec(Strict):
    name: str = Field(pattern=_ID_PATTERN, description="Model name, unique in the fleet; names its Serve deployment and its results.")
    type: ModelType = Field(
        description="What the model is: `face` (CenterFace), `yolo` (YOLOv8/YOLO11 export) or `camera-health` (tamper checks)."
    )
    model_uri: str | None = Field(
        default=None,
        description="The ONNX file: a local path or `s3://bucket/key` (fetched from the S3 store of `bucket`: its endpoint, "
        "region and credentials). Required for `face` and `yolo`; "
        "`camera-health` builds its own graph when it is not given.",
    )
    face: FaceParams | None = Field(default=None, description="Parameters of a `face` model.")
    yolo: YoloParams | None = Field(default=None, description="Parameters of a `yolo` model.")
    camera_health: CameraHealthParams | None = Field(default=None, description="Parameters of a `camera-health` model.")
    batching: BatchingSpec = Field(default_factory=BatchingSpec, description="Dynamic batching of this model.")
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec, description="Replica autoscaling of this model.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Resources of each replica.")
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec, description="Inference engine and its settings for each replica.")

    @model_validator(mode="before")
    @classmethod
    def _fill_params(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("type"), str):
            attr = PARAMS_ATTR.get(data["type"])
            if attr and data.get(attr) is None and data.get(key := _params_key(attr)) is None:
                data = {**data, key: {}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        own = PARAMS_ATTR[self.type]
        for model_type, attr in PARAMS_ATTR.items():
            if attr != own and getattr(self, attr) is not None:
                raise ValueError(
                    f"model {self.name!r} is of type {self.type!r} but sets `{_params_key(attr)}`, which belongs to type {model_type!r}"
                )
        if self.type != "camera-health" and not self.model_uri:
            raise ValueError(f"model {self.name!r} of type {self.type!r} needs `modelUri` (a local path or s3://bucket/key)")
        if self.runtime.engine == "openvino" and self.resources.gpus > 0:
            raise ValueError(
                f"model {self.name!r}: runtime.engine openvino runs on the CPU only, but resources.gpus is {self.resources.gpus:g}; "
                "set resources.gpus to 0, or use runtime.engine onnxruntime (CUDA) for the GPU"
            )
        return self

    @property
    def params(self) -> FaceParams | YoloParams | CameraHealthParams:
        """The parameters of this model's type (read for every frame a replica decodes)."""
        return getattr(self, PARAMS_ATTR[self.type])


PARAMS_ATTR: dict[str, str] = {"face": "face", "yolo": "yolo", "camera-health": "camera_health"}  # model type -> its parameters


def _params_key(attr: str) -> str:
    """The manifest key (camelCase) of a parameters attribute."""
    return ModelSpec.model_fields[attr].alias or attr


class ServingSpec(Strict):
    app_name: str = Field(default="camerafleet", pattern=_ID_PATTERN, description="Ray Serve application name.")
    route_prefix: str = Field(default="/infer", pattern=r"^/[a-zA-Z0-9/_-]*$", description="HTTP route of the inference application.")
    url: str | None = Field(
        default=None,
        description="HTTP URL of an inference service that runs elsewhere (e.g. a KubeRay RayService's serve "
        "Service). When set, consumers send batches there over HTTP and no local Serve app is started; when "
        "empty, `camerafleet run` deploys the app on its own Ray cluster and consumers use a DeploymentHandle. "
        "The environment variable CAMERAFLEET_SERVE_URL overrides it.",
    )
    ingress_replicas: int = Field(
        default=1, ge=1, le=1000, description="Replicas of the ingress deployment that fetches frames and fans them out to the models."
    )
    ingress_cpus: float = Field(default=0.25, ge=0, le=64, description="Ray CPUs per ingress replica.")
    ingress_max_ongoing_requests: int = Field(default=32, ge=1, le=100_000, description="Batches one ingress replica handles at once.")


class ClipsSpec(Strict):
    """Frames kept around events after the bucket's TTL: a copy of every frame from `preRollSeconds` before a track is
    first seen to `postRollSeconds` after its last sighting, under `Clips/<camera>/` in the fleet's bucket. The console
    makes an event's clip (MP4) from them when someone asks for it."""

    enabled: bool = Field(default=True, description="Keep the frames around events (needs events.enabled).")
    pre_roll_seconds: float = Field(default=5.0, ge=0, le=60, description="Frames kept before a track is first seen.")
    post_roll_seconds: float = Field(default=5.0, ge=0, le=60, description="Frames kept after a track's last sighting.")
    keep_days: int = Field(
        default=7,
        ge=1,
        le=365,
        description="Kept frames are deleted this many days after they were kept. On S3 the fleet's lifecycle rule expires "
        "objects after the longer of this and the frames' TTL (the producers delete frames after their TTL themselves).",
    )
    max_seconds: float = Field(default=120.0, ge=5, le=600, description="Longest clip the console makes (an event's first seconds).")


class EventsSpec(Strict):
    enabled: bool = Field(
        default=False,
        description="Track the objects the models detect, per camera and model, and turn the tracks into events (an object seen, "
        "zone entries, exits and loitering, line crossings) on the events topic: a stage of its own reading the results topic.",
    )
    actors: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Actors of the events stage (one consumer group on the results topic: no more of them work than it has partitions).",
    )
    cpus_per_actor: float = Field(default=0.25, ge=0, le=64, description="Ray CPUs reserved by each events actor.")
    reorder_window_ms: int = Field(
        default=2000,
        ge=0,
        le=60_000,
        description="How long a camera's results wait to be put back in capture order (consumers finish frames out of order); "
        "events come this much later, and a result later than this is counted late and not tracked.",
    )
    max_lost_seconds: float = Field(
        default=3.0, gt=0, le=600, description="A track not seen for this long has ended (its events end at its last sighting)."
    )
    reidentify_seconds: float = Field(
        default=10.0,
        ge=0,
        le=600,
        description="A lost track is kept this long (when longer than maxLostSeconds) and continued by a detection that looks like it "
        "(the colours the model's replica describes) and is no farther than it could have walked: a person hidden or missed for a "
        "few seconds keeps their track, so a line they crossed meanwhile is counted. 0: tracks follow motion only.",
    )
    clips: ClipsSpec = Field(default_factory=ClipsSpec, description="Frames kept around events, for their clips.")

    @property
    def keeps_clips(self) -> bool:
        return self.enabled and self.clips.enabled


class ResultsSpec(Strict):
    log_dir: str = Field(
        default="out/runs",
        description="Directory where each run writes `<runId>/results.jsonl` (one JSON record per frame) and its summary.",
    )
    local_log: bool = Field(
        default=True,
        description="Also append every result to `<runId>/results.jsonl` on the consumers' disk. Off on Kubernetes (the "
        "operator turns it off): consumers run on worker Pods whose disks are neither shared nor kept, and the file "
        "would grow until the kubelet evicts the Pod; the results topic is the record, and the run's ledger is counted from it.",
    )


_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"


class Toleration(Strict):
    key: str | None = Field(default=None, description="Taint key the toleration applies to; empty with operator Exists matches all.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty matches all."
    )
    toleration_seconds: int | None = Field(default=None, ge=0, le=MAX_INT, description="How long a NoExecute taint is tolerated.")


class PodResources(Strict):
    cpu: str = Field(
        default="2",
        pattern=_QUANTITY,
        description="CPU limit of the pod (Kubernetes quantity, e.g. 4 or 500m); KubeRay gives Ray this many CPUs. Also the request unless cpuRequest is set.",
    )
    memory: str = Field(
        default="8Gi",
        pattern=_QUANTITY,
        description="Memory limit of the pod (Kubernetes quantity, e.g. 16Gi). Also the request unless memoryRequest is set.",
    )
    gpus: int = Field(default=0, ge=0, le=16, description="nvidia.com/gpu limit of the pod.")
    cpu_request: str | None = Field(
        default=None,
        pattern=_QUANTITY,
        description="CPU the pod requests when less than its limit: lets a small node (a laptop, a test node) hold the fleet's pods.",
    )
    memory_request: str | None = Field(default=None, pattern=_QUANTITY, description="Memory the pod requests when less than its limit.")


class Placement(Strict):
    """Where a group's Pods may run: on a cluster whose node pools are all tainted, a group without a
    toleration never schedules."""

    node_selector: dict[str, str] = Field(
        default_factory=dict, max_length=32, description="Node labels the pods must run on (e.g. a GPU node pool)."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Taints the pods tolerate (e.g. nvidia.com/gpu)."
    )


class HeadSpec(PodResources, Placement):
    """A Ray head Pod: its resources and where it may run."""


class WorkerGroupSpec(Placement):
    replicas: int = Field(default=1, ge=0, le=1000, description="Ray worker pods at start.")
    min_replicas: int = Field(default=1, ge=0, le=1000, description="Fewest worker pods the Ray autoscaler keeps.")
    max_replicas: int = Field(default=4, ge=1, le=1000, description="Most worker pods the Ray autoscaler creates.")
    resources: PodResources = Field(
        default_factory=lambda: PodResources(cpu="8", memory="32Gi", gpus=1), description="Resources of each worker pod."
    )

    @model_validator(mode="after")
    def _ordered(self) -> WorkerGroupSpec:
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) must lie between minReplicas ({self.min_replicas}) and maxReplicas ({self.max_replicas})"
            )
        return self


class KubernetesSpec(Strict):
    image: str = Field(
        default="ghcr.io/camerafleet/camerafleet-ray:0.1.0",
        min_length=1,
        description="Container image with Ray and CameraFleet installed, used by the RayService and the RayJobs.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Image pull policy of every pod."
    )
    service_account_name: str | None = Field(default=None, description="ServiceAccount of the Ray pods (default: the namespace's default).")
    env_from_secrets: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="Secrets whose keys become environment variables of every Ray pod: S3 credentials "
        "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), Kafka's security settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, "
        "KAFKA_SSL_CA_FILE) and camera URLs named by cameras[].sourceSecretEnv.",
    )
    ca_secret: str | None = Field(
        default=None,
        alias="caSecret",
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description=f"A Secret of CA certificates (PEM) mounted read-only at {CA_DIR} in every Ray pod, for a Kafka or S3 "
        f"signed by a private CA: point KAFKA_SSL_CA_FILE / CAMERAFLEET_S3_CA_FILE (in a Secret of envFromSecrets) at its "
        f"files, e.g. {CA_DIR}/ca.crt.",
    )
    head: HeadSpec = Field(
        default_factory=lambda: HeadSpec(cpu="2", memory="8Gi"), description="Resources and placement of the Ray head pods."
    )
    gpu_workers: WorkerGroupSpec = Field(default_factory=WorkerGroupSpec, description="The RayService's worker group that runs the models.")
    job_workers: WorkerGroupSpec = Field(
        default_factory=lambda: WorkerGroupSpec(replicas=1, min_replicas=1, max_replicas=4, resources=PodResources(cpu="4", memory="8Gi")),
        description="The worker group of each producer and consumer RayJob.",
    )
    head_runs_work: bool = Field(
        default=False,
        description="Ray heads also run actors and model replicas (Ray gives them their CPU limit). Off by default: on a "
        "production cluster heads only coordinate; on a small node it saves the worker pods (set the worker groups' "
        "replicas and minReplicas to 0).",
    )
    console: bool = Field(
        default=True,
        description="Serve the fleet console (read-only camera tiles with detections) from the producer job's head, "
        "behind the ClusterIP Service `<fleet>-console` on port 8090 (`kubectl port-forward`). Off: no console, no Service.",
    )
    job_retry_initial_seconds: int = Field(
        default=10, ge=1, le=3600, description="First wait before a failed RayJob is resubmitted; doubles per failure."
    )
    job_retry_max_seconds: int = Field(default=600, ge=1, le=86400, description="Longest wait before a failed RayJob is resubmitted.")
    serving_upgrade: Literal["NewCluster", "Recreate"] = Field(
        default="NewCluster",
        description="How a cluster-level change of the RayService (image, head or worker resources, secrets, service account) "
        "is rolled out. NewCluster: KubeRay builds a second cluster and switches once its Serve app runs (no gap in "
        "serving, but twice the capacity for a while: on a full GPU cluster it never comes up, reported as "
        "ServingUpToDate False, reason UpgradeStalled). Recreate: the operator deletes the RayService and creates the "
        "new one (a gap in serving: frames meanwhile end dropped as stale, counted; fits a full cluster).",
    )
    upgrade_timeout_seconds: int = Field(
        default=900,
        ge=60,
        le=86400,
        description="How long a new serving cluster (serving Upgrade NewCluster) may take to come up before the fleet "
        "reports it as stalled (a Warning event and ServingUpToDate False); the old cluster keeps serving meanwhile.",
    )
    scheduling_timeout_seconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="How long one of the fleet's Pods may fit no node (too big for every node, a GPU or label no node has) "
        "before the fleet reports it (a Warning event and PodsScheduled False, naming the Pod, what it asks and the "
        "scheduler's reason); meanwhile a cluster autoscaler may add the node it needs.",
    )


# What a running fleet cannot change without starting again: the clients, stores and stages it sets up at start
# (the console's feeds among them, in whichever job serves it).
RESTART_SECTIONS = ("kafka", "bucket", "serving", "results", "events")


class FleetSpec(Strict):
    cameras: list[CameraSpec] = Field(
        min_length=1,
        max_length=MAX_CAMERAS,
        description=f"The cameras of the fleet (at most {MAX_CAMERAS}: each is a Kafka topic and a line of the fleet's status).",
    )
    models: list[ModelSpec] = Field(
        min_length=1, max_length=MAX_MODELS, description=f"The models every frame is sent to, concurrently (at most {MAX_MODELS})."
    )
    kafka: KafkaSpec = Field(default_factory=KafkaSpec, description="Kafka connection and topics.")
    bucket: BucketSpec = Field(default_factory=BucketSpec, description="Frame storage between producers and the inference service.")
    producer: ProducerSpec = Field(default_factory=ProducerSpec, description="The producer actor pool.")
    consumer: ConsumerSpec = Field(default_factory=ConsumerSpec, description="The consumer actor pool.")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="The Ray Serve inference application.")
    results: ResultsSpec = Field(default_factory=ResultsSpec, description="Where results are logged.")
    events: EventsSpec = Field(default_factory=EventsSpec, description="Tracks and events from the detections.")
    kubernetes: KubernetesSpec = Field(
        default_factory=KubernetesSpec, description="How the operator runs the fleet on Kubernetes; ignored by `camerafleet run`."
    )

    @model_validator(mode="after")
    def _unique(self) -> FleetSpec:
        for what, ids in (("camera id", [c.id for c in self.cameras]), ("model name", [m.name for m in self.models])):
            seen: set[str] = set()
            dupes = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
            if dupes:
                raise ValueError(f"duplicate {what}s: {', '.join(dupes)}; each must appear once")
        return self

    @model_validator(mode="after")
    def _shapes_need_events(self) -> FleetSpec:
        models = {m.name for m in self.models}
        for camera in self.cameras:
            shapes = [*camera.zones, *camera.lines]
            if shapes and not self.events.enabled:
                raise ValueError(f"camera {camera.id} has zones or lines, which need the events stage: set events.enabled: true")
            for shape in shapes:
                if unknown := sorted(set(shape.models) - models):
                    raise ValueError(f"camera {camera.id}, {shape.name!r}: no model named {', '.join(unknown)} in this fleet")
        return self

    def topic(self, camera_id: str) -> str:
        return f"{self.kafka.topic_prefix}{camera_id}"

    def restart_sections(self) -> dict[str, Any]:
        """The sections a running `camerafleet run` applies only when it starts again (it says so and keeps the old
        ones); on Kubernetes the operator replaces the jobs when they change. Settings at their defaults are left
        out: an operator upgrade that brings a new setting (with its default) changes no fleet's jobs."""
        return {name: getattr(self, name).model_dump(mode="json", by_alias=True, exclude_defaults=True) for name in RESTART_SECTIONS}

    def topics(self) -> dict[str, int]:
        """Every topic the fleet needs, with its partition count: one per camera, results and dead letter, and the events
        stage's three."""
        topics = {self.topic(c.id): self.kafka.partitions_per_topic for c in self.cameras}
        topics[self.kafka.results_topic] = self.kafka.partitions_per_topic
        topics[self.kafka.dead_letter_topic] = 1
        if self.events.enabled:
            topics[self.kafka.events_topic] = self.kafka.partitions_per_topic
            topics[self.kafka.events_state_topic] = 1  # the stage reads it whole when it takes over partitions
            topics[self.kafka.events_tracks_topic] = self.kafka.partitions_per_topic
        return topics

    def with_absolute_paths(self, base: Path) -> FleetSpec:
        """The spec with relative file paths (video sources, model files, log dir) made absolute, so Ray
        workers, whatever their working directory, open the files the user meant."""

        def local(path: str | None) -> str | None:
            if path is None or "://" in path or path.startswith("synthetic:") or Path(path).is_absolute():
                return path
            return str((base / path).resolve())

        return self.model_copy(
            update={
                # With sourceSecretEnv, `source` is only the camera's name in logs, not a path.
                "cameras": [c if c.source_secret_env else c.model_copy(update={"source": local(c.source)}) for c in self.cameras],
                "models": [m.model_copy(update={"model_uri": local(m.model_uri)}) for m in self.models],
                "results": self.results.model_copy(update={"log_dir": local(self.results.log_dir)}),
            }
        )

    def serving_app(self, fleet: str) -> ServingAppSpec:
        """The Serve application of this spec for the fleet named ``fleet``."""
        return ServingAppSpec(
            fleet=fleet, models=self.models, bucket=self.bucket, serving=self.serving, max_frame_age_ms=self.consumer.max_frame_age_ms
        )

    def bucket_retention_seconds(self) -> int:
        """How long the fleet's bucket keeps anything at most: the frames' TTL, or the kept frames' days if longer."""
        clips = self.events.clips.keep_days * 86400 if self.events.keeps_clips else 0
        return max(self.bucket.ttl_seconds, clips)

    def requested_cpus(self) -> float:
        """Ray CPUs the fleet reserves at start (initial replicas and actors)."""
        models = sum((m.autoscaling.initial_replicas or m.autoscaling.min_replicas) * m.resources.cpus for m in self.models)
        return (
            models
            + self.serving.ingress_replicas * self.serving.ingress_cpus
            + self.producer.actors * self.producer.cpus_per_actor
            + self.consumer.actors * self.consumer.cpus_per_actor
            + (self.events.actors * self.events.cpus_per_actor if self.events.enabled else 0.0)
        )


class ServingAppSpec(Strict):
    """What the Serve application of a fleet needs, and nothing else: a RayService's `serveConfigV2` args.
    Cameras, producers and consumers are not in it, so editing them never redeploys the models."""

    fleet: str = Field(pattern=_ID_PATTERN, description="The fleet's name; labels the models' metrics.")
    models: list[ModelSpec] = Field(min_length=1, max_length=MAX_MODELS, description="The models every frame is sent to.")
    bucket: BucketSpec = Field(description="Where the ingress fetches frames (and s3:// models come from).")
    serving: ServingSpec = Field(description="The Ray Serve application.")
    max_frame_age_ms: int = Field(
        default_factory=lambda: ConsumerSpec().max_frame_age_ms,
        ge=1,
        le=MAX_INT,
        description="Frames older than this are dropped as stale before and during inference (on a RayService it comes "
        "through the ingress's user_config, so editing it restarts no replica).",
    )


class Metadata(Strict):
    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True, frozen=True)
    name: str = Field(pattern=_ID_PATTERN, description="Fleet name.")
    namespace: str | None = Field(default=None, description="Kubernetes namespace (ignored by `camerafleet run`).")

    @model_validator(mode="after")
    def _exact_extras(self) -> Metadata:
        """Other metadata (labels, annotations, ...) is kept as given, but must survive JSON exactly: no inf or NaN, no
        integer beyond 2**53 (Kubernetes and the console's JavaScript read numbers as float64)."""
        for key, value in (self.model_extra or {}).items():
            if not _exact_in_json(value):
                raise ValueError(
                    f"metadata.{key} holds inf, NaN or an integer beyond 2**53, which JSON and Kubernetes cannot carry exactly"
                )
        return self


def _exact_in_json(value: Any) -> bool:
    """No inf, NaN or integer beyond ±2**53 anywhere in `value`. Each container is visited once: YAML aliases share them, and a
    walk of every path through an alias bomb would take exponential time."""
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, int) and not -MAX_INT <= item <= MAX_INT:
            return False
        if isinstance(item, dict | list) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item.values() if isinstance(item, dict) else item)
    return True


class CameraFleet(Strict):
    api_version: Literal["camerafleet.io/v1alpha1"] = Field(description="Always camerafleet.io/v1alpha1.")
    kind: Literal["CameraFleet"] = Field(description="Always CameraFleet.")
    metadata: Metadata = Field(description="Name of the fleet (Kubernetes object metadata).")
    spec: FleetSpec = Field(description="What the fleet runs.")
    status: dict[str, Any] | None = Field(default=None, description="Written by the operator; ignored when running locally.")


class ManifestError(ValueError):
    """A manifest that cannot be run; the message lists every problem with its field path."""


_QUOTED_CATEGORIES = {"Cc", "Cs", "Zs", "Zl", "Zp"}


def _path_part(part: str | int) -> str:
    """One step of a field's path as the message shows it: a key that is empty or holds a blank, a line break, a
    control character or a lone surrogate is quoted (a raw line break would break the one-problem-per-line list)."""
    text = str(part)
    return text if text and not any(unicodedata.category(c) in _QUOTED_CATEGORIES for c in text) else repr(text)


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} problem(s) in the CameraFleet manifest:"]
    for e in err.errors():
        path = ".".join(_path_part(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling; see `camerafleet validate --help` for the schema)"
        elif e["type"] in ("literal_error", "enum") and isinstance(e.get("input"), (str, int, float)):
            msg += f" (got {str(e['input'])[:60]!r})"
        lines.append(f"  - {path}: {msg}")
    return "\n".join(lines)


def parse_manifest(data: Any, source: str = "manifest") -> CameraFleet:
    try:
        return CameraFleet.model_validate(data)
    except ValidationError as err:
        raise ManifestError(format_validation_error(err, source)) from None


def manifest_from_text(text: str, source: str) -> CameraFleet:
    """A manifest from its YAML text; `source` (a path, a ConfigMap) names it in errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ManifestError(f"{source}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: expected a CameraFleet mapping with apiVersion, kind, metadata and spec")
    return parse_manifest(data, source)


def load_manifest(path: str | Path) -> CameraFleet:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ManifestError(f"{path}: cannot read the manifest: {err.strerror}") from None
    return manifest_from_text(text, str(path))
