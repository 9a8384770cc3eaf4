"""Builds the Serve application of a fleet. The same builder is the `import_path` of the KubeRay
RayService (`camerafleet.serving.app:build_app`, args `{"app": <the fleet's ServingAppSpec>}`) and is
what `camerafleet run` deploys on a local Ray cluster, so both runtimes serve identical deployments."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from ray.serve import Application

from camerafleet.api.manifest import ServingAppSpec
from camerafleet.api.serve_options import ingress_options, ingress_user_config, model_deployment_options, model_user_config
from camerafleet.api.settings import Settings
from camerafleet.serving.ingress import FleetIngress
from camerafleet.serving.model_deployment import ModelDeployment


def fleet_app(app: ServingAppSpec) -> Application:
    """The ingress and one deployment per model, with the options both runtimes use."""
    # serve.deployment adds `.options`; mypy does not apply class decorators, so the classes are used as Any.
    bucket = app.bucket.model_dump_json(by_alias=True)
    model_deployment: Any = ModelDeployment
    ingress: Any = FleetIngress
    models = {
        m.name: model_deployment.options(**model_deployment_options(m), user_config=model_user_config(m)).bind(
            m.model_dump_json(by_alias=True), bucket, app.fleet
        )
        for m in app.models
    }
    ingress_app = ingress.options(**ingress_options(app.serving), user_config=ingress_user_config(app))
    return ingress_app.bind(app.model_dump_json(by_alias=True), models)


def build_app(args: dict[str, Any]) -> Application:
    """Serve application builder (a RayService's import_path): `args["app"]` is a ServingAppSpec (mapping);
    the environment's overrides of the bucket (e.g. CAMERAFLEET_S3_ENDPOINT in the pods) apply as in
    `camerafleet run`."""
    try:
        app = ServingAppSpec.model_validate(args["app"])
    except (KeyError, ValidationError) as err:
        raise ValueError(f"serve args `app` must be a CameraFleet serving spec: {err}") from None
    return fleet_app(app.model_copy(update={"bucket": Settings.from_env().apply_bucket(app.bucket)}))
