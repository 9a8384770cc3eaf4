"""The contract between the Serve deployment and a model: `OnnxModel`.

A model is built from its manifest `ModelSpec`, `load()`s its ONNX file into an onnxruntime session
and then answers `infer(images)` for a whole batch of BGR frames with one session run, returning one
JSON-serializable dict per frame. Subclasses only say how frames become a tensor (`preprocess`) and
how the outputs become results (`postprocess`); file resolution, execution-provider choice, threading
and input checks live here once.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np

from camerafleet.api.manifest import BucketSpec, ModelSpec, ResourcesSpec
from camerafleet.models.fetch import resolve_model_uri
from camerafleet.profiling import stage

if TYPE_CHECKING:
    import onnx
    import onnxruntime

logger = logging.getLogger("camerafleet.models")

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

MetaT = TypeVar("MetaT")


class GpuUnavailable(RuntimeError):
    """A model asks for GPUs but onnxruntime cannot use CUDA: the replica must not start, holding a GPU
    and running on the CPU."""


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


def intra_op_threads(resources: ResourcesSpec) -> int:
    """onnxruntime intra-op threads of a replica: its Ray CPUs rounded up, at least one."""
    return max(1, math.ceil(resources.cpus))


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
        self._session: onnxruntime.InferenceSession | None = None
        self._input_name = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def providers(self) -> list[str]:
        """Execution providers of the loaded session, preferred first."""
        return self._loaded_session().get_providers()

    @abstractmethod
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image of the batch `preprocess` produces; checked against the model at load."""

    @abstractmethod
    def preprocess(self, images: list[np.ndarray]) -> tuple[np.ndarray, MetaT]:
        """Turn validated BGR uint8 HxWx3 frames into the model's input batch plus what postprocess needs."""

    @abstractmethod
    def postprocess(self, outputs: list[np.ndarray], meta: MetaT) -> list[dict[str, Any]]:
        """Turn the session outputs (in graph output order) into one result dict per frame."""

    def builtin_graph(self) -> onnx.ModelProto | None:
        """The graph to run when the spec has no `modelUri`; None when the model type needs a file."""
        return None

    def load(self, store: BucketSpec | None = None) -> None:
        """Resolve the model file (an `s3://` one from the S3 store `store` describes), create the
        onnxruntime session and check its input shape."""
        import onnxruntime as ort

        if self.spec.model_uri:
            source: str | bytes = str(resolve_model_uri(self.spec.model_uri, store))
        else:
            graph = self.builtin_graph()
            if graph is None:
                raise ValueError(f"model {self.name!r} of type {self.model_type!r} needs `modelUri` (a local path or s3://bucket/key)")
            source = graph.SerializeToString()

        if self.spec.resources.gpus > 0 and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* wheels onnxruntime-gpu[cuda,cudnn] brings
        try:
            providers, reason = choose_providers(self.spec.resources, ort.get_available_providers())
        except GpuUnavailable as err:
            raise GpuUnavailable(f"model {self.name!r}: {err}") from None
        logger.info("model %r (%s): %s", self.name, self.model_type, reason)

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads(self.spec.resources)
        options.inter_op_num_threads = 1
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

        model_input = session.get_inputs()[0]
        self._check_input_shape(model_input.name, list(model_input.shape))
        self._input_name = model_input.name
        self._session = session

    def infer(self, images: list[np.ndarray]) -> list[dict[str, Any]]:
        """Run the model once on a batch of BGR uint8 HxWx3 frames (sizes may differ); one result per frame."""
        if not images:
            return []
        session = self._loaded_session()
        for i, image in enumerate(images):
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                described = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
                raise ValueError(f"model {self.name!r}: image {i} of the batch is a {described}; expected a BGR uint8 HxWx3 array")
            if image.shape[0] == 0 or image.shape[1] == 0:
                raise ValueError(f"model {self.name!r}: image {i} of the batch is empty (shape {image.shape})")
        n = len(images)
        with stage(f"preprocess:{self.name}", frames=n):
            batch, meta = self.preprocess(images)
            feed = {self._input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        with stage(f"inference:{self.name}", frames=n, process_wide=True):  # onnxruntime may use its own threads
            outputs = session.run(None, feed)
        with stage(f"postprocess:{self.name}", frames=n):
            return self.postprocess(outputs, meta)

    def _loaded_session(self) -> onnxruntime.InferenceSession:
        if self._session is None:
            raise RuntimeError(f"model {self.name!r} is not loaded; call load() first")
        return self._session

    def _check_input_shape(self, input_name: str, model_shape: list[Any]) -> None:
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
            raise ValueError(
                f"model {self.name!r}: input {input_name!r} has shape {model_shape}, expected [N, {', '.join(map(str, expected[1:]))}]: "
                f"{'; '.join(problems)}. {self.export_hint}".rstrip()
            )
