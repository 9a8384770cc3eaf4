"""The OpenVINO engine: the same ONNX file compiled for the CPU (fp32, or bf16 where the CPU has it)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from camerafleet.api.manifest import ModelSpec
from camerafleet.models.engines.base import EngineUnavailable, Session, Shape, intra_op_threads

logger = logging.getLogger("camerafleet.models")


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


def open_openvino(spec: ModelSpec, source: str | bytes) -> Session:
    if spec.resources.gpus > 0:  # the manifest refuses it too; a spec built in code must not slip through
        raise EngineUnavailable(f"model {spec.name!r}: runtime.engine openvino runs on the CPU only; set resources.gpus to 0")
    try:
        import openvino as ov
    except ImportError:
        raise EngineUnavailable(
            f"model {spec.name!r}: runtime.engine is openvino but the `openvino` package is not installed: install "
            "camerafleet[pipeline] (it brings openvino) or `pip install openvino`, or set runtime.engine to onnxruntime"
        ) from None
    runtime = spec.runtime
    threads = intra_op_threads(spec.resources, runtime)
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
        where = spec.model_uri or "the built-in graph"
        raise RuntimeError(f"model {spec.name!r}: openvino cannot load {where}: {err}") from err
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    logger.info(
        "model %r (%s): openvino %s on the CPU, %d thread(s), precision %s (asked: %s)",
        spec.name,
        spec.type,
        ov.__version__,
        threads,
        precision,
        runtime.precision,
    )
    if runtime.precision == "bf16" and precision != ov.Type.bf16:
        logger.warning("model %r: this CPU has no bf16 arithmetic; OpenVINO computes in %s", spec.name, precision)
    return OpenVinoSession(compiled)
