"""Container images without a Docker engine: `python -m camerafleet_dev.images build|load`.

The project's images are built from the shipped Dockerfiles, unchanged, with buildah (Debian package).
Their upstream bases (python:*-slim, rayproject/ray:*-gpu) cannot be pulled here, so the Dockerfiles
take their base as a build argument and get bases made here from Debian packages (mmdebstrap) and PyPI
with the same Python and Ray versions and the same conventions: the slim base has `python`, pip and
venv on PATH; the Ray base has the user `ray` (UID 1000, GID 100), HOME /home/ray and Ray in
/home/ray/anaconda3/bin first on PATH. The node's own images (the Pod sandbox `pause`, CoreDNS, the
KubeRay operator) hold one static binary each. Built images are exported as OCI archives and imported
into the node's containerd; nothing is ever pulled from a registry.

Bases are cached in buildah's store by a tag derived from their recipe, so only a changed recipe
rebuilds them; the project images are rebuilt from the working tree each time (buildah's layer cache
keeps the unchanged steps).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from camerafleet.api.versions import RAY_VERSION
from camerafleet_dev.devservers import node_tools
from camerafleet_dev.devservers.cache import cache_root
from camerafleet_dev.devservers.controlplane import KUBERAY_VERSION

ROOT = Path(__file__).resolve().parents[2]
VERSION = next(line.split('"')[1] for line in (ROOT / "pyproject.toml").read_text().splitlines() if line.startswith("version = "))
OPERATOR_IMAGE = f"ghcr.io/camerafleet/camerafleet-operator:{VERSION}"
RAY_IMAGE = f"ghcr.io/camerafleet/camerafleet-ray:{VERSION}"
# The node's images, named as upstream names them (they are never pulled: containerd already has them).
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
COREDNS_IMAGE = f"registry.k8s.io/coredns/coredns:{node_tools.COREDNS_VERSION}"
KUBERAY_IMAGE = f"quay.io/kuberay/operator:{KUBERAY_VERSION}"

SUITE = "bookworm"
PYTHON_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
RAY_PACKAGES = (*PYTHON_PACKAGES, "bash", "wget", "procps")  # KubeRay runs bash -lc; upstream images have wget, ps
# The host's CA bundle: package registries may be reached through a TLS-intercepting proxy whose CA only
# the host trusts. The bases carry the host's bundle and point pip at it, as the host's pip is.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def say(text: str) -> None:
    print(f"[camerafleet] {text}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], *, what: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a build command; its output goes to a log under out/images, shown (tail) when it fails."""
    log_dir = ROOT / "out" / "images"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{what.replace(' ', '-').replace('/', '_')}.log"
    started = time.monotonic()
    with open(log, "w") as sink:
        result = subprocess.run(list(argv), stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=cwd, check=False)
    text = log.read_text(errors="replace")
    if result.returncode != 0:
        raise SystemExit(f"{what} failed (exit {result.returncode}); last lines of {log}:\n" + "\n".join(text.splitlines()[-40:]))
    say(f"{what}: done in {time.monotonic() - started:.0f} s")
    return text


def buildah(*args: str, what: str) -> str:
    return run(["buildah", *args], what=what)


