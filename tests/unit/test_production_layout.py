"""The production layout's defects (issue 23), each pinned where it is decided: in what the operator renders
for KubeRay 1.6 and Ray 2.60 (read from their source: see the comments in `render.py`), and in how a pass
reads their statuses. Each test failed on the code before the fix."""

from __future__ import annotations

import yaml

from camerafleet.api.manifest import parse_manifest
from camerafleet.api.serve_options import model_user_config
from camerafleet.api.settings import Settings
from camerafleet_operator import render
from camerafleet_operator.validate import ClusterPolicy, cluster_problems, operator_bootstrap


def spec(faces=None, **kubernetes):
    return parse_manifest(
        {
            "apiVersion": "camerafleet.io/v1alpha1",
            "kind": "CameraFleet",
            "metadata": {"name": "f"},
            "spec": {
                "cameras": [{"id": "1", "source": "synthetic:"}],
                "models": [
                    {
                        "name": "faces",
                        "type": "face",
                        "modelUri": "/opt/m.onnx",
                        "autoscaling": {"minReplicas": 1, "maxReplicas": 4},
                        **(faces or {}),
                    },
                    {"name": "health", "type": "camera-health"},
                ],
                "kafka": {"bootstrapServers": "kafka:9092"},
                "bucket": {"uri": "s3://frames/x", "endpoint": "http://minio:9000"},
                "kubernetes": kubernetes,
            },
        }
    ).spec


def pods(obj):
    cluster = obj["spec"].get("rayClusterConfig") or obj["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in cluster["workerGroupSpecs"])]


def app(s):
    return yaml.safe_load(render.ray_service("f", "ns", s)["spec"]["serveConfigV2"])["applications"][0]


def test_1_consumers_on_worker_pods_keep_no_results_file_and_the_ledger_reads_the_results_topic():
    doc = yaml.safe_load(render.config_map("f", "ns", spec())["data"]["fleet.yaml"])
    assert doc["spec"]["results"]["localLog"] is False


def test_2_a_deleted_job_pod_waits_for_its_run_to_drain_within_a_grace_period_longer_than_the_stop_wait():
    for role in ("producer", "consumer"):
        job = render.ray_job("f", "ns", spec(), role)
        head, *workers = pods(job)
        env = {e["name"]: e["value"] for e in head["containers"][0]["env"]}
        stop_wait = int(env["RAY_JOB_STOP_WAIT_TIME_S"])
        for pod, kind in [(head, "head"), *((w, "worker") for w in workers)]:
            hook = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
            assert hook[:4] == ["python", "-m", "camerafleet.prestop", kind]
            assert stop_wait < int(hook[4]) < pod["terminationGracePeriodSeconds"], "the hook waits past the stop wait, inside the grace"


def test_3_the_upgrade_strategy_is_explicit_and_recreate_keeps_kuberay_from_building_a_second_cluster():
    assert render.ray_service("f", "ns", spec())["spec"]["upgradeStrategy"] == {"type": "NewCluster"}
    assert render.ray_service("f", "ns", spec(servingUpgrade="Recreate"))["spec"]["upgradeStrategy"] == {"type": "None"}


def test_5_a_models_replicas_or_batching_edit_changes_no_app_arg_and_no_other_deployment():
    before = spec()
    edited = spec(faces={"autoscaling": {"minReplicas": 2, "maxReplicas": 4}, "batching": {"maxBatchSize": 4}})
    faces = edited.models[0]
    old, new = app(before), app(edited)
    assert old["args"] == new["args"], "Serve hashes the args into every replica's version: any change there restarts them all"
    by_name = lambda a: {d["name"]: d for d in a["deployments"]}  # noqa: E731
    assert by_name(old)["model-health"] == by_name(new)["model-health"], "the other model is left alone"
    changed = by_name(new)["model-faces"]
    assert changed["autoscaling_config"]["min_replicas"] == 2 and changed["user_config"] == model_user_config(faces)
    assert changed["ray_actor_options"] == by_name(old)["model-faces"]["ray_actor_options"], "the same actor options: no restart"
    assert (
        "maxFrameAgeMs" not in str(new["args"])
        and by_name(new)["ingress"]["user_config"]["maxFrameAgeMs"] == edited.consumer.max_frame_age_ms
    )


def test_7_the_autoscaler_version_is_explicit_on_every_cluster():
    s = spec()
    for obj in (render.ray_service("f", "ns", s), render.ray_job("f", "ns", s, "producer"), render.ray_job("f", "ns", s, "consumer")):
        cluster = obj["spec"].get("rayClusterConfig") or obj["spec"]["rayClusterSpec"]
        assert cluster["autoscalerOptions"]["version"] == "v2"


def test_8_no_pod_mounts_its_own_dev_shm_so_kuberay_sizes_it_to_the_memory_limit():
    s = spec()
    for obj in (render.ray_service("f", "ns", s), render.ray_job("f", "ns", s, "producer")):
        for pod in pods(obj):
            mounts = [m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])]
            assert "/dev/shm" not in mounts


def test_9_heads_take_a_node_selector_and_tolerations_where_every_pool_is_tainted():
    taint = {"key": "pool", "operator": "Equal", "value": "system", "effect": "NoSchedule"}
    s = spec(head={"nodeSelector": {"pool": "system"}, "tolerations": [taint]})
    for obj in (render.ray_service("f", "ns", s), render.ray_job("f", "ns", s, "consumer")):
        head = pods(obj)[0]
        assert head["nodeSelector"] == {"pool": "system"} and head["tolerations"] == [taint]
    bad = spec(head={"tolerations": [{"operator": "Exists", "value": "x"}]})
    assert "spec.kubernetes.head.tolerations.0: operator Exists takes no value" in cluster_problems("f", bad)


