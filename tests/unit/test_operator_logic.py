"""The operator's decisions, without a cluster: topic plans (Strimzi semantics), ownership, job
backoff, conditions and phase, rendered objects."""

from datetime import UTC, datetime, timedelta

import yaml

from camerafleet.api.manifest import EventsSpec, LineSpec, ZoneSpec, parse_manifest
from camerafleet.topics import TopicState, plan_topics
from camerafleet_operator import render
from camerafleet_operator.observe import job_condition, scheduling_condition, service_condition
from camerafleet_operator.reconcile import next_retry, topic_claims, while_running
from camerafleet_operator.status import JobState, phase_of, set_condition


def spec(cameras=2, partitions=2, **kafka):
    return parse_manifest(
        {
            "apiVersion": "camerafleet.io/v1alpha1",
            "kind": "CameraFleet",
            "metadata": {"name": "f"},
            "spec": {
                "cameras": [{"id": str(i), "source": "synthetic:"} for i in range(1, cameras + 1)],
                "models": [{"name": "h", "type": "camera-health", "batching": {"maxBatchSize": 4}}],
                "kafka": {"partitionsPerTopic": partitions, **kafka},
            },
        }
    ).spec


def state(p, rf=1, retention="600000"):
    return TopicState(partitions=p, replication_factor=rf, configs={"retention.ms": retention})


WEEK = str(7 * 86_400_000)


def test_plan_creates_missing_and_grows_partitions():
    existing = {"camera_1": state(1), "camerafleet_results": state(2, retention=WEEK), "camerafleet_deadletter": state(1, retention=WEEK)}
    plan = plan_topics(spec(), existing, {})
    assert plan.create == {"camera_2": 2}
    assert plan.add_partitions == {"camera_1": 2}
    assert not plan.not_supported and not plan.conflicts and not plan.alter_configs


def test_results_and_dead_letters_are_kept_for_days_and_only_changed_keys_are_set():
    existing = {
        "camera_1": state(2),
        "camera_2": state(2, retention="60000"),
        "camerafleet_results": state(2),
        "camerafleet_deadletter": state(1),
    }
    plan = plan_topics(spec(), existing, {})
    assert plan.alter_configs == {
        "camera_2": {"retention.ms": "600000"},
        "camerafleet_results": {"retention.ms": WEEK},
        "camerafleet_deadletter": {"retention.ms": WEEK},
    }


def test_partition_decrease_and_rf_change_are_not_supported():
    existing = {"camera_1": state(4), "camera_2": state(2, rf=3), "camerafleet_results": state(2), "camerafleet_deadletter": state(1)}
    plan = plan_topics(spec(), existing, {})
    assert plan.add_partitions == {} and plan.create == {}
    assert any("camera_1 has 4 partitions" in m for m in plan.not_supported)
    assert any("camera_2 has replication factor 3" in m for m in plan.not_supported)


def test_retention_drift_is_corrected_and_conflicts_left_alone():
    existing = {"camera_1": state(2, retention="1000"), "camera_2": state(2)}
    plan = plan_topics(spec(), existing, {"camera_2": "other/fleet"})
    assert plan.alter_configs == {"camera_1": {"retention.ms": "600000"}}
    assert plan.conflicts == ["topic camera_2 belongs to fleet other/fleet; left untouched"]
    assert "camera_2" not in plan.owned and "camera_1" in plan.owned


def fleet_obj(name, created, **kafka):
    return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created}, "spec": spec(**kafka).model_dump(by_alias=True)}


def test_older_fleet_owns_shared_topics():
    fleets = [
        fleet_obj("old", "2026-01-01T00:00:00Z"),
        fleet_obj("new", "2026-02-01T00:00:00Z"),
        fleet_obj("elsewhere", "2025-01-01T00:00:00Z", bootstrapServers="other:9092"),
    ]
    claims = topic_claims("new", "ns", "2026-02-01T00:00:00Z", spec(), fleets, None)
    assert claims["camera_1"] == "ns/old"
    assert topic_claims("old", "ns", "2026-01-01T00:00:00Z", spec(), fleets, None) == {}


