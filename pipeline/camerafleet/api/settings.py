"""Every environment variable CameraFleet reads, in one place.

Overrides of the manifest (`KAFKA_BOOTSTRAP`, `CAMERAFLEET_BUCKET_URI`, `CAMERAFLEET_S3_ENDPOINT`,
`CAMERAFLEET_SERVE_URL`) are applied once, by `Settings.apply`, to the spec a run starts from; every
stage then reads the effective spec, never the environment. S3 credentials come only from the
environment (a Kubernetes Secret) and are kept as secrets, so they never show in a repr or a log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Json, SecretStr, ValidationError, field_validator, model_validator

from camerafleet.api.manifest import BucketSpec, FleetSpec

PROFILE_DIR_ENV = "CAMERAFLEET_PROFILE_DIR"


class SettingsError(ValueError):
    """An environment variable with a value CameraFleet cannot use; the message names it."""


NetworkPeers = list[dict[str, Any]]  # Kubernetes NetworkPolicyPeers ({podSelector, namespaceSelector} or {ipBlock})


class FleetAccess(BaseModel):
    """Who, besides a fleet's own Pods, may reach them: the operator chart's `fleetNetworkPolicy`, which the
    operator turns into one NetworkPolicy per fleet. Everything else in the cluster is refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    kuberay: NetworkPeers = Field(
        alias="kuberayFrom",
        min_length=1,
        description="The KubeRay operator: it submits the jobs and the Serve config through each Ray head's dashboard "
        "(8265) and checks Serve's proxies (8000).",
    )
    metrics: NetworkPeers = Field(default=[], alias="metricsFrom", description="Who scrapes the Ray Pods' metrics port (8080).")
    console: NetworkPeers = Field(
        default=[], alias="consoleFrom", description="Who may open the fleet console (8090); `kubectl port-forward` is never refused."
    )


