"""`reconcile_fleet` without a control plane or Kafka: the operator's two seams (`kube.Kube` and the
topic admin) replaced by in-memory fakes, as kopf's own tests mock its API layer. What KubeRay would
do (write a RayService's or RayJob's status) the tests do by hand."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from camerafleet.api.manifest import FleetSpec
from camerafleet.topics import KafkaUnavailable, TopicPlan, TopicState
from camerafleet_operator.reconcile import SPEC_HASH, ReconcileResult, reconcile_fleet
from camerafleet_operator.validate import ClusterPolicy

NS = "cams"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class FakeKube:
    """The operator's Kubernetes seam in memory: apply replaces an object's metadata and spec and keeps its
    status (server-side apply of one field manager), get/delete/list by kind."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.applied: list[tuple[str, str]] = []
        self.deleted: list[tuple[str, str]] = []

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        status = self.objects.get(key, {}).get("status")
        self.objects[key] = copy.deepcopy(obj) | ({"status": status} if status is not None else {})
        self.applied.append((obj["kind"], obj["metadata"]["name"]))
        return copy.deepcopy(self.objects[key])

    async def create(self, obj: dict[str, Any]) -> bool:
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        if key in self.objects:
            return False
        self.objects[key] = copy.deepcopy(obj)
        return True

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        self.deleted.append((kind, name))
        return self.objects.pop((kind, namespace, name), None) is not None

    async def list(self, api_version: str, kind: str, namespace: str | None = None, labels: str | None = None) -> list[dict[str, Any]]:
        wanted = dict(pair.split("=") for pair in labels.split(",")) if labels else {}
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind and namespace in (None, ns) and wanted.items() <= (o["metadata"].get("labels") or {}).items()
        ]

    def set_status(self, kind: str, name: str, status: dict[str, Any]) -> None:
        self.objects[(kind, NS, name)]["status"] = status


class FakeKafka:
    """The topic admin seam: topics in a dict; `down` makes every call fail like an unreachable broker."""

    def __init__(self, cluster_id: str = "kafka-cluster-1") -> None:
        self.topics: dict[str, TopicState] = {}
        self.down = False
        self.id = cluster_id

    def __call__(self, bootstrap: str) -> FakeKafka:
        return self

    async def cluster_id(self) -> str:
        return self.id

    async def __aenter__(self) -> FakeKafka:
        if self.down:
            raise KafkaUnavailable("cannot reach Kafka at kafka:9092 (KafkaConnectionError)")
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def describe(self, names: list[str]) -> dict[str, TopicState]:
        return {n: self.topics[n] for n in names if n in self.topics}

    async def apply(self, spec: FleetSpec, plan: TopicPlan) -> None:
        for name, partitions in {**plan.create, **plan.add_partitions}.items():
            self.topics[name] = TopicState(partitions, spec.kafka.replication_factor, {"retention.ms": str(spec.kafka.retention_ms)})


def fleet(name: str = "lobby", cameras: int = 2, created: str = "2026-11-30T10:00:00Z", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "camerafleet.io/v1alpha1",
        "kind": "CameraFleet",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1, "creationTimestamp": created},
        "spec": {
            "cameras": [{"id": str(i), "source": "synthetic:"} for i in range(1, cameras + 1)],
            "models": [{"name": "health", "type": "camera-health"}],
            "kafka": {"bootstrapServers": "kafka:9092", "topicPrefix": f"{name}_cam_"},
            "bucket": {"uri": "s3://frames/x", "endpoint": "http://minio:9000"},
            **spec,
        },
    }


def reconcile(body: dict[str, Any], kube: FakeKube, kafka: FakeKafka, now: datetime = T0) -> ReconcileResult:
    result = asyncio.run(reconcile_fleet(body, kube, now=now, topic_admin=kafka))  # type: ignore[arg-type]
    body["status"] = result.status.model_dump(by_alias=True, mode="json")  # what the handler publishes
    return result


def conditions(result: ReconcileResult) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.status.conditions}


def kuberay_serves(kube: FakeKube, name: str = "lobby") -> None:
    kube.set_status(
        "RayService", f"{name}-serving", {"conditions": [{"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints"}]}
    )


def kuberay_runs_jobs(kube: FakeKube, name: str = "lobby") -> None:
    for role in ("producer", "consumer"):
        kube.set_status("RayJob", f"{name}-{role}", {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})


