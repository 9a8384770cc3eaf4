"""Builds the Serve application of a fleet. The same builder is the `import_path` of the KubeRay
RayService (`camerafleet.serving.app:build_app`, args `{"fleet": <manifest>}`) and is what
`camerafleet run` deploys on a local Ray cluster, so both runtimes serve identical deployments."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from camerafleet.api.manifest import FleetSpec, parse_manifest
from camerafleet.api.serve_options import ingress_options, model_deployment_options
from camerafleet.api.settings import Settings
from camerafleet.serving.ingress import FleetIngress
from camerafleet.serving.model_deployment import ModelDeployment


def fleet_app(spec: FleetSpec) -> Application:
    # serve.deployment adds `.options`; mypy does not apply class decorators, so the classes are used as Any.
    bucket = spec.bucket.model_dump_json(by_alias=True)
    model_deployment: Any = ModelDeployment
    ingress: Any = FleetIngress
    models = {
        m.name: model_deployment.options(**model_deployment_options(m)).bind(m.model_dump_json(by_alias=True), bucket) for m in spec.models
    }
    return ingress.options(**ingress_options(spec)).bind(spec.model_dump_json(by_alias=True), models)


def build_app(args: dict[str, Any]) -> Application:
    """Serve application builder: `args["fleet"]` is a CameraFleet manifest (mapping); the environment's
    overrides (e.g. CAMERAFLEET_S3_ENDPOINT in the RayService's pods) apply as in `camerafleet run`."""
    return fleet_app(Settings.from_env().apply(parse_manifest(args["fleet"], "serve args `fleet`").spec))
