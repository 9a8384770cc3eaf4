"""A fleet on a shared cluster runs on names of its own: what it may share with other fleets (one Kafka,
one bucket) it never shares by accident.

The Kafka names a CameraFleet leaves unset (the CRD gives them no default) become `<namespace>.<fleet>.…`:
two fleets applied from the same example in two namespaces get different topics and consumer groups.
Their frames and summaries go under `<bucket uri>/<namespace>/<fleet>/`, so neither the other's expiry
rule nor its sweeper reaches them. Names a manifest sets are kept as written; a name another fleet
already owns is a Conflict that starts nothing (`reconcile.topic_claims`).
"""

from __future__ import annotations

from camerafleet.api.manifest import FleetSpec


def per_fleet(namespace: str, fleet: str, spec: FleetSpec) -> FleetSpec:
    """The spec this fleet runs with: its own Kafka names where the manifest left them unset, its own folder
    of the bucket. Namespaces and fleet names are DNS labels (no `.`), so the names never collide."""
    k = spec.kafka
    own = f"{namespace}.{fleet}"
    derived = {
        "topic_prefix": f"{own}.camera_",
        "results_topic": f"{own}.results",
        "dead_letter_topic": f"{own}.deadletter",
        "events_topic": f"{own}.events",
        "consumer_group": own,
    }
    kafka = k.model_copy(update={name: value for name, value in derived.items() if name not in k.model_fields_set})
    bucket = spec.bucket.model_copy(update={"uri": f"{spec.bucket.uri.rstrip('/')}/{namespace}/{fleet}"})
    return spec.model_copy(update={"kafka": kafka, "bucket": bucket})