def kuberay_runs_everything(kube: FakeKube, body: dict[str, Any], kafka: FakeKafka) -> None:
    kuberay_serves(kube)
    reconcile(body, kube, kafka)  # the jobs are applied once serving is ready
    kuberay_runs_jobs(kube)


def test_a_new_fleet_gets_its_topics_and_objects_and_waits_for_kuberay() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    result = reconcile(body, kube, kafka)
    assert sorted(kafka.topics) == ["cams.lobby.deadletter", "cams.lobby.results", "lobby_cam_1", "lobby_cam_2"], (
        "unset names are the fleet's own"
    )
    assert kube.applied == [
        ("ConfigMap", "lobby-config"),
        ("ServiceAccount", "lobby-runner"),
        ("Role", "lobby-runner"),
        ("RoleBinding", "lobby-runner"),
        ("Service", "lobby-console"),
        ("RayService", "lobby-serving"),
    ], "the jobs wait for the Serve app"
    owners = {o["metadata"]["ownerReferences"][0]["uid"] for o in kube.objects.values()}
    assert owners == {"uid-lobby"}, "everything the fleet owns is garbage-collected with it"
    c = conditions(result)
    assert c["TopicsReady"] == ("True", "Reconciled")
    assert c["ServingReady"] == ("Unknown", "WaitingForKubeRay")
    assert c["ProducersRunning"] == c["ConsumersRunning"] == ("Unknown", "WaitingForServing"), "no frame before the models serve"
    assert c["Ready"] == ("False", "NotReady") and result.status.phase == "Reconciling"
    assert result.retry_after_s is None and result.status.observed_generation == 1
    assert [(e.type, e.reason) for e in result.events] == [("Normal", "Reconciled")]
    assert result.status.kafka_cluster_id == "kafka-cluster-1", "what decides which fleets share a Kafka"


def test_the_fleet_is_ready_once_kuberay_reports_everything_running() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    reconcile(body, kube, kafka)
    kuberay_serves(kube)
    reconcile(body, kube, kafka)
    assert ("RayJob", "lobby-producer") in kube.applied and ("RayJob", "lobby-consumer") in kube.applied
    kuberay_runs_jobs(kube)
    result = reconcile(body, kube, kafka)
    assert conditions(result)["Ready"] == ("True", "Ready") and result.status.phase == "Running"
    assert ("Normal", "Ready") in {(e.type, e.reason) for e in result.events}
    again = reconcile(body, kube, kafka)
    assert again.events == [], "a pass that changes nothing reports nothing"
    assert again.status.conditions == result.status.conditions, "lastTransitionTime only moves on a change"


def test_an_invalid_spec_fails_the_fleet_and_touches_nothing() -> None:
    kube, kafka = FakeKube(), FakeKafka()
    body = fleet(cameras=0)
    result = reconcile(body, kube, kafka)
    assert conditions(result)["Ready"][1] == "InvalidSpec" and result.status.phase == "Failed"
    ready = next(c for c in result.status.conditions if c.type == "Ready")
    assert ready.message.startswith("fix the spec: cameras:"), ready.message
    assert kube.applied == [] and kafka.topics == {}
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "InvalidSpec")]


def test_a_missing_service_account_is_named_and_creating_it_is_enough() -> None:
    kube, kafka = FakeKube(), FakeKafka()
    body = fleet(kubernetes={"serviceAccountName": "cameras-s3"})
    ready = next(c for c in reconcile(body, kube, kafka).status.conditions if c.type == "Ready")
    assert (ready.reason, kube.applied) == ("InvalidSpec", [])
    assert "ServiceAccount 'cameras-s3' does not exist in namespace cams; create it" in ready.message
    asyncio.run(kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "cameras-s3", "namespace": NS}}))
    result = reconcile(body, kube, kafka)  # the next pass (the resync timer's) goes ahead
    assert conditions(result)["Ready"] == ("False", "NotReady")
    binding = kube.objects[("RoleBinding", NS, "lobby-runner")]
    assert binding["subjects"][0]["name"] == "cameras-s3" and ("ServiceAccount", NS, "lobby-runner") not in kube.objects


def test_kafka_down_is_retried_while_kubernetes_objects_are_still_kept() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    kafka.down = True
    result = reconcile(body, kube, kafka)
    assert conditions(result)["TopicsReady"] == ("False", "KafkaUnavailable")
    assert result.retry_after_s == 15.0 and "cannot reach Kafka" in result.retry_reason
    assert ("RayService", "lobby-serving") in kube.applied
    assert ("Warning", "KafkaUnavailable") in {(e.type, e.reason) for e in result.events}


