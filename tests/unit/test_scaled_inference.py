"""Frames decoded smaller than the camera took them (DCT scaling), the inference engines as a manifest choice,
and INT8 models: results stay in the original frame's pixels and agree with the full-size FP32 path."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
from pydantic import ValidationError
from skimage import data

from camerafleet.api.manifest import ModelSpec, ResourcesSpec, RuntimeSpec
from camerafleet.api.outcomes import Reason
from camerafleet.imaging import decode_jpeg, scale_divisor
from camerafleet.models import quantize
from camerafleet.models.engines import EngineUnavailable, intra_op_threads
from camerafleet.models.registry import create_model
from camerafleet_dev.bench.limit import VARIANTS, _variant_spec, accuracy, format_variants, match_boxes
from camerafleet_dev.test_graphs import yolo_test_graph

REPO_ROOT = Path(__file__).resolve().parents[2]
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="the openvino package is not installed")


@pytest.fixture(scope="module")
def centerface() -> str:
    path = REPO_ROOT / "models" / "centerface.onnx"
    if not path.is_file():
        pytest.skip("models/centerface.onnx is missing (make models)")
    return str(path)


@pytest.fixture(scope="module")
def hd_jpeg() -> bytes:
    """A demo-like 1280x720 camera frame: the astronaut's poster, face about 250 px wide, stored as producers do."""
    frame = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (1280, 720), interpolation=cv2.INTER_CUBIC)
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def model(model_type: str, model_uri: str | None = None, **fields: Any) -> Any:
    m = create_model(ModelSpec(name="m", type=model_type, model_uri=model_uri, **fields))
    m.load()
    return m


def boxes(result: dict[str, Any]) -> list[list[float]]:
    return [d["box"] for d in result["detections"]]


# --- scale choice ---------------------------------------------------------------------------------------------


def test_each_model_says_what_it_needs_and_decodes_at_its_own_scale() -> None:
    face = create_model(ModelSpec(name="f", type="face", model_uri="f.onnx"))
    health = create_model(ModelSpec(name="h", type="camera-health"))
    yolo = create_model(ModelSpec(name="y", type="yolo", model_uri="y.onnx"))
    assert face.min_frame_size(1280, 720) == (640, 384)
    assert health.min_frame_size(1280, 720) == (320, 180)
    assert yolo.min_frame_size(1280, 720) == (640, 360)  # the letterbox's long side, not a 640x640 square
    assert yolo.min_frame_size(720, 1280) == (360, 640)
    assert scale_divisor(1280, 720, face.min_frame_size(1280, 720)) == 1  # 1/2 is 640x360: too short for 384
    assert scale_divisor(1920, 1080, face.min_frame_size(1920, 1080)) == 2  # 960x540 covers 640x384
    assert scale_divisor(1280, 720, yolo.min_frame_size(1280, 720)) == 2
    assert scale_divisor(1280, 720, health.min_frame_size(1280, 720)) == 4  # not held to the face model's full size
    assert scale_divisor(1280, 720, None) == 1


# --- results in frame pixels ----------------------------------------------------------------------------------


def test_face_boxes_in_frame_pixels_agree_between_full_and_scaled_decodes(centerface: str, hd_jpeg: bytes) -> None:
    face = model("face", centerface, face={"inputWidth": 320, "inputHeight": 192})
    cover = face.min_frame_size(1280, 720)
    full, half = decode_jpeg(hd_jpeg), decode_jpeg(hd_jpeg, cover=cover)
    assert half.shape == (360, 640, 3)
    [from_full], [from_half] = face.infer([full]), face.infer([half], [(1280, 720)])
    [a], [b] = from_full["detections"], from_half["detections"]
    assert b["box"] == pytest.approx(a["box"], abs=2)  # within two pixels of 1280x720
    assert np.asarray(b["landmarks"]) == pytest.approx(np.asarray(a["landmarks"]), abs=2)
    # Without the frame size the same detection would be in the pixels of the decoded image: half as large.
    [c] = face.infer([half])[0]["detections"]
    assert np.asarray(c["box"]) * 2 == pytest.approx(b["box"], abs=0.1)


