"""The contract between the Serve deployment and a model: `OnnxModel`.

A model is built from its manifest `ModelSpec`, `load()`s its ONNX file into an inference session and
then answers `infer(images)` for a whole batch of BGR frames with one session run, returning one
JSON-serializable dict per frame. Subclasses only say how frames become a tensor (`preprocess`) and
how the outputs become results (`postprocess`); file resolution, the engine (onnxruntime or OpenVINO,
behind `Session`), execution-provider choice, threading and input checks live here once.

Frames may reach a model smaller than the camera's (decoded at a DCT scale, see `imaging`): `infer`
then gets each frame's original size, and results come back in the original frame's pixels.
"""

from __future__ import annotations

import logging
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np

from camerafleet.api.manifest import BucketSpec, ModelSpec, ResourcesSpec, RuntimeSpec
from camerafleet.models.fetch import resolve_model_uri
from camerafleet.profiling import stage

if TYPE_CHECKING:
    import onnx
    import onnxruntime

logger = logging.getLogger("camerafleet.models")

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

MetaT = TypeVar("MetaT")

FrameSize = tuple[int, int]
"""(width, height) of a frame as the camera took it."""

Shape = list[int | None]
"""A tensor shape; None for a dynamic dimension."""


class GpuUnavailable(RuntimeError):
    """A model asks for GPUs but onnxruntime cannot use CUDA: the replica must not start, holding a GPU
    and running on the CPU."""


class EngineUnavailable(RuntimeError):
    """The manifest asks for an inference engine this installation does not have."""


def choose_providers(resources: ResourcesSpec, available: Sequence[str]) -> tuple[list[str], str]:
    """Pick onnxruntime execution providers for `resources`; returns (providers, reason for the log).

    CUDA when GPUs are requested, with the CPU provider behind it for the operators CUDA lacks; the CPU
    provider alone when none are. GpuUnavailable when GPUs are requested and onnxruntime has no CUDA.
    """
    if resources.gpus <= 0:
        return [CPU_PROVIDER], f"gpus={resources.gpus:g} requested; using CPU"
    if CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER], f"gpus={resources.gpus:g} requested and the CUDA provider is available; using CUDA"
    raise GpuUnavailable(
        f"gpus={resources.gpus:g} requested but onnxruntime has no CUDA provider (it has {', '.join(available)}): install "
        "onnxruntime-gpu (the camerafleet-ray image has it), or set the model's resources.gpus to 0 to run it on CPU"
    )


def intra_op_threads(resources: ResourcesSpec, runtime: RuntimeSpec | None = None) -> int:
    """Inference threads of a replica: runtime.intraOpThreads when set, else its Ray CPUs rounded up, at least one."""
    if runtime is not None and runtime.intra_op_threads is not None:
        return runtime.intra_op_threads
    return max(1, math.ceil(resources.cpus))


