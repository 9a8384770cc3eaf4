"""What each role installs, resolved offline from the installed packages' metadata (the dev environment
holds every role's dependencies): the operator never gets the pipeline runtime, the API only needs
pydantic and PyYAML, and the wheel holds only the product packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = {"ray", "onnxruntime", "onnxruntime-gpu", "opencv-python-headless", "opencv-python", "onnx"}


def installed_closure(name: str, extras: set[str]) -> set[str]:
    """Every distribution `pip install name[extras]` brings, read from the installed metadata."""
    names: set[str] = set()
    visited: set[tuple[str, frozenset[str]]] = set()
    todo = [(name, frozenset(extras))]
    while todo:
        item = todo.pop()
        if item in visited:
            continue
        visited.add(item)
        dist, wanted = item
        try:
            reqs = requires(dist) or []
        except PackageNotFoundError:
            pytest.fail(f"{dist} is a dependency but not installed in this environment: run `make venv`")
        for req in map(Requirement, reqs):
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted | {""}):
                names.add(canonicalize_name(req.name))
                todo.append((req.name, frozenset(req.extras)))
    return names


def test_the_operator_role_installs_no_pipeline_runtime() -> None:
    closure = installed_closure("camerafleet", {"operator"})
    assert {"kopf", "kubernetes", "aiokafka", "pydantic", "pyyaml"} <= closure
    assert not closure & RUNTIME, f"the operator image would install {sorted(closure & RUNTIME)}"
    assert "numpy" not in closure


def test_the_api_needs_only_pydantic_and_pyyaml() -> None:
    closure = installed_closure("camerafleet", set())
    assert {"pydantic", "pyyaml"} <= closure
    assert closure <= {"pydantic", "pydantic-core", "annotated-types", "typing-extensions", "typing-inspection", "pyyaml"}, closure


def test_the_pipeline_role_installs_the_runtime() -> None:
    closure = installed_closure("camerafleet", {"pipeline"})
    assert {"ray", "onnxruntime", "opencv-python-headless", "onnx", "aiokafka"} <= closure
    assert "kopf" not in closure and "kubernetes" not in closure


def test_the_wheel_holds_only_the_product(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("camerafleet-*.whl")
    packages = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"camerafleet", "camerafleet_operator"}