def test_yolo_boxes_map_back_exactly_from_a_scaled_decode(tmp_path: Path) -> None:
    path = tmp_path / "yolo.onnx"
    known = [(320.0, 320.0, 200.0, 100.0, 0, 0.9), (600.0, 150.0, 100.0, 40.0, 1, 0.5)]
    path.write_bytes(yolo_test_graph(known, 2, input_size=640, num_anchors=8).SerializeToString())
    yolo = model("yolo", str(path))
    [full] = yolo.infer([np.zeros((720, 1280, 3), np.uint8)])
    [half] = yolo.infer([np.zeros((360, 640, 3), np.uint8)], [(1280, 720)])
    [odd] = yolo.infer([np.zeros((361, 641, 3), np.uint8)], [(1281, 721)])  # libjpeg rounds odd sizes up
    assert boxes(half) == boxes(full)
    assert np.asarray(boxes(odd)) == pytest.approx(np.asarray(boxes(full)), abs=1.5)
    assert max(b[2] for b in boxes(half)) == 1280.0  # clipped to the frame, not to the decoded image


def test_camera_health_of_a_quarter_decode_matches_the_full_frame(hd_jpeg: bytes) -> None:
    health = model("camera-health")
    quarter = decode_jpeg(hd_jpeg, cover=health.min_frame_size(1280, 720))
    assert quarter.shape == (180, 320, 3)
    [a], [b] = health.infer([decode_jpeg(hd_jpeg)]), health.infer([quarter], [(1280, 720)])
    assert a["flags"] == b["flags"]
    assert b["health"]["brightness"] == pytest.approx(a["health"]["brightness"], abs=1)
    assert b["health"]["contrast"] == pytest.approx(a["health"]["contrast"], rel=0.05)


def test_frame_sizes_are_checked() -> None:
    health = model("camera-health")
    with pytest.raises(ValueError, match="2 frame sizes for 1 images"):
        health.infer([np.zeros((10, 10, 3), np.uint8)], [(10, 10), (10, 10)])
    with pytest.raises(ValueError, match="impossible size 0x10"):
        health.infer([np.zeros((10, 10, 3), np.uint8)], [(0, 10)])