def test_10_a_short_kafka_service_name_is_dialled_in_the_fleets_namespace_by_the_operator():
    assert operator_bootstrap("camerafleet-kafka:9092", "default") == "camerafleet-kafka.default.svc:9092"
    assert operator_bootstrap("kafka.other.svc:9092,k2:9093", "cams") == "kafka.other.svc:9092,k2.cams.svc:9093"
    assert operator_bootstrap("10.0.0.5:9092", "cams") == "10.0.0.5:9092"


def test_11_jobs_are_submitted_over_http_with_no_submitter_pod_following_their_logs():
    for role in ("producer", "consumer"):
        job = render.ray_job("f", "ns", spec(), role)["spec"]
        assert job["submissionMode"] == "HTTPMode" and "submitterPodTemplate" not in job


def test_an_edit_a_running_job_cannot_apply_replaces_the_jobs_and_a_camera_edit_does_not():
    """Found by the e2e test of events on Kubernetes: `events.enabled` patched in reached the running jobs through
    their ConfigMap, whose runner logged "needs a restart; not applied", and nothing else happened. The jobs' spec
    (which the operator compares to replace a job) now carries a digest of the sections a job applies only at start."""
    base = spec()
    jobs = {role: render.ray_job("f", "ns", base, role)["spec"] for role in ("producer", "consumer")}
    events_on = base.model_copy(update={"events": base.events.model_copy(update={"enabled": True})})
    more_cameras = base.model_copy(update={"cameras": [*base.cameras, base.cameras[0].model_copy(update={"id": "2"})]})
    for role, job in jobs.items():
        assert render.ray_job("f", "ns", events_on, role)["spec"] != job, f"an events edit leaves the {role} job as it is"
        assert render.ray_job("f", "ns", more_cameras, role)["spec"] == job, f"a camera edit replaces the {role} job"


def test_a_setting_at_its_default_leaves_the_jobs_as_they_are_so_an_operator_upgrade_that_adds_one_restarts_nothing():
    """Found adding events.reidentifySeconds: every fleet's job digest changed, so the operator's upgrade would have
    replaced every fleet's RayJobs, for a setting at its default that the running jobs' own code applies anyway."""
    base = spec()
    job = render.ray_job("f", "ns", base, "consumer")["spec"]
    # What an operator without the setting digested is what this one digests: the setting at its default is not in it.
    assert "reidentifySeconds" not in base.restart_sections()["events"]
    changed = base.model_copy(update={"events": base.events.model_copy(update={"reidentify_seconds": 4.0})})
    assert render.ray_job("f", "ns", changed, "consumer")["spec"] != job


def test_serve_keeps_its_own_placement_whose_pack_strategy_can_strand_a_replica_on_a_scale_up():
    head = pods(render.ray_service("f", "ns", spec()))[0]
    assert not [e for e in head["containers"][0]["env"] if "PACK_SCHEDULING" in e["name"] or "COMPACT_SCHEDULING" in e["name"]]


def test_what_a_pod_writes_to_its_own_disk_is_bounded_ray_logs_rotated_small_and_no_serve_access_log():
    """Found by `make soak`: the serving worker's disk grew steadily. Ray's default rotation allows 3 GiB per log
    file; Serve's access log adds a line per request (~2,250 a second at 150 cameras x 5 fps)."""
    for obj in (
        render.ray_service("f", "ns", spec()),
        render.ray_job("f", "ns", spec(), "producer"),
        render.ray_job("f", "ns", spec(), "consumer"),
    ):
        for pod in pods(obj):
            env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
            assert int(env["RAY_ROTATION_MAX_BYTES"]) * (1 + int(env["RAY_ROTATION_BACKUP_COUNT"])) <= 256 * 2**20, obj["kind"]
    assert app(spec())["logging_config"] == {"enable_access_log": False}


def test_an_operator_that_allows_some_images_refuses_a_fleet_naming_another():
    """Issue 24: a fleet could run any image of any registry with the fleet's service account and secrets."""
    policy = ClusterPolicy(allowed_images=("registry.example.com/vision/", "ghcr.io/camerafleet/"))
    assert not [p for p in cluster_problems("f", spec(), policy) if "image" in p]
    evil = spec(image="docker.io/someone/miner:latest")
    [problem] = [p for p in cluster_problems("f", evil, policy) if "image" in p]
    assert "docker.io/someone/miner:latest" in problem and "registry.example.com/vision/" in problem
    assert not [p for p in cluster_problems("f", evil) if "image" in p], "no list: any image"
    assert Settings.from_env({"CAMERAFLEET_ALLOWED_IMAGES": " a/, b/ ,"}).allowed_images == ("a/", "b/")


def test_a_private_ca_is_mounted_in_every_ray_pod_of_the_fleet():
    """Issue 24: Kafka or S3 signed by a private CA; KAFKA_SSL_CA_FILE / CAMERAFLEET_S3_CA_FILE point into it."""
    s = spec(caSecret="company-ca")
    for obj in (render.ray_service("f", "ns", s), *(render.ray_job("f", "ns", s, role) for role in ("producer", "consumer"))):
        for pod in pods(obj):
            assert {"name": "fleet-ca", "secret": {"secretName": "company-ca"}} in pod["volumes"]
            assert {"name": "fleet-ca", "mountPath": "/etc/camerafleet/ca", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert all("fleet-ca" not in str(pod) for pod in pods(render.ray_service("f", "ns", spec()))), "none without caSecret"
