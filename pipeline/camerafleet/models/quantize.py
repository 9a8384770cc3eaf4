"""INT8 models: `python -m camerafleet.models.quantize --model IN.onnx --frames DIR_OR_VIDEO --out OUT.onnx`.

Inference is most of a frame's CPU cost, and an INT8 model runs its convolutions with 8-bit integer
arithmetic (AVX-VNNI / AVX512-VNNI on current x86 CPUs) at about twice the speed of FP32. Static
quantization needs the range of every activation, measured on real frames (calibration): this tool
takes frames from a directory of images or a video, preprocesses each exactly as the model's own
`preprocess` does (same resize, colour order and scaling, from the manifest parameters of `--type`
and `--params`), and writes a QDQ model (QuantizeLinear / DequantizeLinear pairs around each
quantized operator) with per-channel weights. A QDQ file is a plain ONNX file: onnxruntime and OpenVINO
both run it, and a manifest uses it through `modelUri` like any other.

Quantization changes results: check the quantized model finds the same objects as the FP32 one on
your cameras' frames before using it (the benchmark does it for the demo clips: detections matched
with IoU >= 0.5). Calibrate on frames like the ones the cameras see.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
from onnx import version_converter
from pydantic import ValidationError

from camerafleet.api.manifest import ModelSpec
from camerafleet.models.base import OnnxModel
from camerafleet.models.registry import create_model

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
QDQ_OPSET = 13  # per-channel DequantizeLinear (its `axis` attribute) needs opset 13
DEFAULT_MAX_FRAMES = 64


class QuantizeError(RuntimeError):
    """Calibration or quantization could not be done; the message says why."""


def read_frames(source: Path, every: int = 1, max_frames: int = DEFAULT_MAX_FRAMES, offset: int = 0) -> Iterator[np.ndarray]:
    """BGR frames from a directory of images (sorted by name) or a video file: every `every`-th one from
    index `offset`, at most `max_frames`."""
    if every < 1 or max_frames < 1 or offset < 0:
        raise QuantizeError(f"every ({every}) and max_frames ({max_frames}) must be at least 1, offset ({offset}) at least 0")
    taken = 0
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files[offset::every]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise QuantizeError(f"{path} is not a readable image")
            yield image
            taken += 1
            if taken >= max_frames:
                return
        return
    if not source.is_file():
        raise QuantizeError(f"{source} is neither a directory of images nor a video file")
    capture = cv2.VideoCapture(str(source))
    try:
        index = 0
        while taken < max_frames:
            ok, image = capture.read()
            if not ok:
                break
            if index >= offset and (index - offset) % every == 0:
                yield image
                taken += 1
            index += 1
    finally:
        capture.release()


def _with_qdq_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return version_converter.convert_version(model, QDQ_OPSET) if opset < QDQ_OPSET else model


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol: one preprocessed frame per call, then None."""

    def __init__(self, model: OnnxModel, input_name: str, frames: Iterable[np.ndarray]):
        self.model, self.input_name, self.frames = model, input_name, iter(frames)
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        frame = next(self.frames, None)
        if frame is None:
            return None
        batch, _ = self.model.preprocess([frame])
        self.count += 1
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def rewind(self) -> None:  # part of the protocol; calibration reads the frames once
        raise QuantizeError("calibration frames can be read only once")


def quantize(spec: ModelSpec, frames: Iterable[np.ndarray], out: Path) -> dict[str, Any]:
    """Write the INT8 QDQ version of `spec`'s model file (`spec.modelUri`, a local path) to `out`,
    calibrated on `frames` (BGR images) preprocessed by the model of `spec`. Returns what was done."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not spec.model_uri or not Path(spec.model_uri).is_file():
        raise QuantizeError(f"model file {spec.model_uri!r} does not exist (a local ONNX file is needed)")
    model = create_model(spec)  # its preprocess, unloaded: the session comes from the FP32 file below
    source = onnx.load(spec.model_uri)
    input_name = source.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="camerafleet-quantize-") as tmp:
        upgraded, prepared = Path(tmp) / "opset.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(_with_qdq_opset(source), str(upgraded))
        # Folds BatchNorm into the convolutions and infers shapes, so each convolution is quantized once.
        # Symbolic shape inference is skipped: it needs sympy, and the graphs here have plain shapes.
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
        reader = _Calibration(model, input_name, frames)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial")
        quantize_static(
            str(prepared),
            str(partial),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,  # one scale per output channel: much closer to FP32 for convolutions
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        if reader.count == 0:
            partial.unlink(missing_ok=True)
            raise QuantizeError("no calibration frames were read")
        quantized = onnx.load(str(partial))
        note = {"source": Path(spec.model_uri).name, "type": spec.type, "calibration_frames": reader.count}
        onnx.helper.set_model_props(quantized, {"camerafleet.quantized": json.dumps(note)})
        onnx.save(quantized, str(partial))
        partial.replace(out)
    return {**note, "out": str(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m camerafleet.models.quantize",
        description="Write an INT8 (QDQ, static, per-channel) version of an ONNX model, calibrated on frames preprocessed "
        "as the model's own preprocess does. Check its accuracy against the FP32 model before using it.",
    )
    parser.add_argument("--model", type=Path, required=True, help="the FP32 ONNX file")
    parser.add_argument("--frames", type=Path, required=True, help="calibration frames: a directory of images or a video file")
    parser.add_argument("--out", type=Path, required=True, help="where to write the INT8 ONNX file")
    parser.add_argument("--type", default="face", choices=["face", "yolo", "camera-health"], help="the manifest model type (default: face)")
    parser.add_argument(
        "--params",
        default="{}",
        help='the model\'s manifest parameters as JSON, as under `face:` / `yolo:` (e.g. \'{"inputWidth": 640, "inputHeight": 384}\')',
    )
    parser.add_argument("--every", type=int, default=15, help="take every Nth frame of a video or directory (default: 15)")
    parser.add_argument(
        "--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help=f"calibration frames at most (default: {DEFAULT_MAX_FRAMES})"
    )
    args = parser.parse_args(argv)
    try:
        params = json.loads(args.params)
        field = {"face": "face", "yolo": "yolo", "camera-health": "cameraHealth"}[args.type]
        spec = ModelSpec.model_validate({"name": "quantize", "type": args.type, "modelUri": str(args.model), field: params})
        done = quantize(spec, read_frames(args.frames, args.every, args.max_frames), args.out)
    except (json.JSONDecodeError, ValidationError) as err:
        print(f"error: --params: {err}", file=sys.stderr)
        return 2
    except (QuantizeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.out}: INT8 (QDQ) from {done['source']}, calibrated on {done['calibration_frames']} frames of {args.frames}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