class Session(ABC):
    """What a model needs of an inference engine: the shapes of its graph and one run per batch. The
    same ONNX file, preprocess and postprocess serve every engine."""

    input_name: str

    @property
    @abstractmethod
    def devices(self) -> list[str]:
        """Where it runs, preferred first (onnxruntime's execution providers, or `OpenVINO:CPU`)."""

    @abstractmethod
    def input_shape(self) -> Shape:
        """Shape of the graph's first input."""

    @abstractmethod
    def output_shapes(self) -> list[Shape]:
        """Shapes of the graph's outputs, in graph order."""

    @abstractmethod
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs for one input batch, in graph order."""


def _static(dims: Sequence[Any]) -> Shape:
    return [d if isinstance(d, int) else None for d in dims]


class OnnxRuntimeSession(Session):
    def __init__(self, session: onnxruntime.InferenceSession):
        self.session = session
        self.input_name = session.get_inputs()[0].name

    @property
    def devices(self) -> list[str]:
        return self.session.get_providers()

    def input_shape(self) -> Shape:
        return _static(self.session.get_inputs()[0].shape)

    def output_shapes(self) -> list[Shape]:
        return [_static(o.shape) for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: batch})


class OpenVinoSession(Session):
    """An ONNX file compiled by OpenVINO for the CPU, with dynamic batch (the graph's own dynamic dims)."""

    def __init__(self, compiled: Any):
        self.compiled = compiled
        self.input_name = compiled.inputs[0].any_name
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()  # an infer request runs one inference at a time

    @property
    def devices(self) -> list[str]:
        return [f"OpenVINO:{d}" for d in self.compiled.get_property("EXECUTION_DEVICES")]

    def input_shape(self) -> Shape:
        return [d.get_length() if d.is_static else None for d in self.compiled.inputs[0].get_partial_shape()]

    def output_shapes(self) -> list[Shape]:
        return [[d.get_length() if d.is_static else None for d in o.get_partial_shape()] for o in self.compiled.outputs]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            result = self._request.infer({0: batch})  # copies the outputs out of the request's buffers
        return [result[o] for o in self.compiled.outputs]


class OnnxModel(ABC, Generic[MetaT]):
    """An ONNX model that turns a batch of BGR uint8 frames into one JSON-serializable dict per frame."""

    model_type: ClassVar[str]
    """The manifest `type` this class implements."""

    export_hint: ClassVar[str] = ""
    """How to produce a compatible ONNX file; appended to input-shape errors."""

    def __init__(self, spec: ModelSpec) -> None:
        if spec.type != self.model_type:
            raise ValueError(f"model {spec.name!r} has type {spec.type!r}; {type(self).__name__} serves {self.model_type!r}")
        self.spec = spec
        self._session: Session | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def providers(self) -> list[str]:
        """Where the loaded session runs, preferred first (onnxruntime's execution providers, or OpenVINO's device)."""
        return self._loaded_session().devices

    @abstractmethod
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image of the batch `preprocess` produces; checked against the model at load."""

    def min_frame_size(self, frame_width: int, frame_height: int) -> FrameSize | None:
        """The smallest (width, height) a frame of frame_width x frame_height may be decoded to for this model
        without losing detail its preprocess keeps (the size it resizes the frame to); None when the model
        needs the frame at full size. The ingress decodes each frame once, covering every model."""
        return None

    @abstractmethod
    def preprocess(self, images: list[np.ndarray], frame_sizes: Sequence[FrameSize] | None = None) -> tuple[np.ndarray, MetaT]:
        """Turn validated BGR uint8 HxWx3 images into the model's float32 input batch plus what postprocess
        needs. `frame_sizes` are the frames' original (width, height) when an image is a scaled-down
        decode of its frame (default: each image's own size); results are in those frames' pixels."""

    @abstractmethod
    def postprocess(self, outputs: list[np.ndarray], meta: MetaT) -> list[dict[str, Any]]:
        """Turn the session outputs (in graph output order) into one result dict per frame."""

    def builtin_graph(self) -> onnx.ModelProto | None:
        """The graph to run when the spec has no `modelUri`; None when the model type needs a file."""
        return None

    def load(self, store: BucketSpec | None = None) -> None:
        """Resolve the model file (an `s3://` one from the S3 store `store` describes), create the
        inference session of the spec's engine and check its input shape."""
        if self.spec.model_uri:
            source: str | bytes = str(resolve_model_uri(self.spec.model_uri, store))
        else:
            graph = self.builtin_graph()
            if graph is None:
                raise ValueError(f"model {self.name!r} of type {self.model_type!r} needs `modelUri` (a local path or s3://bucket/key)")
            source = graph.SerializeToString()
        if self.spec.runtime.engine == "openvino":
            session: Session = self._open_openvino(source)
        else:
            session = self._open_onnxruntime(source)
        self._check_input_shape(session.input_name, session.input_shape())
        self._session = session

    def _open_onnxruntime(self, source: str | bytes) -> Session:
        import onnxruntime as ort

        if self.spec.resources.gpus > 0 and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* wheels onnxruntime-gpu[cuda,cudnn] brings
        try:
            providers, reason = choose_providers(self.spec.resources, ort.get_available_providers())
        except GpuUnavailable as err:
            raise GpuUnavailable(f"model {self.name!r}: {err}") from None
        runtime = self.spec.runtime
        threads = intra_op_threads(self.spec.resources, runtime)
        logger.info(
            "model %r (%s): onnxruntime, %s, %d intra-op thread(s), graph optimization %s",
            self.name,
            self.model_type,
            reason,
            threads,
            runtime.graph_optimization,
        )

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[runtime.graph_optimization]
        try:
            session = ort.InferenceSession(source, sess_options=options, providers=providers)
        except Exception as err:  # onnxruntime raises bare RuntimeError subclasses from C++.
            where = self.spec.model_uri or "the built-in graph"
            raise RuntimeError(f"model {self.name!r}: onnxruntime cannot load {where}: {err}") from err
        if session.get_providers()[0] != providers[0]:  # CUDA present but not usable (driver, libraries, no device)
            raise GpuUnavailable(
                f"model {self.name!r}: gpus={self.spec.resources.gpus:g} requested but onnxruntime could not initialise {providers[0]} "
                f"(its log above says why: driver, CUDA or cuDNN libraries, no visible device); refusing to run on "
                f"{session.get_providers()[0]} while holding a GPU"
            )
        return OnnxRuntimeSession(session)

    def _open_openvino(self, source: str | bytes) -> Session:
        if self.spec.resources.gpus > 0:  # the manifest refuses it too; a spec built in code must not slip through
            raise EngineUnavailable(f"model {self.name!r}: runtime.engine openvino runs on the CPU only; set resources.gpus to 0")
        try:
            import openvino as ov
        except ImportError:
            raise EngineUnavailable(
                f"model {self.name!r}: runtime.engine is openvino but the `openvino` package is not installed: install "
                "camerafleet[pipeline] (it brings openvino) or `pip install openvino`, or set runtime.engine to onnxruntime"
            ) from None
        runtime = self.spec.runtime
        threads = intra_op_threads(self.spec.resources, runtime)
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,  # one inference at a time per replica, as with onnxruntime; Serve batches instead
            "PERFORMANCE_HINT": "LATENCY",
            # Replicas share nodes with producers and other replicas: pinning threads to cores would stack them.
            "ENABLE_CPU_PINNING": False,
            # OpenVINO picks bf16 by itself on CPUs that have it; the manifest decides instead.
            "INFERENCE_PRECISION_HINT": "bf16" if runtime.precision == "bf16" else "f32",
        }
        try:
            core = ov.Core()
            compiled = core.compile_model(core.read_model(source), "CPU", config)
        except Exception as err:  # OpenVINO raises RuntimeError subclasses from C++.
            where = self.spec.model_uri or "the built-in graph"
            raise RuntimeError(f"model {self.name!r}: openvino cannot load {where}: {err}") from err
        precision = compiled.get_property("INFERENCE_PRECISION_HINT")
        logger.info(
            "model %r (%s): openvino %s on the CPU, %d thread(s), precision %s (asked: %s)",
            self.name,
            self.model_type,
            ov.__version__,
            threads,
            precision,
            runtime.precision,
        )
        if runtime.precision == "bf16" and precision != ov.Type.bf16:
            logger.warning("model %r: this CPU has no bf16 arithmetic; OpenVINO computes in %s", self.name, precision)
        return OpenVinoSession(compiled)

    def infer(self, images: list[np.ndarray], frame_sizes: Sequence[FrameSize] | None = None) -> list[dict[str, Any]]:
        """Run the model once on a batch of BGR uint8 HxWx3 images (sizes may differ); one result per frame.

        `frame_sizes`: each image's original frame (width, height) when it was decoded smaller; results
        are then in the original frame's pixels."""
        if not images:
            return []
        session = self._loaded_session()
        for i, image in enumerate(images):
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                described = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
                raise ValueError(f"model {self.name!r}: image {i} of the batch is a {described}; expected a BGR uint8 HxWx3 array")
            if image.shape[0] == 0 or image.shape[1] == 0:
                raise ValueError(f"model {self.name!r}: image {i} of the batch is empty (shape {image.shape})")
        if frame_sizes is not None:
            if len(frame_sizes) != len(images):
                raise ValueError(f"model {self.name!r}: {len(frame_sizes)} frame sizes for {len(images)} images")
            for i, (width, height) in enumerate(frame_sizes):
                if width < 1 or height < 1:
                    raise ValueError(f"model {self.name!r}: frame {i} has the impossible size {width}x{height}")
        n = len(images)
        with stage(f"preprocess:{self.name}", frames=n):
            batch, meta = self.preprocess(images, frame_sizes)
            batch = np.ascontiguousarray(batch, dtype=np.float32)
        with stage(f"inference:{self.name}", frames=n, process_wide=True):  # the engines may use their own threads
            outputs = session.run(batch)
        with stage(f"postprocess:{self.name}", frames=n):
            return self.postprocess(outputs, meta)

    def _loaded_session(self) -> Session:
        if self._session is None:
            raise RuntimeError(f"model {self.name!r} is not loaded; call load() first")
        return self._session

    def _check_input_shape(self, input_name: str, model_shape: Shape) -> None:
        expected = (None, *self.input_shape())
        problems = []
        if len(model_shape) != len(expected):
            problems.append(f"it has {len(model_shape)} dimensions, not 4 (N, C, H, W)")
        else:
            if isinstance(model_shape[0], int):
                problems.append(f"its batch dimension is fixed at {model_shape[0]} (it must be dynamic)")
            for axis, want, have in zip("CHW", expected[1:], model_shape[1:], strict=True):
                if isinstance(have, int) and have != want:
                    problems.append(f"{axis} is {have} but the parameters give {want}")
        if problems:
            shown = ["?" if d is None else d for d in model_shape]
            raise ValueError(
                f"model {self.name!r}: input {input_name!r} has shape {shown}, expected [N, {', '.join(map(str, expected[1:]))}]: "
                f"{'; '.join(problems)}. {self.export_hint}".rstrip()
            )


def frame_sizes_of(images: Sequence[np.ndarray], frame_sizes: Sequence[FrameSize] | None) -> list[FrameSize]:
    """Each image's original frame (width, height): the given sizes, or the images' own."""
    if frame_sizes is None:
        return [(image.shape[1], image.shape[0]) for image in images]
    return [(int(w), int(h)) for w, h in frame_sizes]


def resize_to_planes(image: np.ndarray, size: FrameSize, out: np.ndarray, interpolation: int, rgb: bool, work: np.ndarray) -> None:
    """Resize a BGR HxWx3 image to `size` (width, height) and write it as three float32 planes into `out`
    (3 x height x width), in RGB order when `rgb`: the resize, the channel swap, the HWC -> CHW layout
    change and the float conversion in one pass over contiguous memory (`work` is a height x width x 3
    uint8 scratch image), about half the cost of a stacked resize, a reversed view and a transposing astype."""
    import cv2

    source = image
    if (image.shape[1], image.shape[0]) != size:
        cv2.resize(image, size, dst=work, interpolation=interpolation)
        source = work
    blue, green, red = cv2.split(source)
    out[0], out[1], out[2] = (red, green, blue) if rgb else (blue, green, red)


def decode_cover(models: Sequence[OnnxModel], frame_width: int, frame_height: int) -> FrameSize | None:
    """The (width, height) a frame of frame_width x frame_height must be decoded to, at least, to serve every
    one of `models` (each model's `min_frame_size`, the larger in each dimension); None when one needs full size."""
    cover = (0, 0)
    for model in models:
        need = model.min_frame_size(frame_width, frame_height)
        if need is None:
            return None
        cover = (max(cover[0], need[0]), max(cover[1], need[1]))
    return cover