def test_a_failed_job_is_resubmitted_after_its_backoff() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    reconcile(body, kube, kafka)
    kuberay_runs_everything(kube, body, kafka)
    reconcile(body, kube, kafka)
    kube.set_status("RayJob", "lobby-consumer", {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "message": "entrypoint exited 1"})

    failed = reconcile(body, kube, kafka)
    state = failed.status.consumer_job
    assert state.failures == 1 and state.last_failure == "entrypoint exited 1"
    assert conditions(failed)["ConsumersRunning"] == ("False", "JobFailed") and failed.status.phase == "Degraded"
    assert failed.retry_after_s == 10.0, "retried when the first backoff (jobRetryInitialSeconds) ends"
    assert ("RayJob", "lobby-consumer") not in kube.deleted, "not resubmitted before its backoff"

    reconcile(body, kube, kafka, now=T0 + timedelta(seconds=11))
    assert ("RayJob", "lobby-consumer") in kube.deleted
    resubmitted = reconcile(body, kube, kafka, now=T0 + timedelta(seconds=12))
    assert kube.applied.count(("RayJob", "lobby-consumer")) >= 2, "applied again after the delete"
    assert resubmitted.status.consumer_job.failures == 1, "the failure count survives the resubmission"


def test_a_changed_job_spec_replaces_the_job() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    reconcile(body, kube, kafka)
    kuberay_serves(kube)
    reconcile(body, kube, kafka)  # the jobs exist once the app serves
    old_hash = kube.objects[("RayJob", NS, "lobby-producer")]["metadata"]["annotations"][SPEC_HASH]
    body["spec"]["kubernetes"] = {"image": "registry.local/camerafleet-ray:2"}
    body["metadata"]["generation"] = 2
    result = reconcile(body, kube, kafka)
    assert ("RayJob", "lobby-producer") in kube.deleted and "JobReplaced" in {e.reason for e in result.events}
    reconcile(body, kube, kafka)
    assert kube.objects[("RayJob", NS, "lobby-producer")]["metadata"]["annotations"][SPEC_HASH] != old_hash
    assert result.status.observed_generation == 2


def test_a_topic_an_older_fleet_owns_is_a_conflict_and_left_alone() -> None:
    kube, kafka = FakeKube(), FakeKafka()
    older = fleet("first", created="2026-11-30T09:00:00Z")
    asyncio.run(kube.apply(older))  # the older fleet exists in the cluster
    newer = fleet("second", created="2026-11-30T10:00:00Z", kafka={"bootstrapServers": "kafka:9092", "topicPrefix": "first_cam_"})
    result = reconcile(newer, kube, kafka)
    assert conditions(result)["TopicsReady"][:2] == ("False", "Conflict")
    assert "first_cam_1" not in kafka.topics, "a conflicting fleet creates nothing it does not own"
    assert "first_cam_1" not in result.status.topics


def in_namespace(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "namespace": namespace, "uid": f"uid-{namespace}"}}


def test_two_fleets_from_one_example_in_two_namespaces_share_no_topic_group_or_bucket_folder() -> None:
    """Issue 24: both took `camera_<id>`, `camerafleet_results` and group `camerafleet`: one fleet's frames went to the
    other's consumers. Names a manifest leaves unset are now the fleet's own; so is its folder of the bucket."""
    kube, kafka = FakeKube(), FakeKafka()
    example = fleet("example", kafka={"bootstrapServers": "kafka.shared.svc:9092"})
    a = in_namespace(copy.deepcopy(example), "team-a")
    b = in_namespace(copy.deepcopy(example), "team-b")
    asyncio.run(kube.apply(a))
    reconcile(a, kube, kafka)
    result = reconcile(b, kube, kafka)
    assert conditions(result)["TopicsReady"] == ("True", "Reconciled")
    assert sorted(kafka.topics) == [
        f"{ns}.example.{name}" for ns in ("team-a", "team-b") for name in ("camera_1", "camera_2", "deadletter", "results")
    ]
    documents = {
        ns: yaml.safe_load(kube.objects[("ConfigMap", ns, "example-config")]["data"]["fleet.yaml"])["spec"] for ns in ("team-a", "team-b")
    }
    assert documents["team-b"]["kafka"]["consumerGroup"] == "team-b.example" != documents["team-a"]["kafka"]["consumerGroup"]
    assert documents["team-b"]["bucket"]["uri"] == "s3://frames/x/team-b/example"
    assert result.status.created_topics == sorted(f"team-b.example.{n}" for n in ("camera_1", "camera_2", "deadletter", "results"))