def image_exists(name: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", name], capture_output=True, check=False).returncode == 0


def recipe_tag(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


# -- bases ------------------------------------------------------------------------------------------


def debian_rootfs(packages: Sequence[str]) -> Path:
    """A Debian root filesystem with `packages` (mmdebstrap, minbase), cached by its package list."""
    target = cache_root() / "rootfs" / f"{SUITE}-{recipe_tag(SUITE, sorted(packages))}.tar"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial.tar")  # the .tar suffix tells mmdebstrap the format
    partial.unlink(missing_ok=True)
    run(["mmdebstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE, str(partial)], what=f"mmdebstrap {SUITE}")
    partial.rename(target)
    return target


@contextmanager
def _scratch(name: str, what: str) -> Iterator[str]:
    """A working container from scratch, committed as image `name` when the block succeeds, removed when not."""
    container = buildah("from", "scratch", what=f"{what}: from").strip().splitlines()[-1]
    try:
        yield container
        buildah("commit", "--rm", container, name, what=f"{what}: commit")
    except BaseException:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
        raise


def _add_debian(container: str, packages: Sequence[str], what: str) -> None:
    """A Debian root filesystem with `packages`, and the host's CA bundle (see HOST_CA_BUNDLE)."""
    buildah("add", container, str(debian_rootfs(packages)), "/", what=f"{what}: add rootfs")
    buildah("copy", container, str(HOST_CA_BUNDLE), str(HOST_CA_BUNDLE), what=f"{what}: CA bundle")


def python_base() -> str:
    """The stand-in for python:3.11-slim-bookworm: Debian's Python 3.11, pip and venv, `python` on PATH."""
    name = f"localhost/camerafleet/python-base:3.11-{SUITE}-{recipe_tag(PYTHON_PACKAGES, HOST_CA_BUNDLE.read_bytes())}"
    if image_exists(name):
        return name
    with _scratch(name, "python base") as container:
        _add_debian(container, PYTHON_PACKAGES, "python base")
        buildah(
            "config",
            "--env", "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env", "LANG=C.UTF-8",
            "--env", f"PIP_CERT={HOST_CA_BUNDLE}",
            "--cmd", '["python3"]',
            container,
            what="python base: config",
        )  # fmt: skip
    return name


def ray_base() -> str:
    """The stand-in for rayproject/ray:<RAY_VERSION>-py311-gpu (without CUDA): user ray (1000:100), HOME
    /home/ray, Ray with its dashboard and Serve in /home/ray/anaconda3 (first on PATH)."""
    name = f"localhost/camerafleet/ray-base:{RAY_VERSION}-py311-{recipe_tag(RAY_PACKAGES, RAY_VERSION, HOST_CA_BUNDLE.read_bytes())}"
    if image_exists(name):
        return name
    with _scratch(name, "ray base") as container:
        _add_debian(container, RAY_PACKAGES, "ray base")
        script = (
            "set -e; groupadd --force --gid 100 users; "
            "useradd --uid 1000 --gid 100 --create-home --home-dir /home/ray --shell /bin/bash ray; "
            "python3 -m venv /home/ray/anaconda3; "
            f"PIP_CERT={HOST_CA_BUNDLE} /home/ray/anaconda3/bin/pip install --no-cache-dir --disable-pip-version-check "
            f"'ray[default,serve]=={RAY_VERSION}'; "
            "chown -R 1000:100 /home/ray"
        )
        buildah("run", "--network", "host", container, "--", "/bin/bash", "-c", script, what="ray base: install ray")
        buildah(
            "config",
            "--env", "PATH=/home/ray/anaconda3/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env", "HOME=/home/ray",
            "--env", "LANG=C.UTF-8",
            "--env", f"PIP_CERT={HOST_CA_BUNDLE}",
            "--user", "1000:100",
            "--workingdir", "/home/ray",
            "--cmd", '["/bin/bash"]',
            container,
            what="ray base: config",
        )  # fmt: skip
    return name


def binary_image(name: str, binary: Path, path_in_image: str, *, user: str, args: Sequence[str] = ()) -> str:
    """An image of one static binary (the node's pause, CoreDNS, the KubeRay operator)."""
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:12]
    if image_exists(name) and _label(name, "camerafleet.binary") == digest:
        return name
    with _scratch(name, name) as container:
        buildah("copy", "--chmod", "0755", container, str(binary), path_in_image, what=f"{name}: copy")
        buildah(
            "config", "--entrypoint", f'["{path_in_image}"]', "--cmd", repr(list(args)).replace("'", '"'), "--user", user,
            "--env", "PATH=/", "--label", f"camerafleet.binary={digest}", container, what=f"{name}: config",
        )  # fmt: skip
    return name


def _label(image: str, key: str) -> str:
    result = subprocess.run(
        ["buildah", "inspect", "--type", "image", "--format", f'{{{{index .OCIv1.Config.Labels "{key}"}}}}', image],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip()


# -- the project's images, from the shipped Dockerfiles -------------------------------------------------------


def build_project_images() -> list[str]:
    """Build the operator and Ray images from images/*/Dockerfile with the local bases."""
    node_tools.install_packages(sys.stderr)
    python, ray = python_base(), ray_base()
    common = ["bud", "--layers", "--network", "host", "--build-arg", f"VERSION={VERSION}"]
    buildah(
        *common,
        "-f",
        "images/operator/Dockerfile",
        "--build-arg",
        f"PYTHON_IMAGE={python}",
        "-t",
        OPERATOR_IMAGE,
        str(ROOT),
        what="operator image",
    )
    buildah(
        *common,
        "-f",
        "images/ray/Dockerfile",
        "--build-arg",
        f"RAY_VERSION={RAY_VERSION}",
        "--build-arg",
        f"RAY_BASE={ray}",
        "-t",
        RAY_IMAGE,
        str(ROOT),
        what="ray image",
    )
    return [OPERATOR_IMAGE, RAY_IMAGE]


def build_node_images() -> list[str]:
    """The node's own images: the Pod sandbox, CoreDNS and the KubeRay operator."""
    node_tools.fetch_node_tools()
    return [
        binary_image(PAUSE_IMAGE, node_tools.binary("pause"), "/pause", user="65535:65535"),
        binary_image(COREDNS_IMAGE, node_tools.binary("coredns"), "/coredns", user="65532:65532"),
        binary_image(KUBERAY_IMAGE, node_tools.binary("ray-operator"), "/manager", user="65532:65532"),
    ]


def image_id(name: str) -> str:
    return subprocess.run(
        ["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", name], capture_output=True, text=True, check=True
    ).stdout.strip()


def load(images: Sequence[str], containerd_socket: Path) -> None:
    """Export images from buildah's store and import them into a containerd (namespace k8s.io).

    An image whose build is already in that containerd (recorded next to its socket, and still listed by it)
    is not exported again: exporting and importing the Ray image takes over a minute. The listing matters:
    an image removed from containerd behind the record's back (the Pod sandbox's, once) must come back.
    """
    record = containerd_socket.parent / "loaded-images.json"
    loaded: dict[str, str] = json.loads(record.read_text()) if record.exists() else {}
    present = set(
        run(["ctr", "--address", str(containerd_socket), "-n", "k8s.io", "images", "ls", "-q"], what="list the node images").split()
    )
    with tempfile.TemporaryDirectory(prefix="camerafleet-images-", dir=ROOT / "out") as tmp:
        for image in images:
            built = image_id(image)
            if loaded.get(image) == built and image in present:
                say(f"{image}: already loaded")
                continue
            archive = Path(tmp) / "image.tar"
            buildah("push", image, f"oci-archive:{archive}:{image}", what=f"export {image}")
            run(
                ["ctr", "--address", str(containerd_socket), "-n", "k8s.io", "images", "import", "--no-unpack", str(archive)],
                what=f"import {image}",
            )
            archive.unlink()
            loaded[image] = built
            record.write_text(json.dumps(loaded, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m camerafleet_dev.images", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "action",
        choices=["build", "node", "load"],
        help="build: the project's images; node: the node's images; load: import both into the node's containerd",
    )
    parser.add_argument("--containerd-socket", type=Path, help="the node's containerd socket (load)")
    args = parser.parse_args(argv)
    if shutil.which("buildah") is None and args.action != "load":
        node_tools.install_packages(sys.stderr)
    if args.action == "build":
        for image in build_project_images():
            print(image)
    elif args.action == "node":
        for image in build_node_images():
            print(image)
    else:
        if args.containerd_socket is None:
            parser.error("load needs --containerd-socket")
        load([*build_node_images(), OPERATOR_IMAGE, RAY_IMAGE], args.containerd_socket)
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
