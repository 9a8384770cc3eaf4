"""Inference engines, one module each (as Frigate has one detector plugin per engine): `ENGINES` maps the
manifest's `runtime.engine` to the function that opens a model's ONNX file with it."""

from __future__ import annotations

from collections.abc import Callable

from camerafleet.api.manifest import InferenceEngine, ModelSpec
from camerafleet.models.engines.base import EngineUnavailable, GpuUnavailable, Session, Shape, intra_op_threads
from camerafleet.models.engines.onnxruntime_engine import open_onnxruntime
from camerafleet.models.engines.openvino_engine import open_openvino

ENGINES: dict[InferenceEngine, Callable[[ModelSpec, str | bytes], Session]] = {
    "onnxruntime": open_onnxruntime,
    "openvino": open_openvino,
}

__all__ = ["ENGINES", "EngineUnavailable", "GpuUnavailable", "Session", "Shape", "intra_op_threads", "open_session"]


def open_session(spec: ModelSpec, source: str | bytes) -> Session:
    """The model's ONNX file (a path, or the serialized graph) opened with the engine its spec names."""
    return ENGINES[spec.runtime.engine](spec, source)
