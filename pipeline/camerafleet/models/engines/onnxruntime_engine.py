"""The onnxruntime engine: its CPU provider, or CUDA when a model asks for GPUs (never the CPU while holding a GPU)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from camerafleet.api.manifest import ModelSpec, ResourcesSpec
from camerafleet.models.engines.base import GpuUnavailable, Session, Shape, intra_op_threads, static_shape

if TYPE_CHECKING:
    import onnxruntime

logger = logging.getLogger("camerafleet.models")

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


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


class OnnxRuntimeSession(Session):
    def __init__(self, session: onnxruntime.InferenceSession):
        self.session = session
        self.input_name = session.get_inputs()[0].name

    @property
    def devices(self) -> list[str]:
        return self.session.get_providers()

    def input_shape(self) -> Shape:
        return static_shape(self.session.get_inputs()[0].shape)

    def output_shapes(self) -> list[Shape]:
        return [static_shape(o.shape) for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: batch})


def open_onnxruntime(spec: ModelSpec, source: str | bytes) -> Session:
    import onnxruntime as ort

    if spec.resources.gpus > 0 and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* wheels onnxruntime-gpu[cuda,cudnn] brings
    try:
        providers, reason = choose_providers(spec.resources, ort.get_available_providers())
    except GpuUnavailable as err:
        raise GpuUnavailable(f"model {spec.name!r}: {err}") from None
    runtime = spec.runtime
    threads = intra_op_threads(spec.resources, runtime)
    logger.info(
        "model %r (%s): onnxruntime, %s, %d intra-op thread(s), graph optimization %s",
        spec.name,
        spec.type,
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
        where = spec.model_uri or "the built-in graph"
        raise RuntimeError(f"model {spec.name!r}: onnxruntime cannot load {where}: {err}") from err
    if session.get_providers()[0] != providers[0]:  # CUDA present but not usable (driver, libraries, no device)
        raise GpuUnavailable(
            f"model {spec.name!r}: gpus={spec.resources.gpus:g} requested but onnxruntime could not initialise {providers[0]} "
            f"(its log above says why: driver, CUDA or cuDNN libraries, no visible device); refusing to run on "
            f"{session.get_providers()[0]} while holding a GPU"
        )
    return OnnxRuntimeSession(session)