def test_a_consumer_group_an_older_fleet_uses_is_a_conflict_that_starts_nothing() -> None:
    kube, kafka = FakeKube(), FakeKafka()
    older = fleet("first", created="2026-11-30T09:00:00Z", kafka={"bootstrapServers": "kafka:9092", "consumerGroup": "shared"})
    asyncio.run(kube.apply(older))
    newer = fleet("second", created="2026-11-30T10:00:00Z", kafka={"bootstrapServers": "kafka:9092", "consumerGroup": "shared"})
    result = reconcile(newer, kube, kafka)
    assert conditions(result)["TopicsReady"] == ("False", "Conflict") and conditions(result)["Ready"] == ("False", "Conflict")
    assert "consumer group shared belongs to fleet cams/first" in next(c.message for c in result.status.conditions if c.type == "Ready")
    assert not kafka.topics and not [k for k in kube.applied if k[1].startswith("second")], "nothing started, nothing created"


def test_only_topics_the_fleet_created_are_recorded_as_its_to_delete() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    kafka.topics["lobby_cam_1"] = TopicState(1, 1, {"retention.ms": "600000"})  # there before: adopted
    result = reconcile(body, kube, kafka)
    assert "lobby_cam_1" in result.status.topics and "lobby_cam_1" not in result.status.created_topics
    assert "lobby_cam_2" in result.status.created_topics
    body["spec"]["cameras"] = body["spec"]["cameras"][:1]
    assert "lobby_cam_2" in reconcile(body, kube, kafka).status.created_topics, "a topic it created stays recorded"


def test_partitions_only_grow() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    kafka.topics["lobby_cam_1"] = TopicState(4, 1, {"retention.ms": "600000"})
    result = reconcile(body, kube, kafka)
    assert conditions(result)["TopicsReady"][:2] == ("False", "NotSupported")
    assert kafka.topics["lobby_cam_1"].partitions == 4 and result.status.phase == "Degraded"


def test_kuberay_refusing_the_rayjob_is_an_invalid_spec_not_a_retry() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    reconcile(body, kube, kafka)
    kuberay_serves(kube)
    reconcile(body, kube, kafka)  # the jobs exist once the app serves
    kube.set_status(
        "RayJob",
        "lobby-producer",
        {"jobDeploymentStatus": "ValidationFailed", "message": "RayJob name should be no more than 47 characters"},
    )
    result = reconcile(body, kube, kafka)
    ready = next(c for c in result.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "InvalidSpec") and "47 characters" in ready.message
    assert result.status.phase == "Failed" and result.retry_after_s is None
    assert ("RayJob", "lobby-producer") not in kube.deleted, "a refused spec is not resubmitted"


def test_a_job_being_deleted_is_not_applied_again_until_it_is_gone() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    reconcile(body, kube, kafka)
    kuberay_serves(kube)
    reconcile(body, kube, kafka)  # the jobs exist once the app serves
    kube.objects[("RayJob", NS, "lobby-producer")]["metadata"]["deletionTimestamp"] = "2026-11-30T12:00:00Z"
    applied = len(kube.applied)
    result = reconcile(body, kube, kafka)
    assert ("RayJob", "lobby-producer") not in kube.applied[applied:] and conditions(result)["ProducersRunning"][1] == "Deleting"


def test_a_spec_only_one_machine_can_run_is_refused_naming_each_field() -> None:
    kube, kafka = FakeKube(), FakeKafka()
    body = fleet("9-lives.very-long-name-of-a-fleet-for-kuberay")
    body["spec"]["kafka"]["bootstrapServers"] = "127.0.0.1:9092"
    body["spec"]["bucket"] = {"uri": "file:///dev/shm/frames"}
    body["spec"]["models"].append({"name": "faces", "type": "face", "modelUri": "models/centerface.onnx", "resources": {"gpus": 2}})
    result = reconcile(body, kube, kafka)
    ready = next(c for c in result.status.conditions if c.type == "Ready")
    assert ready.reason == "InvalidSpec" and result.status.phase == "Failed"
    for fragment in (
        "metadata.name: 45 characters",
        "DNS-1035",
        "bootstrapServers 127.0.0.1:9092",
        "file:///dev/shm/frames",
        "modelUri models/centerface.onnx",
        "gpus is 2",
    ):
        assert fragment in ready.message, fragment
    assert kube.applied == [] and kafka.topics == {}, "nothing is created for a fleet that cannot run"