class Settings(BaseModel):
    """The environment, read once. Field aliases are the variable names."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    kafka_bootstrap: str | None = Field(
        default=None, alias="KAFKA_BOOTSTRAP", min_length=1, description="Overrides spec.kafka.bootstrapServers."
    )
    bucket_uri: str | None = Field(default=None, alias="CAMERAFLEET_BUCKET_URI", min_length=1, description="Overrides spec.bucket.uri.")
    s3_endpoint: str | None = Field(
        default=None, alias="CAMERAFLEET_S3_ENDPOINT", min_length=1, description="Overrides spec.bucket.endpoint."
    )
    serve_url: str | None = Field(default=None, alias="CAMERAFLEET_SERVE_URL", min_length=1, description="Overrides spec.serving.url.")
    serve_status_url: str | None = Field(
        default=None,
        alias="CAMERAFLEET_SERVE_STATUS_URL",
        pattern=r"^https?://[^\s/]+$",
        description="The Ray dashboard (http://host:8265) of the cluster that runs the Serve app when it is not this run's: "
        "the console reads the models' running replicas there. The operator sets it on the producer job.",
    )
    serve_port: int = Field(
        default=8000, alias="CAMERAFLEET_SERVE_PORT", ge=1, le=65535, description="Port of the Serve HTTP proxy `camerafleet run` starts."
    )
    ray_address: str | None = Field(
        default=None, alias="RAY_ADDRESS", description="Ray cluster to join; a local instance starts without it."
    )
    model_cache: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "camerafleet" / "models",
        alias="CAMERAFLEET_MODEL_CACHE",
        description="Where models downloaded from S3 are kept.",
    )
    profile_dir: Path | None = Field(
        default=None, alias=PROFILE_DIR_ENV, description="Stage CPU profiling writes here when set (the benchmark sets it)."
    )
    resync_seconds: float = Field(
        default=30.0, alias="CAMERAFLEET_RESYNC_SECONDS", gt=0, description="How often the operator corrects drift of each fleet."
    )
    allow_local_addresses: bool = Field(
        default=False,
        alias="CAMERAFLEET_ALLOW_LOCAL_ADDRESSES",
        description="The operator accepts loopback Kafka addresses and file:// buckets: only for a development control plane "
        "where nothing runs in Pods (`make operator`); on a cluster such fleets are refused as InvalidSpec.",
    )
    allowed_images: tuple[str, ...] = Field(
        default=(),
        alias="CAMERAFLEET_ALLOWED_IMAGES",
        description="The images fleets may run, as comma-separated prefixes (`registry.example.com/vision/`): a fleet naming "
        "another is refused as InvalidSpec. Empty: any image. The operator chart's `allowedImages` sets it.",
    )
    fleet_access: Json[FleetAccess] | None = Field(
        default=None,
        alias="CAMERAFLEET_FLEET_NETWORK_POLICY",
        description="JSON: who may reach a fleet's Pods (FleetAccess); set, the operator gives each fleet a NetworkPolicy that "
        "refuses everyone else. The operator chart's `fleetNetworkPolicy` sets it.",
    )
    console_token: SecretStr | None = Field(
        default=None,
        alias="CAMERAFLEET_CONSOLE_TOKEN",
        min_length=16,
        description="When set, the fleet console answers only requests that carry it (a browser opens /?token=<token> once). "
        "On Kubernetes put it in a Secret named in kubernetes.envFromSecrets.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        alias="KAFKA_SECURITY_PROTOCOL",
        description="How every Kafka client connects: PLAINTEXT (local runs), SSL, SASL_PLAINTEXT or SASL_SSL (managed Kafka).",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, alias="KAFKA_SASL_MECHANISM", description="With SASL_*: the mechanism."
    )
    kafka_sasl_username: str | None = Field(default=None, alias="KAFKA_SASL_USERNAME", min_length=1, description="With SASL_*: the user.")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, alias="KAFKA_SASL_PASSWORD", description="With SASL_*: the password (from a Secret)."
    )
    kafka_ca_file: Path | None = Field(
        default=None,
        alias="KAFKA_SSL_CA_FILE",
        description="With SSL or SASL_SSL: a PEM file of the CA that signed the brokers' certificates (a private CA); the "
        "system's CAs are trusted as well.",
    )
    s3_ca_file: Path | None = Field(
        default=None,
        alias="CAMERAFLEET_S3_CA_FILE",
        description="A PEM file of the CA that signed an https:// S3 endpoint's certificate (a private CA); the system's CAs "
        "are trusted as well.",
    )
    manifest_config_map: str | None = Field(
        default=None,
        alias="CAMERAFLEET_MANIFEST_CONFIGMAP",
        min_length=1,
        description="In a Pod: the ConfigMap (in the Pod's namespace) holding the manifest; changes are read from the API "
        "server instead of waiting for the kubelet to refresh the mounted file. The operator sets it.",
    )
    aws_access_key_id: SecretStr | None = Field(default=None, alias="AWS_ACCESS_KEY_ID", description="S3 access key (from a Secret).")
    aws_secret_access_key: SecretStr | None = Field(
        default=None, alias="AWS_SECRET_ACCESS_KEY", description="S3 secret key (from a Secret)."
    )
    aws_session_token: SecretStr | None = Field(
        default=None, alias="AWS_SESSION_TOKEN", description="S3 session token, for temporary credentials."
    )

    @model_validator(mode="after")
    def _sasl_is_complete(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_"):
            missing = [
                alias
                for alias, value in (
                    ("KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
                    ("KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                    ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs {', '.join(missing)} as well")
        return self

    @field_validator("allowed_images", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return tuple(p.strip() for p in value.split(",") if p.strip()) if isinstance(value, str) else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        names = {f.alias for f in cls.model_fields.values() if f.alias}
        try:
            return cls.model_validate({k: v for k, v in env.items() if k in names and v != ""})
        except ValidationError as err:
            secret = {f.alias for f in cls.model_fields.values() if f.annotation == SecretStr | None}

            def problem(e: Any) -> str:
                if not e["loc"]:  # a rule across variables: its message names them
                    return str(e["msg"]).removeprefix("Value error, ")
                if e["loc"][0] in secret:  # a secret's value is never repeated, not even a wrong one
                    return f"{e['loc'][0]}: {e['msg']}"
                return f"{e['loc'][0]}={str(e.get('input'))[:80]!r}: {e['msg']}"

            problems = "; ".join(problem(e) for e in err.errors())
            raise SettingsError(f"environment: {problems}") from None

    def apply(self, spec: FleetSpec) -> FleetSpec:
        """The spec with the environment's overrides in place: the one every stage of a run reads."""
        update: dict[str, Any] = {"bucket": self.apply_bucket(spec.bucket)}
        if self.kafka_bootstrap:
            update["kafka"] = spec.kafka.model_copy(update={"bootstrap_servers": self.kafka_bootstrap})
        if self.serve_url:
            update["serving"] = spec.serving.model_copy(update={"url": self.serve_url})
        return spec.model_copy(update=update)

    def apply_bucket(self, bucket: BucketSpec) -> BucketSpec:
        overrides = {k: v for k, v in (("uri", self.bucket_uri), ("endpoint", self.s3_endpoint)) if v}
        if not overrides:
            return bucket
        # Validated like the manifest's own: an override is not trusted more than the spec it replaces.
        try:
            return type(bucket).model_validate({**bucket.model_dump(by_alias=True), **overrides})
        except ValidationError as err:
            problems = "; ".join(e["msg"] for e in err.errors())
            raise SettingsError(f"environment: CAMERAFLEET_BUCKET_URI / CAMERAFLEET_S3_ENDPOINT: {problems}") from None

    def console_token_value(self) -> str | None:
        return self.console_token.get_secret_value() if self.console_token else None

    def s3_credentials(self) -> tuple[str, str, str | None] | None:
        """(access key, secret key, session token), or None when no credentials are set."""
        if self.aws_access_key_id is None or self.aws_secret_access_key is None:
            return None
        token = self.aws_session_token.get_secret_value() if self.aws_session_token else None
        return self.aws_access_key_id.get_secret_value(), self.aws_secret_access_key.get_secret_value(), token