def test_one_kafka_is_one_cluster_id_whatever_address_names_it():
    """Issue 24: ownership follows Kafka's cluster id (each fleet's, in its status), not the address string."""
    old = fleet_obj("old", "2026-01-01T00:00:00Z", bootstrapServers="kafka-0.kafka-headless.data.svc:9092") | {
        "status": {"kafkaClusterId": "k-1"}
    }
    same_address_other_kafka = fleet_obj("moved", "2026-01-02T00:00:00Z") | {"status": {"kafkaClusterId": "k-2"}}
    claims = topic_claims("new", "ns", "2026-02-01T00:00:00Z", spec(), [old, same_address_other_kafka], "k-1")
    assert claims["camera_1"] == "ns/old", "another address of the same cluster is the same Kafka"
    assert "ns/moved" not in claims.values(), "the same address of another cluster is another Kafka"


def job(deployment: str | None = None, job_status: str | None = None, **meta: str) -> dict:
    status = {k: v for k, v in (("jobDeploymentStatus", deployment), ("jobStatus", job_status), ("message", "boom")) if v}
    return {"metadata": {"name": "f-producer", **meta}, "status": status}


def test_job_conditions_follow_kuberay_1_6_statuses():
    assert job_condition(None).ok is False
    assert job_condition(job()).reason == "WaitingForKubeRay"
    assert job_condition(job("Running")).ok is None, "Running before the Ray job runs (jobStatus empty or PENDING) is not running yet"
    assert job_condition(job("Running", "PENDING")).ok is None
    assert job_condition(job("Running", "RUNNING")).ok is True
    failed = job_condition(job("Failed", "FAILED"))
    assert failed.failed and failed.message == "boom"
    ended = job_condition(job("Complete", "SUCCEEDED"))
    assert ended.failed and ended.reason == "JobEnded", "a pipeline job that ends is restarted"
    refused = job_condition(job("ValidationFailed"))
    assert refused.invalid and not refused.failed and refused.reason == "InvalidSpec" and "boom" in refused.message
    assert job_condition(job("Running", "RUNNING", deletionTimestamp="2026-01-01T00:00:00Z")).reason == "Deleting"


def service(reason: str, status: str = "False", **extra: object) -> dict:
    return {
        "metadata": {"name": "f-serving"},
        "status": {"conditions": [{"type": "Ready", "status": status, "reason": reason, "message": "m"}], **extra},
    }


def test_service_conditions_follow_kuberay_1_6_statuses():
    assert service_condition(None, "app").ok is False
    assert service_condition({"metadata": {"name": "f-serving"}, "status": {}}, "app").reason == "WaitingForKubeRay"
    assert service_condition(service("NonZeroServeEndpoints", "True"), "app").ok is True
    starting = service_condition(
        service("Initializing", pendingServiceStatus={"applicationStatuses": {"app": {"status": "DEPLOYING", "message": "x"}}}), "app"
    )
    assert starting.ok is None and "Serve app app DEPLOYING: x" in starting.message, "a normal start is not Degraded"
    refused = service_condition(service("ValidationFailed"), "app")
    assert refused.invalid and refused.message == "KubeRay refused the RayService f-serving: m"
    assert service_condition(service("ZeroServeEndpoints"), "app").ok is False


def test_job_backoff():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    s = next_retry(JobState(), 10, 600, now, "boom")
    assert (s.failures, s.next_retry_at) == (1, "2026-01-01T00:00:10Z")
    s = next_retry(JobState(failures=7), 10, 600, now, "boom")
    assert (s.failures, s.next_retry_at) == (8, "2026-01-01T00:10:00Z")