def test_local_addresses_are_accepted_for_a_development_control_plane() -> None:
    kube, kafka = FakeKube(), FakeKafka()
    body = fleet()
    body["spec"]["kafka"]["bootstrapServers"] = "127.0.0.1:9092"
    result = asyncio.run(reconcile_fleet(body, kube, now=T0, topic_admin=kafka, policy=ClusterPolicy(allow_local_addresses=True)))  # type: ignore[arg-type]
    assert conditions(result)["TopicsReady"] == ("True", "Reconciled")


def test_turning_the_console_off_removes_its_service_but_never_a_stranger() -> None:
    kube, kafka = FakeKube(), FakeKafka()
    reconcile(fleet(), kube, kafka)
    assert ("Service", NS, "lobby-console") in kube.objects
    reconcile(fleet(kubernetes={"console": False}), kube, kafka)
    assert ("Service", NS, "lobby-console") not in kube.objects
    # A Service of that name the operator did not make stays.
    kube.objects[("Service", NS, "lobby-console")] = {"kind": "Service", "metadata": {"name": "lobby-console", "labels": {"app": "mine"}}}
    reconcile(fleet(kubernetes={"console": False}), kube, kafka)
    assert ("Service", NS, "lobby-console") in kube.objects


def test_4_a_serve_app_that_fails_turns_serving_not_ready_though_kuberays_ready_stays_true() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    reconcile(body, kube, kafka)
    kuberay_runs_everything(kube, body, kafka)
    assert conditions(reconcile(body, kube, kafka))["Ready"] == ("True", "Ready")
    failing = {
        "status": "DEPLOY_FAILED",
        "message": "Failed to update the deployments ['model-faces'].",
        "serveDeploymentStatuses": {"model-faces": {"status": "DEPLOY_FAILED", "message": "FileNotFoundError: s3://models/none.onnx"}},
    }
    kube.set_status(
        "RayService",
        "lobby-serving",
        {
            "conditions": [{"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints"}],
            "activeServiceStatus": {"applicationStatuses": {"camerafleet": failing}},
        },
    )
    result = reconcile(body, kube, kafka)
    serving = next(c for c in result.status.conditions if c.type == "ServingReady")
    assert (serving.status, serving.reason) == ("False", "ServingFailed") and "s3://models/none.onnx" in serving.message
    assert conditions(result)["Ready"][0] == "False" and result.status.phase == "Degraded"
    assert ("Warning", "ServingFailed") in {(e.type, e.reason) for e in result.events}
    kuberay_serves(kube)  # the spec fixed: Serve runs the app again
    assert conditions(reconcile(body, kube, kafka))["Ready"] == ("True", "Ready")


def test_6_a_rayjob_kuberay_refused_is_replaced_once_the_spec_is_fixed() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    reconcile(body, kube, kafka)
    kuberay_serves(kube)
    reconcile(body, kube, kafka)
    kube.set_status("RayJob", "lobby-producer", {"jobDeploymentStatus": "ValidationFailed", "message": "bad"})
    refused = reconcile(body, kube, kafka)
    assert refused.status.phase == "Failed"
    assert conditions(refused)["Ready"] == ("False", "InvalidSpec")
    ready = next(c for c in refused.status.conditions if c.type == "Ready")
    assert ready.message == "fix the spec: KubeRay refused the RayJob lobby-producer: bad"
    body["spec"]["kubernetes"] = {"image": "registry.local/camerafleet-ray:fixed"}  # the fix changes the RayJob's spec
    body["metadata"]["generation"] = 2
    result = reconcile(body, kube, kafka)
    assert ("RayJob", "lobby-producer") in kube.deleted and "JobReplaced" in {e.reason for e in result.events}
    reconcile(body, kube, kafka)
    kuberay_runs_jobs(kube)
    assert conditions(reconcile(body, kube, kafka))["Ready"] == ("True", "Ready")


