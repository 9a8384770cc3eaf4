"""ONNX graphs the project builds itself instead of downloading.

`camera_health_graph` is the production tamper-check model (brightness, contrast and sharpness of
each frame, computed by onnxruntime like any other model). It is a pure function, so saved files are
reproducible. (The YOLO stand-in graph of the tests lives with the development tools, `hack/`.)
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # The IR version that introduced opset 17; every onnxruntime since 1.13 loads it.

# ITU-R BT.601 luma weights in the BGR channel order of OpenCV frames.
GREY_WEIGHTS_BGR = (0.114, 0.587, 0.299)
LAPLACIAN_3X3 = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))

HEALTH_INPUT = "frames"
HEALTH_OUTPUT = "health"


def onnx_model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="camerafleet")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def camera_health_graph() -> onnx.ModelProto:
    """Per-frame image statistics: input `frames` [N, 3, H, W] float32 BGR 0-255, output `health` [N, 3].

    The columns are brightness (mean grey level), contrast (standard deviation of grey) and sharpness
    (variance of the 3x3 Laplacian of grey over the valid region, so H and W must be at least 3).
    Grey is 0.114 B + 0.587 G + 0.299 R.
    """
    weights = [
        numpy_helper.from_array(np.array(GREY_WEIGHTS_BGR, dtype=np.float32).reshape(1, 3, 1, 1), "grey_weights"),
        numpy_helper.from_array(np.array(LAPLACIAN_3X3, dtype=np.float32).reshape(1, 1, 3, 3), "laplacian_kernel"),
    ]
    nodes = [helper.make_node("Conv", [HEALTH_INPUT, "grey_weights"], ["grey"])]
    nodes += _mean_and_variance("grey", "brightness", "grey_variance")
    nodes.append(helper.make_node("Sqrt", ["grey_variance"], ["contrast"]))
    nodes.append(helper.make_node("Conv", ["grey", "laplacian_kernel"], ["laplacian"]))
    nodes += _mean_and_variance("laplacian", "laplacian_mean", "sharpness")
    # Each statistic is [N, 1, 1, 1]; flatten to [N, 1] and put them side by side.
    for stat in ("brightness", "contrast", "sharpness"):
        nodes.append(helper.make_node("Flatten", [stat], [f"{stat}_column"], axis=1))
    nodes.append(helper.make_node("Concat", ["brightness_column", "contrast_column", "sharpness_column"], [HEALTH_OUTPUT], axis=1))
    graph = helper.make_graph(
        nodes,
        "camerafleet_camera_health",
        [helper.make_tensor_value_info(HEALTH_INPUT, TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(HEALTH_OUTPUT, TensorProto.FLOAT, ["N", 3])],
        initializer=weights,
    )
    return onnx_model(graph)


def _mean_and_variance(x: str, mean: str, variance: str) -> list[onnx.NodeProto]:
    """Nodes computing the mean and population variance of `x` [N, 1, H, W] over H and W, kept [N, 1, 1, 1]."""
    return [
        helper.make_node("ReduceMean", [x], [mean], axes=[2, 3], keepdims=1),
        helper.make_node("Sub", [x, mean], [f"{x}_centred"]),
        helper.make_node("Mul", [f"{x}_centred", f"{x}_centred"], [f"{x}_squared"]),
        helper.make_node("ReduceMean", [f"{x}_squared"], [variance], axes=[2, 3], keepdims=1),
    ]
