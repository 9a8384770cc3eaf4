"""What a model needs of an inference engine (`Session`), and what every engine shares: its errors and
how many threads a replica's inference gets. One module per engine beside this one; `ENGINES` in the
package picks it by the manifest's `runtime.engine`."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from camerafleet.api.manifest import ResourcesSpec, RuntimeSpec

Shape = list[int | None]
"""A tensor shape; None for a dynamic dimension."""


class GpuUnavailable(RuntimeError):
    """A model asks for GPUs but onnxruntime cannot use CUDA: the replica must not start, holding a GPU
    and running on the CPU."""


class EngineUnavailable(RuntimeError):
    """The manifest asks for an inference engine this installation does not have."""


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


def static_shape(dims: Sequence[Any]) -> Shape:
    return [d if isinstance(d, int) else None for d in dims]
