"""What a run says about its producer and consumer pools in its CameraFleet's status (`status.pools`): the
one part of the status that the fleet's runs write, not the operator (each run patches its own pool's key,
so the producer and consumer jobs never overwrite each other, nor the operator's fields)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field

from camerafleet.api.manifest import Strict


def now_rfc3339() -> str:
    """Now as a Kubernetes status writes times (RFC 3339, UTC, whole seconds): the operator's conditions and the runs' pools."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class PoolStatus(Strict):
    actors: int = Field(ge=0, description="Actors of this pool running now.")
    desired_actors: int = Field(
        ge=0, description="Actors the pool should have (the manifest's, or its autoscaler's); above `actors` while new ones wait for room."
    )
    nodes: int = Field(default=0, ge=0, description="Ray nodes the pool's actors have run on in this run.")
    last_scale_time: str | None = Field(default=None, description="When the pool last changed size (RFC 3339).")
    last_scale_reason: str | None = Field(
        default=None, max_length=64, description="Why: busy, falling_behind, idle, bounds (the manifest's bounds moved) or manifest."
    )
    message: str = Field(default="", max_length=1000, description="What the pool waits for, if anything.")
    update_time: str | None = Field(default=None, description="When the run last wrote this (RFC 3339): an old time means no run is up.")


class PoolsStatus(Strict):
    producer: PoolStatus | None = Field(default=None, description="The producer job's pool.")
    consumer: PoolStatus | None = Field(default=None, description="The consumer job's pool.")