def test_the_ingress_checks_the_header_and_each_model_decodes_at_its_scale(hd_jpeg: bytes) -> None:
    """The ingress fetches the JPEG and reads its header only; a model's replica decodes it at the scale that covers
    its input, and a JPEG whose body is corrupt fails that frame with a reason, not the model's batch."""
    from camerafleet.serving.ingress import load_frame
    from camerafleet.serving.model_deployment import FrameFailure, SharedFrame, decode_frame

    class Bucket:
        def __init__(self, data: bytes):
            self.data = data

        def get(self, uri: str) -> bytes:
            return self.data

    ref = {"cameraId": "1", "seq": 0, "epochMs": 0, "captureTsMs": int(time.time() * 1000), "uri": "f", "width": 1280, "height": 720}
    msg, jpeg = load_frame(ref, Bucket(hd_jpeg), 10_000)
    assert (msg.width, msg.height, jpeg) == (1280, 720, hd_jpeg)
    mismatch = load_frame({**ref, "width": 640}, Bucket(hd_jpeg), 10_000)
    assert getattr(mismatch, "reason", None) == "size_mismatch"  # refused before any model decodes it
    assert getattr(load_frame(ref, Bucket(b"not a jpeg"), 10_000), "reason", None) == "decode_error"

    frame = SharedFrame(None, 0, 0, 1280, 720)
    quarter = decode_frame(hd_jpeg, frame, (320, 180))
    assert isinstance(quarter, np.ndarray) and quarter.shape == (180, 320, 3)
    assert decode_frame(hd_jpeg, frame, None).shape == (720, 1280, 3)  # type: ignore[union-attr]
    truncated = decode_frame(hd_jpeg[: len(hd_jpeg) // 2], frame, (320, 180))
    assert isinstance(truncated, FrameFailure) and truncated.reason == "decode_error"
    assert decode_frame(hd_jpeg, SharedFrame(None, 0, 0, 640, 360), None) == FrameFailure(
        Reason.SIZE_MISMATCH, "JPEG is 1280x720 but its frame message announces 640x360"
    )


# --- runtime: engines and their settings ------------------------------------------------------------------------


def test_runtime_spec_is_strict_and_checked() -> None:
    assert RuntimeSpec().model_dump(by_alias=True) == {
        "engine": "onnxruntime",
        "intraOpThreads": None,
        "graphOptimization": "all",
        "precision": "fp32",
    }
    with pytest.raises(ValidationError, match=r"bf16 needs runtime\.engine openvino"):
        RuntimeSpec(precision="bf16")
    with pytest.raises(ValidationError):
        RuntimeSpec.model_validate({"engine": "tensorrt"})
    with pytest.raises(ValidationError):
        RuntimeSpec.model_validate({"threads": 2})
    with pytest.raises(ValidationError, match=r"openvino runs on the CPU only, but resources\.gpus is 1"):
        ModelSpec.model_validate(
            {"name": "f", "type": "face", "modelUri": "f.onnx", "resources": {"gpus": 1}, "runtime": {"engine": "openvino"}}
        )
    assert intra_op_threads(ResourcesSpec(cpus=0.5), RuntimeSpec(intra_op_threads=3)) == 3
    assert intra_op_threads(ResourcesSpec(cpus=2.5), RuntimeSpec()) == 3


def test_onnxruntime_graph_optimization_levels_give_the_same_result(centerface: str, hd_jpeg: bytes) -> None:
    frame = decode_jpeg(hd_jpeg)
    results = [model("face", centerface, runtime={"graphOptimization": level}).infer([frame])[0] for level in ("disabled", "all")]
    assert np.asarray(boxes(results[0])) == pytest.approx(np.asarray(boxes(results[1])), abs=0.5)


def test_openvino_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(EngineUnavailable, match="the `openvino` package is not installed"):
        model("camera-health", runtime={"engine": "openvino"})


@needs_openvino
def test_openvino_runs_the_same_files_with_the_same_results(centerface: str, hd_jpeg: bytes, tmp_path: Path) -> None:
    frame = decode_jpeg(hd_jpeg)
    on_ort = model("face", centerface)
    on_ov = model("face", centerface, runtime={"engine": "openvino", "intraOpThreads": 1})
    assert on_ov.providers == ["OpenVINO:CPU"]
    a, b = on_ort.infer([frame, frame[:300, :500].copy()]), on_ov.infer([frame, frame[:300, :500].copy()])  # dynamic batch
    for x, y in zip(a, b, strict=True):
        assert np.asarray(boxes(y)) == pytest.approx(np.asarray(boxes(x)), abs=1)
    # The built-in graph (bytes, no file) and the YOLO output-shape checks work on it too.
    [health] = model("camera-health", runtime={"engine": "openvino"}).infer([frame])
    assert health["health"]["brightness"] == pytest.approx(model("camera-health").infer([frame])[0]["health"]["brightness"], abs=0.01)
    path = tmp_path / "yolo.onnx"
    path.write_bytes(yolo_test_graph([(320.0, 320.0, 200.0, 100.0, 0, 0.9)], 3, input_size=640, num_anchors=8).SerializeToString())
    with pytest.raises(ValueError, match=r"outputs 3 class scores but yolo\.classNames lists 2"):
        model("yolo", str(path), yolo={"classNames": ["a", "b"]}, runtime={"engine": "openvino"})


# --- INT8 ------------------------------------------------------------------------------------------------------


def test_quantize_writes_a_qdq_model_that_finds_the_same_face(centerface: str, hd_jpeg: bytes, tmp_path: Path) -> None:
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    frame = decode_jpeg(hd_jpeg)
    for i, shift in enumerate((0, 40, 80)):  # a few views of the scene, as calibration frames
        cv2.imwrite(str(frames_dir / f"{i}.jpg"), np.roll(frame, shift, axis=1))
    out = tmp_path / "centerface_int8.onnx"
    params = json.dumps({"inputWidth": 640, "inputHeight": 384})
    argv = ["--model", centerface, "--frames", str(frames_dir), "--out", str(out), "--params", params, "--every", "1"]
    assert quantize.main(argv) == 0
    quantized = onnx.load(str(out))
    assert any(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
    note = json.loads({p.key: p.value for p in quantized.metadata_props}["camerafleet.quantized"])
    assert note["calibration_frames"] == 3 and note["source"] == "centerface.onnx"
    fp32, int8 = model("face", centerface).infer([frame])[0], model("face", str(out)).infer([frame])[0]
    assert match_boxes(boxes(fp32), boxes(int8))[0] == len(boxes(fp32)) == len(boxes(int8)) == 1


def test_quantize_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert quantize.main(["--model", "m.onnx", "--frames", str(tmp_path), "--out", str(tmp_path / "o.onnx"), "--params", "{bad"]) == 2
    assert quantize.main(["--model", str(tmp_path / "none.onnx"), "--frames", str(tmp_path), "--out", str(tmp_path / "o.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(quantize.QuantizeError, match="neither a directory"):
        list(quantize.read_frames(tmp_path / "missing.mp4"))


# --- the benchmark's accuracy rule ------------------------------------------------------------------------------


def test_accuracy_matches_boxes_one_to_one_both_ways() -> None:
    ref = {0: [[0, 0, 10, 10], [20, 20, 30, 30]], 1: [], 2: [[0, 0, 10, 10]]}
    same = {0: [[1, 0, 10, 10], [20, 20, 30, 31]], 1: [], 2: [[0, 0, 10, 10]]}
    assert accuracy(ref, same)["kept"] and accuracy(ref, same)["recall"] == 1.0
    missed = accuracy(ref, {0: [[0, 0, 10, 10]], 2: [[0, 0, 10, 10]]})
    assert (missed["recall"], missed["precision"], missed["kept"]) == (pytest.approx(2 / 3, abs=1e-4), 1.0, False)
    extra = accuracy(ref, {**same, 1: [[50, 50, 60, 60]]})
    assert (extra["recall"], extra["precision"], extra["kept"]) == (1.0, 0.75, False)
    assert match_boxes([[0, 0, 10, 10]], [[0, 0, 10, 10], [0, 0, 10, 10]])[0] == 1  # a box is matched once
    assert match_boxes([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0] == 0  # IoU 1/3 < 0.5


def test_variants_change_only_the_detectors_and_print_as_a_table() -> None:
    face = ModelSpec.model_validate({"name": "f", "type": "face", "modelUri": "f.onnx", "resources": {"cpus": 0.5}})
    health = ModelSpec.model_validate({"name": "h", "type": "camera-health"})
    by_name = {v.name: v for v in VARIANTS}
    spec = _variant_spec(face, by_name["openvino-int8"], "f_int8.onnx")
    assert (spec.model_uri, spec.runtime.engine, spec.resources.cpus) == ("f_int8.onnx", "openvino", 1.0)
    assert _variant_spec(face, by_name["face-352+decode-1/2"], None).face.input_height == 352  # type: ignore[union-attr]
    assert _variant_spec(health, by_name["openvino-int8"], "f_int8.onnx").runtime.engine == "onnxruntime"
    row = {
        "name": "before",
        "fps": 30.0,
        "fps_per_core": 15.0,
        "fps_speedup": 1.0,
        "frames_per_core_second": 16.0,
        "speedup": 1.0,
        "cpu_ms_total": 62.5,
        "cpu_ms_per_frame": {"capture": 7.5, "inference:faces": 50.0, "inference:health": 5.0},
        "accuracy": {"recall": 1.0, "precision": 1.0, "mean_iou": 1.0, "kept": True},
        "decoded_size": "1280x720",
    }
    result = {
        "processes": 2,
        "seconds": 5,
        "accuracy_frames": 10,
        "accuracy_rule": "rule",
        "variants": [row, {"name": "openvino-fp32", "error": "EngineUnavailable: no"}],
        "decode_ms": {"simplejpeg 1/1": 2.0},
        "best": {"name": "before", "speedup": 1.0},
        "goal": {"speedup": 1.3, "met": False},
    }
    table = format_variants(result)
    assert "55.00" in table and "openvino-fp32       did not run: EngineUnavailable" in table and "not met" in table