def test_a_job_that_ran_as_long_as_the_longest_backoff_is_forgiven_its_failures():
    """Issue 24: after seven failures every later one waited ten minutes, however long the job had run between."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    failed = next_retry(JobState(failures=7), 10, 600, now, "boom")
    running = while_running(failed, now + timedelta(seconds=1), 600)
    assert (running.failures, running.next_retry_at, running.running_since) == (8, None, "2026-01-01T00:00:01Z")
    assert while_running(running, now + timedelta(seconds=300), 600).failures == 8, "a short run forgives nothing"
    stable = while_running(running, now + timedelta(seconds=601), 600)
    assert stable.failures == 0
    again = next_retry(stable, 10, 600, now + timedelta(days=7), "boom")
    assert (again.failures, again.next_retry_at, again.running_since) == (1, "2026-01-08T00:00:10Z", None)


def test_conditions_keep_transition_time_and_phase():
    conds = set_condition([], "TopicsReady", True, "Reconciled", "ok", 1)
    again = set_condition(conds, "TopicsReady", True, "Reconciled", "still ok", 2)
    assert again[0].last_transition_time == conds[0].last_transition_time and again[0].observed_generation == 2
    conds = [*again, *set_condition([], "ServingReady", None, "WaitingForKubeRay", "", 2)]
    assert phase_of(conds) == "Reconciling"
    assert phase_of(set_condition(conds, "TopicsReady", False, "NotSupported", "no", 2)) == "Degraded"


def test_a_fleet_with_zones_and_lines_renders_a_configmap_the_pods_read_back_as_the_same_spec():
    """Found by the e2e test of events on Kubernetes: a zone's anchor (an enum) made the operator's YAML dump raise on
    every pass, so a fleet with zones or lines was never reconciled (its generation never observed)."""
    door = {"name": "door", "points": [[10, 10], [10, 200]], "anchor": "center"}
    hall = {"name": "hall", "points": [[0, 0], [100, 0], [100, 100]], "loiterSeconds": 5}
    s = spec().model_copy(update={"events": EventsSpec(enabled=True)})
    s = s.model_copy(update={"cameras": [s.cameras[0].model_copy(update={"lines": [LineSpec(**door)], "zones": [ZoneSpec(**hall)]})]})
    cm = render.config_map("f", "ns", s)
    back = parse_manifest(yaml.safe_load(cm["data"]["fleet.yaml"])).spec
    assert back.cameras == s.cameras and back.events == s.events


def test_rendered_objects():
    s = spec()
    owner = render.owner_reference({"metadata": {"name": "f", "uid": "u-1"}})
    objects = render.fleet_objects("f", "ns", s, owner)
    kinds = ["ConfigMap", "ServiceAccount", "Role", "RoleBinding", "RayService", "RayJob", "RayJob", "Service"]
    assert [o["kind"] for o in objects] == kinds
    cm, _, _, _, svc, producer, consumer, console = objects
    assert all(o["metadata"]["ownerReferences"] == [owner] for o in objects)
    doc = yaml.safe_load(cm["data"]["fleet.yaml"])
    assert doc["spec"]["serving"]["url"] == "http://f-serving-serve-svc.ns.svc:8000/infer"
    serve = yaml.safe_load(svc["spec"]["serveConfigV2"])["applications"][0]
    assert serve["import_path"] == "camerafleet.serving.app:build_app"
    model = next(d for d in serve["deployments"] if d["name"] == "model-h")
    assert model["max_ongoing_requests"] == 10 and model["autoscaling_config"]["min_replicas"] == 1
    assert svc["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True
    assert producer["spec"]["entrypoint"].endswith("--role producer --metrics-port 8081 --console-port 8090 --console-host 0.0.0.0")
    assert "--console-port" not in consumer["spec"]["entrypoint"]
    # The console's Service reaches the producer job's head (the process that knows which cameras are down), inside the cluster only.
    head = producer["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    assert console["spec"]["type"] == "ClusterIP" and console["metadata"]["name"] == "f-console"
    assert console["spec"]["selector"] == {"camerafleet.io/console": "f", "ray.io/node-type": "head"}
    assert head["metadata"]["labels"] == {
        "camerafleet.io/console": "f",
        "camerafleet.io/fleet": "f",
        "camerafleet.io/component": "producer",
    }
    # Every Ray Pod says whose it is: the stack chart's PodMonitor scrapes Ray's metrics agent on the Pods it selects.
    for obj in (svc, producer, consumer):
        cluster = obj["spec"].get("rayClusterConfig") or obj["spec"]["rayClusterSpec"]
        for template in [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]:
            assert template["metadata"]["labels"]["camerafleet.io/fleet"] == "f"
    assert {"containerPort": 8090, "name": "console"} in head["spec"]["containers"][0]["ports"]
    env = head["spec"]["containers"][0]["env"]
    assert {"name": "CAMERAFLEET_SERVE_STATUS_URL", "value": "http://f-serving-head-svc.ns.svc:8265"} in env
    assert "camerafleet.io/console" not in consumer["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    off = s.model_copy(update={"kubernetes": s.kubernetes.model_copy(update={"console": False})})
    objects = render.fleet_objects("f", "ns", off, owner)
    assert "Service" not in [o["kind"] for o in objects]
    assert "--console-port" not in next(o for o in objects if o["kind"] == "RayJob")["spec"]["entrypoint"]
    volumes = consumer["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["volumes"]
    assert volumes == [{"name": "fleet-config", "configMap": {"name": "f-config"}}]


def test_job_pods_may_read_their_fleets_config_map_write_its_pools_and_nothing_else():
    s = spec()
    _, account, role, binding, svc, producer, consumer, _ = render.fleet_objects("f", "ns", s)
    assert account["metadata"]["name"] == "f-runner"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["f-config"], "verbs": ["get"]},
        {"apiGroups": ["camerafleet.io"], "resources": ["camerafleets/status"], "resourceNames": ["f"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "f-runner", "namespace": "ns"}]
    for job in (producer, consumer):
        cluster = job["spec"]["rayClusterSpec"]
        pods = [cluster["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in cluster["workerGroupSpecs"])]
        assert {p["serviceAccountName"] for p in pods} == {"f-runner"}
        assert {"name": "CAMERAFLEET_MANIFEST_CONFIGMAP", "value": "f-config"} in pods[0]["containers"][0]["env"]
    assert "serviceAccountName" not in svc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"], "models need no grant"

    own = s.model_copy(update={"kubernetes": s.kubernetes.model_copy(update={"service_account_name": "cameras-s3"})})
    objects = render.fleet_objects("f", "ns", own)
    assert "ServiceAccount" not in [o["kind"] for o in objects], "the fleet's own service account is used, not replaced"
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cameras-s3", "namespace": "ns"}]


def test_a_failed_serve_deployment_is_told_by_its_sentence_and_its_exception_not_its_traceback():
    traceback = "\n".join(f'  File "/x/{i}.py", line {i}, in f{i}' for i in range(40))
    message = (
        "The deployment failed to start 3 times in a row during a rolling update.\n"
        f"ray::ServeReplica:app:model-faces.initialize_and_get_metadata() (pid=1, ip=198.18.1.2)\n{traceback}\n"
        "camerafleet.models.fetch.ModelFileError: cannot download model s3://frames/models/no-such-model.onnx: NoSuchKey"
    )
    status = {
        "conditions": [{"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints"}],
        "activeServiceStatus": {
            "applicationStatuses": {
                "app": {
                    "status": "DEPLOY_FAILED",
                    "message": "Failed to update the deployments ['model-faces'].",
                    "serveDeploymentStatuses": {"model-faces": {"status": "DEPLOY_FAILED", "message": message}},
                }
            }
        },
    }
    serving = service_condition({"status": status}, "app")
    assert (serving.ok, serving.reason) == (False, "ServingFailed")
    assert "failed to start 3 times" in serving.message and "no-such-model.onnx: NoSuchKey" in serving.message
    assert "File " not in serving.message and len(serving.message) < 1000


def pod(name, phase="Pending", reason="Unschedulable", since="2026-11-30T12:00:00Z", node_type="worker", component="producer", **meta):
    """A Pod of a fleet's Ray cluster as the API server returns it (the fields the observer reads)."""
    return {
        "metadata": {"name": name, "labels": {"camerafleet.io/component": component, "ray.io/node-type": node_type}, **meta},
        "spec": {
            "containers": [{"resources": {"requests": {"cpu": "6", "nvidia.com/gpu": "1"}}}, {"resources": {"requests": {"cpu": "100m"}}}]
        },
        "status": {
            "phase": phase,
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": reason,
                    "lastTransitionTime": since,
                    "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
                }
            ],
        },
    }