def upgrading(kube: FakeKube, since: str) -> None:
    kube.set_status(
        "RayService",
        "lobby-serving",
        {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints"},
                {"type": "UpgradeInProgress", "status": "True", "reason": "BothActivePendingClustersExist", "lastTransitionTime": since},
            ],
            "pendingServiceStatus": {"rayClusterName": "lobby-serving-x2", "applicationStatuses": {"camerafleet": {"status": "DEPLOYING"}}},
            "activeServiceStatus": {"rayClusterName": "lobby-serving-x1", "applicationStatuses": {"camerafleet": {"status": "RUNNING"}}},
        },
    )


def test_3_a_new_serving_cluster_that_cannot_come_up_is_reported_within_the_upgrade_timeout() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    reconcile(body, kube, kafka)
    kuberay_runs_everything(kube, body, kafka)
    assert conditions(reconcile(body, kube, kafka))["ServingUpToDate"] == ("True", "UpToDate")
    upgrading(kube, since="2026-11-30T11:55:00Z")  # 5 minutes before T0
    result = reconcile(body, kube, kafka)
    assert conditions(result)["ServingUpToDate"] == ("Unknown", "UpgradeInProgress") and result.status.phase == "Running"
    late = reconcile(body, kube, kafka, now=T0 + timedelta(seconds=901 - 300))
    stalled = next(c for c in late.status.conditions if c.type == "ServingUpToDate")
    assert (stalled.status, stalled.reason) == ("False", "UpgradeStalled") and "lobby-serving-x2" in stalled.message
    assert late.status.phase == "Degraded" and ("Warning", "UpgradeStalled") in {(e.type, e.reason) for e in late.events}
    assert conditions(late)["ServingReady"] == ("True", "NonZeroServeEndpoints"), "the old cluster still serves"


def test_3_recreate_replaces_the_rayservice_on_a_cluster_level_change_and_not_on_a_model_edit() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet(kubernetes={"servingUpgrade": "Recreate"})
    reconcile(body, kube, kafka)
    kuberay_runs_everything(kube, body, kafka)
    body["spec"]["models"][0]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 3}  # serveConfigV2 only: applied in place
    reconcile(body, kube, kafka)
    assert ("RayService", "lobby-serving") not in kube.deleted
    body["spec"]["kubernetes"]["image"] = "registry.local/camerafleet-ray:2"  # cluster-level
    result = reconcile(body, kube, kafka)
    assert ("RayService", "lobby-serving") in kube.deleted and "ServingRecreated" in {e.reason for e in result.events}
    reconcile(body, kube, kafka)
    svc = kube.objects[("RayService", NS, "lobby-serving")]
    assert svc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"].endswith(":2")


def test_10_the_operator_dials_a_short_kafka_name_in_the_fleets_namespace() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    dialled: list[str] = []

    def admin(bootstrap: str) -> FakeKafka:
        dialled.append(bootstrap)
        return kafka

    asyncio.run(reconcile_fleet(body, kube, now=T0, topic_admin=admin))  # type: ignore[arg-type]
    assert dialled == ["kafka.cams.svc:9092"]


def test_the_fleets_ray_clusters_share_one_token_created_once_and_never_rewritten() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    reconcile(body, kube, kafka)
    secret = kube.objects[("Secret", NS, "lobby-ray-token")]
    token = secret["stringData"]["auth_token"]
    assert len(token) >= 40 and secret["metadata"]["ownerReferences"][0]["uid"] == "uid-lobby", "random, deleted with the fleet"
    kuberay_runs_everything(kube, body, kafka)
    reconcile(body, kube, kafka)
    assert kube.objects[("Secret", NS, "lobby-ray-token")]["stringData"]["auth_token"] == token, "running clusters keep theirs"
    clusters = [kube.objects[("RayService", NS, "lobby-serving")]["spec"]["rayClusterConfig"]] + [
        kube.objects[("RayJob", NS, f"lobby-{role}")]["spec"]["rayClusterSpec"] for role in ("producer", "consumer")
    ]
    assert [c["authOptions"] for c in clusters] == [{"mode": "token", "secretName": "lobby-ray-token"}] * 3
    other = fleet("hall")
    reconcile(other, kube, kafka)
    assert kube.objects[("Secret", NS, "hall-ray-token")]["stringData"]["auth_token"] != token, "each fleet its own"


