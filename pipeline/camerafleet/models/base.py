"""The contract between the Serve deployment and a model: `OnnxModel`.

A model is built from its manifest `ModelSpec`, `load()`s its ONNX file into an inference session and
then answers `infer(images)` for a whole batch of BGR frames with one session run, returning one
JSON-serializable dict per frame. Subclasses only say how frames become a tensor (`preprocess`) and
how the outputs become results (`postprocess`); file resolution and input checks live here once, and the
engine (onnxruntime or OpenVINO, behind `Session`) is a module of its own in `engines/`.

Frames may reach a model smaller than the camera's (decoded at a DCT scale, see `imaging`): `infer`
then gets each frame's original size, and results come back in the original frame's pixels.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np

from camerafleet.api.manifest import BucketSpec, ModelSpec
from camerafleet.models.appearance import add_descriptions
from camerafleet.models.engines import Session, Shape, open_session
from camerafleet.models.fetch import resolve_model_uri
from camerafleet.profiling import stage

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger("camerafleet.models")

MetaT = TypeVar("MetaT")

FrameSize = tuple[int, int]
"""(width, height) of a frame as the camera took it."""


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
        needs the frame at full size. The model's replica decodes each frame at the DCT scale that covers it."""
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
        session = open_session(self.spec, source)
        self._check_input_shape(session.input_name, session.input_shape())
        self._session = session

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
            results = self.postprocess(outputs, meta)
            # Every detector's boxes are described here, where the frame is: the trackers know objects again by it.
            add_descriptions(images, frame_sizes_of(images, frame_sizes), results)
            return results

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