def test_pods_that_fit_no_node_are_named_with_what_they_ask_and_where_the_spec_sizes_them():
    now = datetime(2026, 11, 30, 12, 10, tzinfo=UTC)  # 600 s after the pods' `since`
    assert scheduling_condition([], now, 300).ok is True
    placed = [pod("a", phase="Running"), pod("b", reason="SchedulerError"), pod("c", deletionTimestamp="2026-11-30T12:09:00Z")]
    assert scheduling_condition(placed, now, 300).ok is True, "running, failed for another reason, or going away"
    waiting = scheduling_condition([pod("d")], now, 900)
    assert (waiting.ok, waiting.reason, waiting.recheck_s) == (None, "WaitingForNodes", 301)
    late = scheduling_condition([pod("job-worker"), pod("head", node_type="head", since="2026-11-30T11:50:00Z")], now, 300)
    assert (late.ok, late.reason, late.recheck_s) == (False, "Unschedulable", None)
    assert late.message.index("Pod head") < late.message.index("Pod job-worker"), "the longest wait first"
    assert (
        "asks cpu=6+100m, nvidia.com/gpu=1" in late.message
        and "for 1200 s" in late.message
        and "Insufficient nvidia.com/gpu" in late.message
    )
    assert "(kubernetes.head, kubernetes.jobWorkers.resources;" in late.message
    many = scheduling_condition([pod(f"w{i}") for i in range(5)], now, 300)
    assert many.message.count("Pod w") == 3 and "and 2 more" in many.message, "a long condition would be cut, not summed up"