def test_a_bucket_folder_inside_an_older_fleets_is_a_conflict_that_starts_nothing() -> None:
    """Issue 24: the older fleet's expiry rule and sweeper cover everything under its folder."""
    kube, kafka = FakeKube(), FakeKafka()
    older = fleet("lobby")  # its folder: frames/x/cams/lobby/
    reconcile(older, kube, kafka)
    kube.objects[("CameraFleet", NS, "lobby")] = older
    nested = fleet("hall", created="2026-11-30T11:00:00Z", bucket={"uri": "s3://frames/x/cams/lobby", "endpoint": "http://minio:9000"})
    kube.objects[("CameraFleet", NS, "hall")] = nested
    result = reconcile(nested, kube, kafka)
    c = conditions(result)
    assert c["Ready"] == ("False", "Conflict") and c["TopicsReady"] == ("Unknown", "Conflict"), c
    assert "frames/x/cams/lobby/" in next(x.message for x in result.status.conditions if x.type == "Ready")
    assert not [k for k in kube.objects if k[2].startswith("hall-")], "nothing of the younger fleet is made"
    elsewhere = fleet("yard", created="2026-11-30T11:00:00Z", bucket={"uri": "s3://frames/y", "endpoint": "http://minio:9000"})
    assert conditions(reconcile(elsewhere, kube, kafka))["TopicsReady"] == ("True", "Reconciled"), "a folder beside it is fine"


def stuck_pod(kube: FakeKube, name: str, since: str, fleet_name: str = "lobby", component: str = "serving") -> None:
    """A Pod of the fleet that the scheduler found no node for (as KubeRay's worker Pods carry the fleet's labels)."""
    kube.objects[("Pod", NS, name)] = {
        "metadata": {
            "name": name,
            "labels": {"camerafleet.io/fleet": fleet_name, "camerafleet.io/component": component, "ray.io/node-type": "worker"},
        },
        "spec": {"containers": [{"resources": {"requests": {"cpu": "64", "memory": "8Gi"}}}]},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "lastTransitionTime": since,
                    "message": "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.",
                }
            ],
        },
    }


def test_a_pod_that_fits_no_node_is_reported_after_the_scheduling_timeout_and_cleared_once_placed() -> None:
    kube, kafka, body = FakeKube(), FakeKafka(), fleet()
    reconcile(body, kube, kafka)
    kuberay_runs_everything(kube, body, kafka)
    placed_from_start = reconcile(body, kube, kafka)
    assert conditions(placed_from_start)["PodsScheduled"] == ("True", "Scheduled")
    assert "Scheduled" not in {e.reason for e in placed_from_start.events}, "Pods placed from the start are no news"
    stuck_pod(kube, "lobby-serving-x1-gpu-workers-worker-abcde", since="2026-11-30T11:58:00Z")  # 2 minutes before T0
    stuck_pod(kube, "other-serving-worker-zzz", since="2026-11-30T11:00:00Z", fleet_name="other")  # another fleet's: not ours
    waiting = reconcile(body, kube, kafka)
    assert conditions(waiting)["PodsScheduled"] == ("Unknown", "WaitingForNodes") and waiting.status.phase == "Running"
    assert waiting.events == [], "a cluster autoscaler may be adding a node"
    assert waiting.retry_after_s == 300 - 120 + 1, "back when the wait reaches schedulingTimeoutSeconds"
    late = reconcile(body, kube, kafka, now=T0 + timedelta(seconds=181))
    reported = next(c for c in late.status.conditions if c.type == "PodsScheduled")
    assert (reported.status, reported.reason) == ("False", "Unschedulable") and late.status.phase == "Degraded"
    assert conditions(late)["Ready"] == ("True", "Ready"), "the fleet runs, short of the replica that fits nowhere"
    for part in (
        "lobby-serving-x1-gpu-workers-worker-abcde",
        "cpu=64",
        "0/2 nodes are available: 2 Insufficient cpu",
        "kubernetes.gpuWorkers.resources",
    ):
        assert part in reported.message, (part, reported.message)
    assert "preemption" not in reported.message and "other-serving" not in reported.message
    assert ("Warning", "Unschedulable") in {(e.type, e.reason) for e in late.events}
    kube.objects[("Pod", NS, "lobby-serving-x1-gpu-workers-worker-abcde")]["status"] = {"phase": "Running"}
    placed = reconcile(body, kube, kafka, now=T0 + timedelta(seconds=200))
    assert conditions(placed)["PodsScheduled"] == ("True", "Scheduled") and placed.status.phase == "Running"
    assert ("Normal", "Scheduled") in {(e.type, e.reason) for e in placed.events}
